//go:build linux

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/services"
)

// Options tune a Supervisor; zero values mean the node's defaults.
type Options struct {
	// StatusPath is where status.json is written (StatusPath when empty).
	StatusPath string
	// LogDir holds the services' log files (LogDir when empty).
	LogDir string
	// Stdout receives the services' prefixed lines and the supervisor's messages (os.Stdout).
	Stdout io.Writer
	// KillAll makes the final clean-up SIGKILL every process in the PID namespace (kill(-1)),
	// which is right for PID 1 only. Otherwise only the supervisor's descendants are killed.
	KillAll bool
	// ReadyPollInterval is the period of readiness checks (50ms when zero).
	ReadyPollInterval time.Duration
	// MaxLogSize overrides MaxLogSize (tests).
	MaxLogSize int64

	// console, when set, is shared with the caller (Main), so that lines never interleave.
	console *console
	// reaper, when set, is an already running reaper (Main starts one before setup, so that
	// orphans are reaped while it waits for the services file).
	reaper *reaper
}

// Supervisor runs the services of a Config.
type Supervisor struct {
	cfg  *services.Config
	opts Options
	con  *console
	reap *reaper
	// ownReap: the supervisor runs its reaper itself (none was given in Options).
	ownReap bool

	services []*svc
	byName   map[string]*svc
	order    []string

	shutdown     chan struct{} // closed: no more starts or restarts
	shutdownOnce sync.Once

	mu     sync.Mutex // guards status
	status Status
	// writeMu orders status file writes; each write takes its snapshot under it, so the last
	// write always has the latest state.
	writeMu sync.Mutex
}

type svc struct {
	spec       services.Service
	deps       []*svc
	dependents []*svc
	ready      chan struct{} // closed the first time the service is ready
	readyOnce  sync.Once
	stop       chan struct{} // closed to ask the service to stop
	stopOnce   sync.Once
	done       chan struct{} // closed when the service's loop has ended and its process is gone
	out        *os.File      // write end of the service's output pipe, shared by all its runs
	pumped     chan struct{} // closed when the output pump has drained the pipe
}

// New prepares a supervisor for a validated, normalized config.
func New(cfg *services.Config, opts Options) (*Supervisor, error) {
	if opts.StatusPath == "" {
		opts.StatusPath = contract.StatusPath
	}
	if opts.LogDir == "" {
		opts.LogDir = contract.LogDir
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.ReadyPollInterval <= 0 {
		opts.ReadyPollInterval = 50 * time.Millisecond
	}
	if opts.MaxLogSize == 0 {
		opts.MaxLogSize = MaxLogSize
	}
	levels, err := cfg.Levels()
	if err != nil {
		return nil, err
	}
	con := opts.console
	if con == nil {
		con = &console{w: opts.Stdout}
	}
	reap, ownReap := opts.reaper, false
	if reap == nil {
		reap, ownReap = newReaper(), true
	}
	s := &Supervisor{
		cfg:      cfg,
		opts:     opts,
		con:      con,
		reap:     reap,
		ownReap:  ownReap,
		byName:   map[string]*svc{},
		shutdown: make(chan struct{}),
	}
	for _, l := range levels {
		s.order = append(s.order, l...)
	}
	for _, name := range s.order {
		v := &svc{spec: *cfg.Service(name), ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
		s.services = append(s.services, v)
		s.byName[name] = v
	}
	for _, v := range s.services {
		for _, d := range v.spec.After {
			v.deps = append(v.deps, s.byName[d])
			s.byName[d].dependents = append(s.byName[d].dependents, v)
		}
	}
	now := time.Now()
	s.status = Status{Phase: PhaseRunning, PID: os.Getpid(), StartedAt: now, UpdatedAt: now, Order: s.order, Services: map[string]ServiceStatus{}}
	for _, name := range s.order {
		s.status.Services[name] = ServiceStatus{State: StateWaiting}
	}
	return s, nil
}

// Logf prints a supervisor message to its stdout.
func (s *Supervisor) Logf(format string, a ...any) { s.con.logf(format, a...) }

// Run starts the reaper and the services and blocks until ctx ends, then stops the services in
// reverse dependency order, kills whatever is left and returns.
func (s *Supervisor) Run(ctx context.Context) error {
	// Orphans of the services (containerd shims, their containers) must come back to us to be
	// reaped and, at shutdown, killed, even when we are not PID 1 (tests, VMs with another init).
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			s.Logf("warning: cannot become a child subreaper: %v", err)
		}
	}
	if s.ownReap {
		reapCtx, stopReaper := context.WithCancel(context.Background())
		reaperDone := make(chan struct{})
		go func() { defer close(reaperDone); s.reap.run(reapCtx) }()
		defer func() { stopReaper(); <-reaperDone }()
	}

	if ctx.Err() != nil {
		s.Logf("stopped before any service started")
		s.setPhase(PhaseStopped)
		return nil
	}
	for _, v := range s.services {
		if err := s.openOutput(v); err != nil {
			s.Logf("%v", err)
		}
	}
	s.writeStatus()
	s.Logf("starting services: %s", strings.Join(s.order, ", "))
	for _, v := range s.services {
		go s.runService(v)
	}

	<-ctx.Done()
	s.Stop()
	return nil
}

// Stop stops all services in reverse dependency order and kills the processes left behind.
// Run calls it when its context ends.
func (s *Supervisor) Stop() {
	s.shutdownOnce.Do(func() {
		s.setPhase(PhaseStopping)
		s.Logf("stopping services")
		close(s.shutdown)
		// A service stops once everything that depends on it, directly or not, has stopped: a
		// finished oneshot in the middle of a chain must not let its own dependencies go first.
		stopped := map[*svc]chan struct{}{}
		for _, v := range s.services {
			stopped[v] = make(chan struct{})
		}
		var wg sync.WaitGroup
		for _, v := range s.services {
			wg.Add(1)
			go func(v *svc) {
				defer wg.Done()
				defer close(stopped[v])
				for _, d := range v.dependents {
					<-stopped[d]
				}
				v.stopOnce.Do(func() { close(v.stop) })
				<-v.done
			}(v)
		}
		wg.Wait()
		n := s.killRemaining(5 * time.Second)
		if n > 0 {
			s.Logf("killed %d remaining process(es)", n)
		}
		// Let the pumps print the services' last lines (nothing writes to the pipes any more).
		drain := time.After(time.Second)
		for _, v := range s.services {
			if v.out != nil {
				v.out.Close()
			}
		}
		for _, v := range s.services {
			if v.pumped == nil {
				continue
			}
			select {
			case <-v.pumped:
			case <-drain:
			}
		}
		s.setPhase(PhaseStopped)
		s.Logf("all services stopped")
	})
}

// openOutput creates the pipe all runs of a service write to, and its pump.
func (s *Supervisor) openOutput(v *svc) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("service %s: creating output pipe: %w", v.spec.Name, err)
	}
	v.out = w
	v.pumped = make(chan struct{})
	lf, err := openLogFile(filepath.Join(s.opts.LogDir, v.spec.Name+".log"), s.opts.MaxLogSize)
	if err != nil {
		s.Logf("service %s: log file: %v (output goes to stdout only)", v.spec.Name, err)
		lf = nil
	}
	go func() {
		defer close(v.pumped)
		pumpLines(r, lf, s.con, "["+v.spec.Name+"] ")
		r.Close()
	}()
	return nil
}

func (s *Supervisor) update(name string, f func(*ServiceStatus)) {
	s.mu.Lock()
	st := s.status.Services[name]
	f(&st)
	s.status.Services[name] = st
	s.mu.Unlock()
	s.writeStatus()
}

func (s *Supervisor) setPhase(p string) {
	s.mu.Lock()
	s.status.Phase = p
	s.mu.Unlock()
	s.writeStatus()
}

// Status returns a copy of the current status.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Services = make(map[string]ServiceStatus, len(s.status.Services))
	for k, v := range s.status.Services {
		st.Services[k] = v
	}
	return st
}

func (s *Supervisor) writeStatus() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st := s.Status()
	st.UpdatedAt = time.Now()
	if err := WriteStatus(s.opts.StatusPath, &st); err != nil {
		s.Logf("writing status: %v", err)
	}
}

func (v *svc) markReady() { v.readyOnce.Do(func() { close(v.ready) }) }

func (s *Supervisor) stopping(v *svc) bool {
	select {
	case <-s.shutdown:
		return true
	case <-v.stop:
		return true
	default:
		return false
	}
}

// runService is the life of one service: wait for its dependencies, run, restart as its policy
// says, and stop when asked.
func (s *Supervisor) runService(v *svc) {
	defer close(v.done)
	name := v.spec.Name
	for _, d := range v.deps {
		select {
		case <-d.ready:
		case <-s.shutdown:
			s.update(name, func(st *ServiceStatus) { st.State = StateStopped })
			return
		}
	}
	var delay time.Duration
	for run := 0; ; run++ {
		fingerprint := ""
		if v.spec.Oneshot && v.spec.DoneMarker != "" {
			done, fp, err := markerDone(&v.spec)
			if err != nil {
				s.Logf("service %s: %v (running it)", name, err)
			}
			if done {
				s.Logf("service %s: already done (%s present), skipping", name, v.spec.DoneMarker)
				s.update(name, func(st *ServiceStatus) {
					st.State, st.Ready, st.Message = StateDone, true, "skipped: "+v.spec.DoneMarker+" present"
				})
				v.markReady()
				return
			}
			fingerprint = fp
		}
		if s.stopping(v) {
			s.update(name, func(st *ServiceStatus) { st.State, st.PID = StateStopped, 0 })
			return
		}
		started := time.Now()
		exit, stopped, err := s.runOnce(v, run)
		if stopped {
			s.update(name, func(st *ServiceStatus) { st.State, st.PID = StateStopped, 0 })
			return
		}
		success := err == nil && exit.Success()
		if v.spec.Oneshot && success {
			msg := ""
			if err := writeMarker(&v.spec, fingerprint); err != nil {
				msg = err.Error()
				s.Logf("service %s: %v", name, err)
			}
			s.Logf("service %s: done", name)
			s.update(name, func(st *ServiceStatus) { st.State, st.Ready, st.PID, st.Message = StateDone, true, 0, msg })
			v.markReady()
			return
		}
		if !ShouldRestart(v.spec.Restart, v.spec.Oneshot, success) {
			state := StateExited
			if !success {
				state = StateFailed
			}
			s.Logf("service %s: %s, not restarting (restart: %s)", name, describe(exit, err), v.spec.Restart)
			s.update(name, func(st *ServiceStatus) { st.State, st.PID = state, 0 })
			return
		}
		delay = NextBackoff(delay, time.Since(started))
		s.Logf("service %s: %s; restarting in %s", name, describe(exit, err), delay)
		s.update(name, func(st *ServiceStatus) { st.State, st.PID = StateBackoff, 0 })
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.shutdown:
			t.Stop()
			s.update(name, func(st *ServiceStatus) { st.State = StateStopped })
			return
		case <-v.stop:
			t.Stop()
			s.update(name, func(st *ServiceStatus) { st.State = StateStopped })
			return
		}
	}
}

func describe(exit *Exit, err error) string {
	if err != nil {
		return err.Error()
	}
	if exit == nil {
		return "ended"
	}
	return exit.String()
}

// runOnce starts the service's process and follows it until it exits, fails its readiness
// deadline (then it is killed) or the service is stopped (stopped is true then).
func (s *Supervisor) runOnce(v *svc, run int) (exit *Exit, stopped bool, err error) {
	name := v.spec.Name
	if v.spec.ReadyPath != "" {
		removeStaleSocket(v.spec.ReadyPath)
	}
	pid, exitCh, err := s.start(v)
	now := time.Now()
	if err != nil {
		err = fmt.Errorf("starting %s: %w", v.spec.Path, err)
		s.update(name, func(st *ServiceStatus) {
			st.Message = err.Error()
			if run > 0 {
				st.Restarts++
			}
		})
		return nil, false, err
	}
	s.Logf("service %s: started (pid %d)", name, pid)
	s.update(name, func(st *ServiceStatus) {
		st.State, st.PID, st.StartedAt, st.Message = StateStarting, pid, &now, ""
		if run > 0 {
			st.Restarts++
		}
	})

	var poll <-chan time.Time
	var deadline <-chan time.Time
	if !v.spec.Oneshot {
		if v.spec.ReadyPath == "" {
			s.setReady(v)
		} else {
			tk := time.NewTicker(s.opts.ReadyPollInterval)
			defer tk.Stop()
			poll = tk.C
			dt := time.NewTimer(v.spec.ReadyTimeout.D())
			defer dt.Stop()
			deadline = dt.C
			if exists(v.spec.ReadyPath) {
				s.setReady(v)
				poll, deadline = nil, nil
			}
		}
	}
	stopCh := v.stop
	for {
		select {
		case pe := <-exitCh:
			ex := pe.exit
			s.update(name, func(st *ServiceStatus) { st.LastExit, st.PID = &ex, 0 })
			return &ex, false, nil
		case <-poll:
			if exists(v.spec.ReadyPath) {
				s.setReady(v)
				poll, deadline = nil, nil
			}
		case <-deadline:
			msg := fmt.Sprintf("not ready after %s (%s missing)", v.spec.ReadyTimeout.D(), v.spec.ReadyPath)
			s.Logf("service %s: %s; killing it", name, msg)
			s.update(name, func(st *ServiceStatus) { st.Message = msg })
			ex := s.terminate(v, pid, exitCh)
			s.update(name, func(st *ServiceStatus) { st.LastExit, st.PID = ex, 0 })
			return ex, false, errors.New(msg)
		case <-stopCh:
			s.update(name, func(st *ServiceStatus) { st.State = StateStopping })
			ex := s.terminate(v, pid, exitCh)
			s.Logf("service %s: stopped (%s)", name, ex)
			s.update(name, func(st *ServiceStatus) { st.LastExit, st.PID = ex, 0 })
			return ex, true, nil
		}
	}
}

func (s *Supervisor) setReady(v *svc) {
	first := false
	v.readyOnce.Do(func() { first = true; close(v.ready) })
	if first {
		s.Logf("service %s: ready", v.spec.Name)
	}
	s.update(v.spec.Name, func(st *ServiceStatus) { st.State, st.Ready = StateRunning, true })
}

// terminate sends SIGTERM, then SIGKILL after the grace period, and waits for the exit.
func (s *Supervisor) terminate(v *svc, pid int, exitCh <-chan processExit) *Exit {
	grace := s.cfg.StopGracePeriod.D()
	s.reap.signal(pid, unix.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case pe := <-exitCh:
		return &pe.exit
	case <-t.C:
	}
	s.Logf("service %s: still running %s after SIGTERM; sending SIGKILL", v.spec.Name, grace)
	s.reap.signal(pid, unix.SIGKILL)
	select {
	case <-s.shutdown:
		// Also kill what it started in its own process group; everything is going anyway.
		_ = unix.Kill(-pid, unix.SIGKILL)
	default:
	}
	t2 := time.NewTimer(10 * time.Second)
	defer t2.Stop()
	select {
	case pe := <-exitCh:
		return &pe.exit
	case <-t2.C:
		s.Logf("service %s: pid %d did not die after SIGKILL (uninterruptible?); giving up on it", v.spec.Name, pid)
		return &Exit{Code: -1, Signal: "SIGKILL", At: time.Now()}
	}
}

// start forks the service's process in its own process group, stdin from /dev/null and
// stdout/stderr into the service's pipe.
func (s *Supervisor) start(v *svc) (int, <-chan processExit, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, err
	}
	defer devnull.Close()
	out := v.out
	if out == nil {
		out = os.Stdout
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   mergeEnv(os.Environ(), v.spec.Env),
		Files: []*os.File{devnull, out, out},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	argv := append([]string{v.spec.Path}, v.spec.Args...)
	return s.reap.start(v.spec.Path, argv, attr)
}

// mergeEnv overlays extra on base (KEY=VALUE lists), sorted, and makes sure PATH is set.
func mergeEnv(base []string, extra map[string]string) []string {
	m := map[string]string{}
	for _, kv := range base {
		if k, val, ok := strings.Cut(kv, "="); ok {
			m[k] = val
		}
	}
	for k, val := range extra {
		m[k] = val
	}
	if m["PATH"] == "" {
		m["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	out := make([]string, 0, len(m))
	for k, val := range m {
		out = append(out, k+"="+val)
	}
	sort.Strings(out)
	return out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// removeStaleSocket removes a socket left at a service's ready path by an earlier run, so that
// its presence means the new run is ready. Regular files are left alone.
func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
}

// killRemaining SIGKILLs the processes left behind (containerd shims, containers, helpers) and
// waits until they are reaped, at most timeout. It returns how many it killed.
func (s *Supervisor) killRemaining(timeout time.Duration) int {
	self := os.Getpid()
	killed := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		if s.opts.KillAll && self == 1 {
			pids = allProcesses(self)
		} else {
			pids = descendants(self)
		}
		if len(pids) == 0 {
			return len(killed)
		}
		if time.Now().After(deadline) {
			s.Logf("giving up on %d process(es) that survived SIGKILL: %v", len(pids), pids)
			return len(killed)
		}
		if s.opts.KillAll && self == 1 {
			_ = unix.Kill(-1, unix.SIGKILL)
			for _, p := range pids {
				killed[p] = true
			}
		} else {
			for _, p := range pids {
				if !killed[p] {
					killed[p] = true
				}
				_ = unix.Kill(p, unix.SIGKILL)
			}
		}
		s.reap.reapAll()
		time.Sleep(20 * time.Millisecond)
		s.reap.reapAll()
	}
}

// procEntry is the part of /proc/<pid>/stat the supervisor needs.
type procEntry struct {
	pid, ppid int
	state     byte
}

func readProcs() []procEntry {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procEntry
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if p, ok := parseProcStat(string(b)); ok {
			out = append(out, p)
		}
	}
	return out
}

// parseProcStat reads pid, state and ppid from /proc/<pid>/stat; the command name is in
// parentheses and may itself contain spaces and parentheses.
func parseProcStat(s string) (procEntry, bool) {
	open := strings.IndexByte(s, '(')
	closeIdx := strings.LastIndexByte(s, ')')
	if open < 0 || closeIdx < 0 || closeIdx+2 >= len(s) {
		return procEntry{}, false
	}
	var p procEntry
	if _, err := fmt.Sscanf(s[:open], "%d", &p.pid); err != nil {
		return procEntry{}, false
	}
	var state string
	if _, err := fmt.Sscanf(s[closeIdx+2:], "%s %d", &state, &p.ppid); err != nil || state == "" {
		return procEntry{}, false
	}
	p.state = state[0]
	return p, true
}

// descendants lists the live (non-zombie) descendants of pid.
func descendants(pid int) []int {
	return descendantsOf(readProcs(), pid)
}

func descendantsOf(procs []procEntry, pid int) []int {
	children := map[int][]procEntry{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			if c.state != 'Z' {
				out = append(out, c.pid)
			}
			walk(c.pid)
		}
	}
	walk(pid)
	sort.Ints(out)
	return out
}

// allProcesses lists the live processes of the PID namespace but self.
func allProcesses(self int) []int {
	var out []int
	for _, p := range readProcs() {
		if p.pid != self && p.state != 'Z' {
			out = append(out, p.pid)
		}
	}
	return out
}
