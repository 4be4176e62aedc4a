//go:build linux

package supervisor

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/contract/services"
)

// TestMain lets a test re-execute the test binary as kubeforge-init (not as PID 1, so without
// setup) to exercise Main's flags, config wait, signal handling and exit code.
func TestMain(m *testing.M) {
	if os.Getenv("KUBEFORGE_INIT_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func initCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KUBEFORGE_INIT_TEST_MAIN=1")
	return cmd
}

func TestMainProcess(t *testing.T) {
	dir := t.TempDir()
	cfgPath, statusPath, logDir := filepath.Join(dir, "services.json"), filepath.Join(dir, "status.json"), filepath.Join(dir, "log")
	cmd := initCommand("-config", cfgPath, "-status-file", statusPath, "-log-dir", logDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	}()
	waitStatus := func(what string, cond func(*Status) bool) *Status {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if st, err := ReadStatus(statusPath); err == nil && cond(st) {
				return st
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
	waitStatus("waiting for config", func(st *Status) bool { return st.Phase == PhaseWaitingConfig })
	cfg := &services.Config{Services: []services.Service{{Name: "svc", Path: "/bin/sh", Args: []string{"-c", "echo hi; exec sleep 100"}}}}
	b, _ := cfg.Marshal()
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	st := waitStatus("service running", func(st *Status) bool { return st.Services["svc"].State == StateRunning })
	if st.PID != cmd.Process.Pid {
		t.Errorf("status pid %d, want %d", st.PID, cmd.Process.Pid)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %s", d)
	}
	for _, want := range []string{"[kubeforge-init] waiting for " + cfgPath, "[svc] hi", "[kubeforge-init] all services stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	own, _ := os.ReadFile(filepath.Join(logDir, "kubeforge-init.log"))
	if !strings.Contains(string(own), "all services stopped") {
		t.Errorf("supervisor log file: %q", own)
	}
	if st, _ := ReadStatus(statusPath); st == nil || st.Phase != PhaseStopped {
		t.Errorf("final status: %+v", st)
	}
}

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"services":[{"name":"a","path":"/a","after":["b"]}]}`), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-setup", "sometimes"}, 2, "-setup must be auto, true or false"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-config", bad, "-status-file", filepath.Join(dir, "s.json"), "-log-dir", dir}, 1, `unknown service "b"`},
	}
	for _, c := range cases {
		out, err := initCommand(c.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: exit %d, output %q; want exit %d with %q", c.args, code, out, c.code, c.want)
		}
	}
	if st, err := ReadStatus(filepath.Join(dir, "s.json")); err != nil || st.Phase != PhaseFailed || !strings.Contains(st.Error, `unknown service "b"`) {
		t.Errorf("status after a config error: %+v %v", st, err)
	}
}
