package provision

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sleepingWith returns the pids of this machine's processes whose command line holds arg (for
// tests that start a uniquely-timed sleep and check that it is gone).
func sleepingWith(t *testing.T, arg string) []string {
	t.Helper()
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("\x00"+arg+"\x00")) {
			pids = append(pids, strings.Split(f, "/")[2])
		}
	}
	return pids
}

// TestKillCmd runs the kill script on this machine: it ends a command's whole tree (a shell and
// its sleeping child), SIGKILLs what ignores SIGTERM after the grace, and spares processes with
// another token.
func TestKillCmd(t *testing.T) {
	start := func(token, script string) *exec.Cmd {
		c := exec.Command("sh", "-c", script)
		c.Env = append(os.Environ(), ExecTokenEnv+"="+token)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	unique := func() string { return fmt.Sprintf("%d.%03d", 300+rand.IntN(1000), rand.IntN(1000)) }
	tok, other := NewExecToken(), NewExecToken()
	plain, stubborn, spared := unique(), unique(), unique()
	c1 := start(tok, "sleep "+plain+"; echo not reached")
	c2 := start(tok, `trap "" TERM; sleep `+stubborn+"; echo not reached")
	start(tok+"0", "exec sleep "+spared)   // a token that only starts like ours
	start(other, "exec sleep "+spared+"1") // another command's
	deadline := time.Now().Add(5 * time.Second)
	for len(sleepingWith(t, plain)) == 0 || len(sleepingWith(t, stubborn)) == 0 || len(sleepingWith(t, spared)) == 0 || len(sleepingWith(t, spared+"1")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sleeps did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}

	args := KillCmd(tok, 500*time.Millisecond)
	began := time.Now()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	took := time.Since(began)
	for _, c := range []*exec.Cmd{c1, c2} {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%v exited 0, not killed", c.Args)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v still runs", c.Args)
		}
	}
	for _, arg := range []string{plain, stubborn} {
		if pids := sleepingWith(t, arg); len(pids) > 0 {
			t.Errorf("sleep %s still runs: pids %v", arg, pids)
		}
	}
	if took < 400*time.Millisecond || took > 4*time.Second {
		t.Errorf("kill took %v: want about the grace (0.5 s) for the process that ignores SIGTERM", took)
	}
	if len(sleepingWith(t, spared)) == 0 || len(sleepingWith(t, spared+"1")) == 0 {
		t.Error("processes with another token were killed")
	}

	// Nothing to kill: it ends at once, exit 0.
	began = time.Now()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil || time.Since(began) > 2*time.Second {
		t.Errorf("kill with nothing left: %v after %v\n%s", err, time.Since(began), out)
	}
}
