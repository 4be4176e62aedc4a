package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// MaxLogSize is the size past which a service's log file is rotated to <name>.log.1 (one old
// file is kept), so a chatty kubelet cannot fill the node's disk.
const MaxLogSize = 50 << 20

// console serializes whole lines from all services onto the supervisor's stdout.
type console struct {
	mu sync.Mutex
	w  io.Writer
	// own, if set, also receives the supervisor's own messages, with a timestamp
	// (/var/log/kubeforge/kubeforge-init.log).
	own *logFile
}

func (c *console) write(prefix string, line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf := make([]byte, 0, len(prefix)+len(line)+1)
	buf = append(buf, prefix...)
	buf = append(buf, line...)
	if len(line) == 0 || line[len(line)-1] != '\n' {
		buf = append(buf, '\n')
	}
	_, _ = c.w.Write(buf)
}

// logf prints one of the supervisor's own messages.
func (c *console) logf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	c.write("[kubeforge-init] ", []byte(msg))
	if c.own != nil {
		c.mu.Lock()
		_ = c.own.write([]byte(time.Now().UTC().Format(time.RFC3339Nano) + " " + msg + "\n"))
		c.mu.Unlock()
	}
}

// logFile is an append-only log with one rotation.
type logFile struct {
	path    string
	maxSize int64
	f       *os.File
	size    int64
}

func openLogFile(path string, maxSize int64) (*logFile, error) {
	l := &logFile{path: path, maxSize: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *logFile) open() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func (l *logFile) write(b []byte) error {
	if l.f == nil {
		if err := l.open(); err != nil {
			return err
		}
	}
	if l.maxSize > 0 && l.size+int64(len(b)) > l.maxSize && l.size > 0 {
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := l.open(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	return err
}

// pumpLines copies r line by line to the log file (as is) and to the console (prefixed), until
// r ends. Over-long lines are split rather than buffered without bound.
func pumpLines(r io.Reader, lf *logFile, con *console, prefix string) {
	br := bufio.NewReaderSize(r, 64*1024)
	warned := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if lf != nil {
				if werr := lf.write(line); werr != nil && !warned {
					warned = true
					con.logf("writing %s: %v (further errors not shown)", lf.path, werr)
				}
				if errors.Is(err, bufio.ErrBufferFull) && lf != nil {
					_ = lf.write([]byte("\n"))
				}
			}
			con.write(prefix, line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
