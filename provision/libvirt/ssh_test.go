package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"kubeforge.dev/kubeforge/provision"
)

// fakeSSHD serves SSH on 127.0.0.1 for the cluster keys k, running each session's command with
// sh -c on this machine, as sshd does without a pty: when the session closes the command goes on,
// and "signal" requests are refused (OpenSSH before 8.1). It returns its address.
func fakeSSHD(t *testing.T, k *Keys) string {
	t.Helper()
	host, err := ssh.ParsePrivateKey(k.hostPrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(key.Marshal(), k.Client.PublicKey().Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(host)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					if nch.ChannelType() != "session" {
						_ = nch.Reject(ssh.UnknownChannelType, "sessions only")
						continue
					}
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					go serveSession(ch, creqs)
				}
			}()
		}
	}()
	return l.Addr().String()
}

func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil) // "signal" too
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		c := exec.Command("sh", "-c", p.Command)
		c.Stdout, c.Stderr = ch, ch.Stderr()
		if err := c.Start(); err != nil {
			ch.Close()
			continue
		}
		go func() {
			status := 0
			var ee *exec.ExitError
			if err := c.Wait(); errors.As(err, &ee) {
				status = ee.ExitCode()
			}
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
			ch.Close()
		}()
	}
}

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
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
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

func TestTokenCommand(t *testing.T) {
	got := tokenCommand("abc", []string{"tail", "-F", "/var/log/kubeforge/kubelet.log", "a b"})
	want := "KUBEFORGE_EXEC=abc; export KUBEFORGE_EXEC; exec tail -F /var/log/kubeforge/kubelet.log 'a b'"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
