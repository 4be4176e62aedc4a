package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestPauseExitsOnSIGTERM runs the program and checks that it blocks, then exits 0 on SIGTERM.
func TestPauseExitsOnSIGTERM(t *testing.T) {
	if os.Getenv("KUBEFORGE_PAUSE_CHILD") == "1" {
		main()
		return
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPauseExitsOnSIGTERM$")
		cmd.Env = append(os.Environ(), "KUBEFORGE_PAUSE_CHILD=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("pause exited before a signal: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		cmd.Process.Signal(sig)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pause after %v: %v, want exit 0", sig, err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("pause did not exit on %v", sig)
		}
	}
}

// TestReap checks that reap collects an exited child.
func TestReap(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		reap()
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("child %d was not reaped", pid)
}
