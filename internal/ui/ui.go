// Package ui is kubeforge's one progress and logging facility: a step per long operation, shown
// when it starts and when it ends with the time it took.
package ui

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Logger writes progress to a stream (normally stderr, so stdout stays clean for -o json).
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	verbose bool
}

// New returns a Logger writing to w.
func New(w io.Writer, verbose bool) *Logger {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &Logger{w: w, tty: tty, verbose: verbose}
}

// Discard returns a Logger that prints nothing.
func Discard() *Logger { return &Logger{w: io.Discard} }

// Infof prints a line.
func (l *Logger) Infof(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", a...)
}

// Warnf prints a warning line.
func (l *Logger) Warnf(format string, a ...any) { l.Infof("! "+format, a...) }

// Debugf prints a line when verbose.
func (l *Logger) Debugf(format string, a ...any) {
	if l.verbose {
		l.Infof("  "+format, a...)
	}
}

// Step is one named operation in progress.
type Step struct {
	l     *Logger
	name  string
	start time.Time
}

// Step starts a named operation and shows that it started.
func (l *Logger) Step(name string) *Step {
	s := &Step{l: l, name: name, start: time.Now()}
	l.mu.Lock()
	if l.tty {
		fmt.Fprintf(l.w, " • %s ...", name)
	} else {
		fmt.Fprintf(l.w, " • %s ...\n", name)
	}
	l.mu.Unlock()
	return s
}

// Done ends the step: a check mark and its duration, or a cross when err is not nil. It returns
// err so a caller can write `return step.Done(err)`.
func (s *Step) Done(err error) error {
	d := time.Since(s.start)
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	mark := "✓"
	if err != nil {
		mark = "✗"
	}
	if s.l.tty {
		fmt.Fprintf(s.l.w, "\r\033[K")
	}
	fmt.Fprintf(s.l.w, " %s %s (%s)\n", mark, s.name, round(d))
	return err
}

// Elapsed is the time since the step began.
func (s *Step) Elapsed() time.Duration { return time.Since(s.start) }

func round(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}
