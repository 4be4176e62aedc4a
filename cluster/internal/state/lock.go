package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// lockPoll is how often a waiting operation tries the lock again.
const lockPoll = 100 * time.Millisecond

func (d Dir) lockFile() string { return filepath.Join(d.Root, "lock") }

// Lock takes the cluster's lock for the operation op (e.g. "start"), so that two kubeforge
// processes never change one cluster at once: two `node add`s pick distinct names, a second
// `start` finds the first one's cluster instead of tearing it down. When another process holds
// it, waiting is called once with what that process said it does, and Lock waits until the lock
// is free or ctx ends: past ctx's deadline the error is a timeout naming the holder and the fix;
// when ctx is cancelled (Ctrl-C) it wraps ctx.Err() (context.Canceled), not a timeout.
//
// The lock is an flock(2) on <dir>/lock, released by the kernel when a process dies, so a crash
// or kill -9 never leaves a cluster locked. `delete` removes the directory, lock file included,
// while holding it: a waiter then holds a lock on a removed file, notices (the path no longer
// names its file) and locks the new file instead. unlock removes a directory that holds nothing
// but the lock (an operation that made nothing leaves nothing).
func (d Dir) Lock(ctx context.Context, op string, waiting func(holder string)) (unlock func(), err error) {
	announced := false
	for {
		f, err := d.openLock()
		if err != nil {
			return nil, err
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				f.Close()
				return nil, fmt.Errorf("locking cluster %s (%s): %w", d.Name, d.lockFile(), err)
			}
			holder := readHolder(d.lockFile())
			if !announced && waiting != nil {
				waiting(holder)
				announced = true
			}
			select {
			case <-ctx.Done():
				f.Close()
				if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
					// Cancelled (Ctrl-C): not a timeout, and not the cluster's fault.
					return nil, fmt.Errorf("waiting for cluster %s (%s): %w", d.Name, holder, ctx.Err())
				}
				return nil, kferr.Timeout("wait for it to finish (or stop it), then run this again; a longer --wait waits longer",
					"cluster %q is busy: %s", d.Name, holder)
			case <-time.After(lockPoll):
			}
		}
		if d.sameFile(f) {
			writeHolder(f, op)
			return func() { d.unlock(f) }, nil
		}
		// The directory was removed (a delete) while we waited: lock the new file.
		f.Close()
	}
}

func (d Dir) openLock() (*os.File, error) {
	if err := os.MkdirAll(d.Root, 0o700); err != nil {
		return nil, kferr.Environment(fmt.Sprintf("check that %s is a directory you may write, or set KUBEFORGE_HOME", filepath.Dir(d.Root)),
			"making the state directory of cluster %s: %v", d.Name, err)
	}
	f, err := os.OpenFile(d.lockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock of cluster %s: %w", d.Name, err)
	}
	return f, nil
}

// sameFile tells whether the lock file's path still names f.
func (d Dir) sameFile(f *os.File) bool {
	held, err1 := f.Stat()
	now, err2 := os.Stat(d.lockFile())
	return err1 == nil && err2 == nil && os.SameFile(held, now)
}

func (d Dir) unlock(f *os.File) {
	if entries, err := os.ReadDir(d.Root); err == nil && len(entries) == 1 && entries[0].Name() == "lock" && d.sameFile(f) {
		os.Remove(d.lockFile())
		os.Remove(d.Root)
	} else {
		f.Truncate(0)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// writeHolder says in the lock file who holds it, for the message of a process that waits.
func writeHolder(f *os.File, op string) {
	f.Truncate(0)
	f.WriteAt([]byte(fmt.Sprintf("another kubeforge (pid %d) is running `kubeforge %s` on it since %s\n",
		os.Getpid(), op, time.Now().Format(time.TimeOnly))), 0)
}

func readHolder(path string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "another kubeforge is working on it"
}
