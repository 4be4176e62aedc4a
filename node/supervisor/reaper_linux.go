//go:build linux

package supervisor

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper is the only caller of wait4 in the process. As PID 1 (or a child subreaper) the
// supervisor inherits every orphan; reaping them with wait4(-1) would steal the exit status of
// the services it manages if anything else waited for those, so services are started through
// the reaper, which hands each managed child's status to the one waiting for it and silently
// reaps the rest.
//
// mu is held while a child is forked and registered and while a status is collected, so a
// child that exits at once is never reaped before it is registered (os.StartProcess also
// waits itself for a child whose exec failed, which must not race with wait4(-1)), and a
// registered pid is never recycled before it is signalled (a zombie keeps its pid).
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan processExit
	// reaped counts the orphans reaped (no waiter).
	reaped int
}

type processExit struct {
	pid  int
	exit Exit
}

func newReaper() *reaper {
	return &reaper{waiters: map[int]chan processExit{}}
}

// run reaps on every SIGCHLD, and every second in case a signal was coalesced away, until ctx
// ends.
func (r *reaper) run(ctx context.Context) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.reapAll()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
	}
}

// reapAll collects every exited child without blocking.
func (r *reaper) reapAll() {
	for {
		r.mu.Lock()
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid > 0 {
			ex := Exit{Code: ws.ExitStatus(), At: time.Now()}
			if ws.Signaled() {
				ex.Code = -1
				ex.Signal = unix.SignalName(ws.Signal())
				if ex.Signal == "" {
					ex.Signal = ws.Signal().String()
				}
			}
			if ch, ok := r.waiters[pid]; ok {
				delete(r.waiters, pid)
				ch <- processExit{pid: pid, exit: ex}
			} else {
				r.reaped++
			}
		}
		r.mu.Unlock()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

// start forks and execs a managed child; its exit is delivered on the returned channel.
func (r *reaper) start(path string, argv []string, attr *os.ProcAttr) (int, <-chan processExit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid
	ch := make(chan processExit, 1)
	r.waiters[pid] = ch
	// The handle (a pidfd on recent kernels) is not needed: the reaper collects the status.
	// (Release also resets p.Pid.)
	_ = p.Release()
	return pid, ch, nil
}

// signal sends sig to a managed child that has not been reaped yet; it reports false if the
// child is already gone.
func (r *reaper) signal(pid int, sig syscall.Signal) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiters[pid]; !ok {
		return false
	}
	return unix.Kill(pid, sig) == nil
}

func (r *reaper) reapedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}
