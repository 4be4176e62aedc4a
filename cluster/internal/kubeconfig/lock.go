package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// LockWait bounds how long an edit waits for another program's lock on the kubeconfig.
// kubectl holds it for milliseconds; a lock older than this is most likely stale.
const LockWait = 10 * time.Second

// inProcess serialises this process's edits, so that goroutines queue here instead of polling
// the lock file.
var inProcess sync.Mutex

// lockName is client-go's lock file for path (clientcmd's lockName): the path as given, a
// symbolic link's own path and not its target's.
func lockName(path string) string { return path + ".lock" }

// lock takes the kubeconfig lock as client-go does (clientcmd's lockFile, used by kubectl's
// `config` commands): the lock is the file path.lock, created with O_CREATE|O_EXCL and removed
// when done. kubectl fails at once when the file exists; lock retries with a short back-off until
// the file is gone, LockWait has passed or ctx ends. The returned unlock removes the file.
func lock(ctx context.Context, path string) (unlock func() error, err error) {
	inProcess.Lock()
	defer func() {
		if err != nil {
			inProcess.Unlock()
		}
	}()
	name := lockName(path)
	ctx, cancel := context.WithTimeout(ctx, LockWait)
	defer cancel()
	delay, start := 5*time.Millisecond, time.Now()
	for {
		err := createLock(name)
		if err == nil {
			return func() error {
				defer inProcess.Unlock()
				if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("removing the kubeconfig lock %s: %w", name, err)
				}
				return nil
			}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, kferr.Environment("check the permissions of "+name+"'s directory",
				"locking kubeconfig %s: %w", path, err)
		}
		t := time.NewTimer(delay + rand.N(delay/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, fmt.Errorf("waiting for the lock %s of kubeconfig %s: %w", name, path, ctx.Err())
			}
			return nil, kferr.Environment(
				"if no kubectl or kubeforge is running, the lock is stale: remove it (rm "+name+") and re-run",
				"kubeconfig %s is locked: %s still exists after %s (%s)", path, name,
				time.Since(start).Round(100*time.Millisecond), lockHolder(name))
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// createLock makes the lock file; it names this process in it, which only helps a person (and
// the timeout message) to see who holds it: client-go's lock files are empty.
func createLock(name string) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "kubeforge pid %d\n", os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("writing the kubeconfig lock %s: %w", name, err)
	}
	return nil
}

// lockHolder describes who made the lock file name, for the timeout message.
func lockHolder(name string) string {
	fi, err := os.Stat(name)
	if err != nil {
		return "gone now: re-run"
	}
	age := time.Since(fi.ModTime()).Round(time.Second)
	b, _ := os.ReadFile(name)
	if pid, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "kubeforge pid "); ok {
		if n, err := strconv.Atoi(pid); err == nil && n > 0 {
			if err := syscall.Kill(n, 0); err == nil || errors.Is(err, syscall.EPERM) {
				return fmt.Sprintf("made %s ago by kubeforge pid %d, still running", age, n)
			}
			return fmt.Sprintf("made %s ago by kubeforge pid %d, which is no longer running", age, n)
		}
	}
	return fmt.Sprintf("made %s ago, by kubectl or another client-go program, which remove it when done", age)
}
