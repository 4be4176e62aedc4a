package cli

import (
	"bytes"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// panicWriter panics on every write: a bug in a command, in the main goroutine.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("writer exploded") }

// TestMainPanic: a panic in a command is an internal error (exit 1) with an `Error:` and a `Fix:`
// line, never a Go stack; exit (the second Ctrl-C's) is not called.
func TestMainPanic(t *testing.T) {
	t.Setenv("KUBEFORGE_DEBUG", "")
	var errb bytes.Buffer
	exited := false
	code := runMain([]string{"version"}, Streams{In: strings.NewReader(""), Out: panicWriter{}, Err: &errb}, func(int) { exited = true })
	out := errb.String()
	if code == 0 || code != kferr.ExitInternal || exited {
		t.Errorf("exit %d (exit called: %v), want %d", code, exited, kferr.ExitInternal)
	}
	if !strings.Contains(out, "Error: internal error in kubeforge: writer exploded") || !strings.Contains(out, "Fix: this is a bug") {
		t.Errorf("stderr lacks the internal error and its fix:\n%s", out)
	}
	for _, stack := range []string{"goroutine ", ".go:", "panic("} {
		if strings.Contains(out, stack) {
			t.Errorf("stderr holds Go stack text %q:\n%s", stack, out)
		}
	}
}
