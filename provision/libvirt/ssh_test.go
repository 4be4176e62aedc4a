package libvirt

import (
	"bytes"
	"errors"
	"net"
	"os/exec"
	"testing"

	"golang.org/x/crypto/ssh"
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

func TestTokenCommand(t *testing.T) {
	got := tokenCommand("abc", []string{"tail", "-F", "/var/log/kubeforge/kubelet.log", "a b"})
	want := "KUBEFORGE_EXEC=abc; export KUBEFORGE_EXEC; exec tail -F /var/log/kubeforge/kubelet.log 'a b'"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
