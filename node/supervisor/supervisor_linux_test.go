//go:build linux

package supervisor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kubeforge.dev/kubeforge/contract/services"
)

// These tests run real processes (/bin/sh, sleep) under an in-process supervisor, which makes
// itself a child subreaper. They do not run setup (that needs a node container: see the e2e
// tests).

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      *testing.T
	dir    string
	sup    *Supervisor
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
}

func sh(name, script string) services.Service {
	return services.Service{Name: name, Path: "/bin/sh", Args: []string{"-c", script}}
}

// start runs a supervisor for cfg (after validation and defaults) in the background; the
// scripts find the test's directory in $D.
func start(t *testing.T, cfg *services.Config) *harness {
	t.Helper()
	dir := t.TempDir()
	for i := range cfg.Services {
		if cfg.Services[i].Env == nil {
			cfg.Services[i].Env = map[string]string{}
		}
		cfg.Services[i].Env["D"] = dir
		cfg.Services[i].ReadyPath = strings.ReplaceAll(cfg.Services[i].ReadyPath, "$D", dir)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Normalize()
	out := &syncBuffer{}
	sup, err := New(cfg, Options{StatusPath: filepath.Join(dir, "status.json"), LogDir: filepath.Join(dir, "log"), Stdout: out, ReadyPollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, dir: dir, sup: sup, out: out, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		if err := sup.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		h.stop(30 * time.Second)
		if t.Failed() {
			t.Logf("supervisor output:\n%s", out.String())
		}
	})
	return h
}

// stop cancels Run and waits for it, returning how long that took.
func (h *harness) stop(max time.Duration) time.Duration {
	start := time.Now()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(max):
		h.t.Fatalf("supervisor did not stop within %s", max)
	}
	return time.Since(start)
}

// waitFor polls the status until cond holds.
func (h *harness) waitFor(what string, timeout time.Duration, cond func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := h.sup.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; status: %+v", what, st.Services)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// read returns the content of a file a service writes, waiting up to 10 s for it to appear (a
// service counts as running once started, before its script got that far).
func (h *harness) read(name string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(h.dir, name))
		if s := strings.TrimSpace(string(b)); s != "" || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stateIs(name, state string) func(Status) bool {
	return func(st Status) bool { return st.Services[name].State == state }
}

func TestOrderAndParallelStart(t *testing.T) {
	a := sh("a", `sleep 1; touch "$D/a.ready"; exec sleep 100`)
	a.ReadyPath = "$D/a.ready"
	b := sh("b", `if [ -e "$D/a.ready" ]; then echo after-a-ready > "$D/b.out"; else echo too-early > "$D/b.out"; fi; exec sleep 100`)
	b.After = []string{"a"}
	c := sh("c", `if [ -e "$D/a.ready" ]; then echo serial > "$D/c.out"; else echo parallel > "$D/c.out"; fi; exec sleep 100`)
	cfg := &services.Config{Services: []services.Service{b, c, a}}
	h := start(t, cfg)
	h.waitFor("b running", 20*time.Second, stateIs("b", StateRunning))
	if got := h.read("b.out"); got != "after-a-ready" {
		t.Errorf("b started %s", got)
	}
	if got := h.read("c.out"); got != "parallel" {
		t.Errorf("c (no dependencies) should start without waiting for a, got %q", got)
	}
	st := h.sup.Status()
	if strings.Join(st.Order, ",") != "a,c,b" {
		t.Errorf("order = %v", st.Order)
	}
	// The status file follows (it is written right after each change).
	var data *Status
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if data, err = ReadStatus(filepath.Join(h.dir, "status.json")); err != nil {
			t.Fatal(err)
		}
		if data.Services["b"].State == StateRunning {
			break
		}
	}
	if data.Services["b"].State != StateRunning || data.Services["b"].PID == 0 || !data.Services["a"].Ready || data.Phase != PhaseRunning {
		t.Errorf("status file: %+v", data)
	}
}

func TestOutputGoesToLogFileAndStdout(t *testing.T) {
	h := start(t, &services.Config{Services: []services.Service{sh("talker", `echo hello out; echo hello err >&2; exec sleep 100`)}})
	// The service's lines and the supervisor's "started" come from different goroutines, in
	// either order: wait for all of them.
	wants := []string{"[talker] hello out\n", "[talker] hello err\n", "[kubeforge-init] service talker: started"}
	hasAll := func(out string) bool {
		for _, want := range wants {
			if !strings.Contains(out, want) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !hasAll(h.out.String()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := h.out.String(); !hasAll(out) {
		t.Errorf("stdout lacks one of %q:\n%s", wants, out)
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "log", "talker.log"))
	if string(b) != "hello out\nhello err\n" {
		t.Errorf("log file = %q", b)
	}
}

func TestRestartWithBackoff(t *testing.T) {
	h := start(t, &services.Config{Services: []services.Service{sh("svc", `exec sleep 100`)}})
	st := h.waitFor("running", 10*time.Second, stateIs("svc", StateRunning))
	pid1 := st.Services["svc"].PID
	killed := time.Now()
	if err := unix.Kill(pid1, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("restart", 15*time.Second, func(st Status) bool {
		s := st.Services["svc"]
		return s.Restarts == 1 && s.State == StateRunning && s.PID != pid1 && s.PID != 0
	})
	if waited := time.Since(killed); waited < 900*time.Millisecond {
		t.Errorf("restarted after %s, want the 1s back-off", waited)
	}
	s := st.Services["svc"]
	if s.LastExit == nil || s.LastExit.Signal != "SIGKILL" {
		t.Errorf("lastExit = %+v", s.LastExit)
	}
	// Kill again: the second restart waits 2s.
	killed = time.Now()
	unix.Kill(s.PID, unix.SIGKILL)
	h.waitFor("second restart", 15*time.Second, func(st Status) bool {
		return st.Services["svc"].Restarts == 2 && st.Services["svc"].State == StateRunning
	})
	if waited := time.Since(killed); waited < 1900*time.Millisecond {
		t.Errorf("second restart after %s, want 2s", waited)
	}
}

func TestOneshotMarkerAndDependents(t *testing.T) {
	stateDir := t.TempDir()
	keyDir := t.TempDir()
	os.WriteFile(filepath.Join(keyDir, "a.tar"), []byte("1234"), 0o644)
	once := sh("once", `n=$(cat "`+stateDir+`/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "`+stateDir+`/count"; echo run $n >> "`+stateDir+`/runs"; [ $n -ge 2 ]`)
	once.Oneshot = true
	once.DoneMarker = filepath.Join(stateDir, "once.done")
	once.DoneKey = filepath.Join(keyDir, "*.tar")
	after := sh("after", `exec sleep 100`)
	after.After = []string{"once"}
	cfg := func() *services.Config {
		return &services.Config{Services: []services.Service{once, after}}
	}
	h := start(t, cfg())
	st := h.waitFor("after running", 20*time.Second, stateIs("after", StateRunning))
	o := st.Services["once"]
	if o.State != StateDone || o.Restarts != 1 || !o.Ready || o.LastExit == nil || o.LastExit.Code != 0 {
		t.Errorf("oneshot status after a failure then a success: %+v", o)
	}
	if _, err := os.Stat(once.DoneMarker); err != nil {
		t.Errorf("marker not written: %v", err)
	}
	h.stop(20 * time.Second)

	// A new supervisor (a restarted node) skips it.
	h2 := start(t, cfg())
	st = h2.waitFor("after running", 20*time.Second, stateIs("after", StateRunning))
	if !strings.Contains(st.Services["once"].Message, "skipped") {
		t.Errorf("second boot: %+v", st.Services["once"])
	}
	h2.stop(20 * time.Second)
	if runs, _ := os.ReadFile(filepath.Join(stateDir, "runs")); strings.Count(string(runs), "run") != 2 {
		t.Errorf("runs: %q", runs)
	}

	// Another archive set (a new node image) runs it again.
	os.WriteFile(filepath.Join(keyDir, "b.tar"), []byte("5678"), 0o644)
	h3 := start(t, cfg())
	h3.waitFor("once done", 20*time.Second, stateIs("once", StateDone))
	if runs, _ := os.ReadFile(filepath.Join(stateDir, "runs")); strings.Count(string(runs), "run") != 3 {
		t.Errorf("runs after new archives: %q", runs)
	}
}

func TestFailedOneshotBlocksDependents(t *testing.T) {
	bad := sh("bad", `exit 3`)
	bad.Oneshot = true
	bad.Restart = services.RestartNever
	dep := sh("dep", `exec sleep 100`)
	dep.After = []string{"bad"}
	h := start(t, &services.Config{Services: []services.Service{bad, dep}})
	st := h.waitFor("bad failed", 10*time.Second, stateIs("bad", StateFailed))
	if st.Services["bad"].LastExit == nil || st.Services["bad"].LastExit.Code != 3 {
		t.Errorf("bad: %+v", st.Services["bad"])
	}
	time.Sleep(200 * time.Millisecond)
	if s := h.sup.Status().Services["dep"]; s.State != StateWaiting {
		t.Errorf("dep should still wait: %+v", s)
	}
	h.stop(10 * time.Second)
	if s := h.sup.Status().Services["dep"]; s.State != StateStopped {
		t.Errorf("dep after stop: %+v", s)
	}
}

func TestReadinessTimeout(t *testing.T) {
	s := sh("slow", `exec sleep 100`)
	s.ReadyPath = "/nonexistent/kubeforge-test.sock"
	s.ReadyTimeout = services.Duration(300 * time.Millisecond)
	s.Restart = services.RestartNever
	h := start(t, &services.Config{Services: []services.Service{s}})
	st := h.waitFor("failed", 10*time.Second, stateIs("slow", StateFailed))
	if !strings.Contains(st.Services["slow"].Message, "not ready after 300ms") || st.Services["slow"].LastExit.Signal != "SIGTERM" {
		t.Errorf("status: %+v", st.Services["slow"])
	}
}

func TestStartErrorIsRetried(t *testing.T) {
	s := services.Service{Name: "missing", Path: "/nonexistent/kubeforge-binary"}
	h := start(t, &services.Config{Services: []services.Service{s}})
	st := h.waitFor("retry", 10*time.Second, func(st Status) bool { return st.Services["missing"].Restarts >= 1 })
	if !strings.Contains(st.Services["missing"].Message, "no such file") {
		t.Errorf("status: %+v", st.Services["missing"])
	}
}

func TestStopReverseOrderGraceAndOrphans(t *testing.T) {
	// base traps TERM and records whether top had already stopped; top leaves an orphan.
	base := sh("base", `trap 'if [ -e "$D/top.stopped" ]; then echo ok > "$D/order"; else echo wrong > "$D/order"; fi; exit 0' TERM
touch "$D/base.up"
while :; do sleep 1 & wait; done`)
	top := sh("top", `trap 'touch "$D/top.stopped"; echo top says goodbye; exit 0' TERM
(sleep 1000 &) 
while :; do sleep 1 & wait; done`)
	// A finished oneshot between them must not break the order (stops are transitive).
	mid := sh("mid", `true`)
	mid.Oneshot, mid.After = true, []string{"base"}
	top.After = []string{"mid"}
	stubborn := sh("stubborn", `trap '' TERM; while :; do sleep 1; done`)
	cfg := &services.Config{Services: []services.Service{base, mid, top, stubborn}, StopGracePeriod: services.Duration(500 * time.Millisecond)}
	h := start(t, cfg)
	h.waitFor("all running", 10*time.Second, func(st Status) bool {
		return st.Services["top"].State == StateRunning && st.Services["stubborn"].State == StateRunning
	})
	if len(descendants(os.Getpid())) < 4 {
		t.Fatalf("expected services and the orphan among our descendants: %v", descendants(os.Getpid()))
	}
	took := h.stop(20 * time.Second)
	if got := h.read("order"); got != "ok" {
		t.Errorf("base was stopped before its dependent top (%q)", got)
	}
	st := h.sup.Status()
	if st.Phase != PhaseStopped {
		t.Errorf("phase = %s", st.Phase)
	}
	if e := st.Services["stubborn"].LastExit; e == nil || e.Signal != "SIGKILL" {
		t.Errorf("stubborn should have been SIGKILLed after the grace period: %+v", e)
	}
	if e := st.Services["base"].LastExit; e == nil || e.Code != 0 {
		t.Errorf("base exit: %+v", e)
	}
	if !strings.Contains(h.out.String(), "[top] top says goodbye\n") {
		t.Errorf("the last words of a stopped service must reach stdout")
	}
	if took > 5*time.Second {
		t.Errorf("stop took %s", took)
	}
	if left := descendants(os.Getpid()); len(left) != 0 {
		t.Errorf("processes left after stop: %v", left)
	}
	for _, name := range []string{"base", "top", "stubborn"} {
		if s := st.Services[name]; s.State != StateStopped || s.PID != 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
}

func TestOrphansAreReaped(t *testing.T) {
	h := start(t, &services.Config{Services: []services.Service{sh("spawner", `for i in 1 2 3 4 5; do (sleep 0.1 &); done; exec sleep 100`)}})
	h.waitFor("running", 10*time.Second, stateIs("spawner", StateRunning))
	deadline := time.Now().Add(5 * time.Second)
	for {
		zombies := 0
		for _, p := range readProcs() {
			if p.ppid == os.Getpid() && p.state == 'Z' {
				zombies++
			}
		}
		children := 0
		for _, p := range readProcs() {
			if p.ppid == os.Getpid() {
				children++
			}
		}
		// Only the service itself should remain our child once the orphans' sleeps are over.
		if zombies == 0 && children == 1 && h.sup.reap.reapedCount() >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d zombie(s), %d children of the supervisor, %d orphans reaped", zombies, children, h.sup.reap.reapedCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := h.sup.Status().Services["spawner"]; s.Restarts != 0 || s.State != StateRunning {
		t.Errorf("reaping orphans must not disturb the service: %+v", s)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "EMPTY="}, map[string]string{"B": "3", "C": "x=y"})
	want := "A=1 B=3 C=x=y EMPTY= PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if strings.Join(got, " ") != want {
		t.Errorf("got %v", got)
	}
}

func TestMainWaitsForConfigAndStopsOnSignal(t *testing.T) {
	// Main with setup off, config appearing late, then SIGTERM... exercised through waitConfig,
	// since a signal would hit the test binary itself.
	dir := t.TempDir()
	p := filepath.Join(dir, "services.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out syncBuffer
	con := &console{w: &out}
	waited := false
	go func() {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(p, []byte(`{"services":[{"name":"x",`), 0o644) // half written
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(p, []byte(`{"services":[{"name":"x","path":"/bin/true"}]}`), 0o644)
	}()
	cfg, err := waitConfig(ctx, p, con, func() { waited = true })
	if err != nil || cfg.Services[0].Name != "x" || !waited {
		t.Fatalf("waitConfig: %v %+v waited=%v", err, cfg, waited)
	}
	if !strings.Contains(out.String(), "waiting for "+p) {
		t.Errorf("output: %s", out.String())
	}
	// A file that stays invalid is an error after a short while.
	os.WriteFile(p, []byte(`{"services":[{"name":"bad name","path":"/x"}]}`), 0o644)
	if _, err := waitConfig(ctx, p, con, func() {}); err == nil || !strings.Contains(err.Error(), "name must match") {
		t.Errorf("invalid config: %v", err)
	}
	cancel()
	os.Remove(p)
	if _, err := waitConfig(ctx, p, con, func() {}); err != context.Canceled {
		t.Errorf("canceled: %v", err)
	}
}

func TestStatusMain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status.json")
	now := time.Now()
	WriteStatus(p, &Status{Phase: PhaseRunning, PID: 1, StartedAt: now, Services: map[string]ServiceStatus{"containerd": {State: StateRunning, PID: 7, StartedAt: &now}}})
	var out, errb bytes.Buffer
	if code := StatusMain([]string{"-status-file", p}, &out, &errb); code != 0 || !strings.Contains(out.String(), "containerd") {
		t.Errorf("code %d out %q err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := StatusMain([]string{"-status-file", p, "-json"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"state": "running"`) {
		t.Errorf("json: %d %q", code, out.String())
	}
	if code := StatusMain([]string{"-status-file", p + ".missing"}, &out, &errb); code != 1 {
		t.Errorf("missing file: code %d", code)
	}
}
