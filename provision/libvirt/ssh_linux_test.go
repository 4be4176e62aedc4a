package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/provision"
)

// sleepingWith returns the pids of this machine's processes whose command line holds arg.
func sleepingWith(arg string) []string {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte("\x00"+arg+"\x00")) {
			pids = append(pids, strings.Split(f, "/")[2])
		}
	}
	return pids
}

// TestRunCancelStopsCommand: when ctx ends, run leaves no process of its command behind, though
// the server neither kills a closed session's command nor honours signal requests. No VM tier
// runs here: the "node" is this machine, behind an in-process SSH server.
func TestRunCancelStopsCommand(t *testing.T) {
	keys, err := LoadOrCreateKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn := &sshConn{node: "n", addr: fakeSSHD(t, keys), keys: keys, dial: (&net.Dialer{}).DialContext}
	t.Cleanup(conn.close)

	// A command that ends by itself still works, output and exit status.
	var out bytes.Buffer
	if err := conn.run(t.Context(), provision.Cmd{Args: []string{"sh", "-c", "echo $0 $1", "a b", "c"}, Stdout: &out}); err != nil || out.String() != "a b c\n" {
		t.Fatalf("run: %q %v", out.String(), err)
	}
	var re *provision.RunError
	if err := conn.run(t.Context(), provision.Cmd{Args: []string{"sh", "-c", "exit 3"}}); !errors.As(err, &re) || re.ExitCode != 3 {
		t.Fatalf("exit 3: %v", err)
	}

	// A shell with a sleeping child, and a command that ignores SIGTERM (a plain sleep would be
	// exec'd by sh and leave no child).
	for _, script := range []string{"sleep %s; echo not reached", `trap "" TERM; sleep %s; echo not reached`} {
		arg := fmt.Sprintf("%d.%03d", 300+rand.IntN(1000), rand.IntN(1000))
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			for len(sleepingWith(arg)) == 0 && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
		}()
		start := time.Now()
		err := conn.run(ctx, provision.Cmd{Args: []string{"sh", "-c", fmt.Sprintf(script, arg)}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%q: err %v, want canceled", script, err)
		}
		// run returned after the kill: at most the zombie's reaping is left.
		deadline := time.Now().Add(2 * time.Second)
		for len(sleepingWith(arg)) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pids := sleepingWith(arg); len(pids) > 0 {
			t.Errorf("%q: sleep %s still runs after the cancelled run (pids %v)", script, arg, pids)
		}
		t.Logf("%q: run returned %v after the start", script, time.Since(start).Round(time.Millisecond))
	}
}
