package libvirt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"kubeforge.dev/kubeforge/internal/fsutil"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/provision"
)

// Keys are a cluster's SSH keys: the client key the host logs in with (its public half in each
// node's authorized_keys) and the host key every node of the cluster is given at first boot (the
// only key the host accepts from them: known-hosts pinned, never "accept anything").
type Keys struct {
	Dir        string
	Client     ssh.Signer
	HostPublic ssh.PublicKey
	// hostPrivatePEM is the nodes' host key, OpenSSH format.
	hostPrivatePEM []byte
}

// Key files in a cluster's key directory.
const (
	clientKeyFile = "id_ed25519"
	hostKeyFile   = "ssh_host_ed25519_key"
)

// LoadOrCreateKeys reads the cluster's keys from dir, making them first when missing.
func LoadOrCreateKeys(dir string) (*Keys, error) {
	client, err := loadOrCreateKey(filepath.Join(dir, clientKeyFile), "kubeforge")
	if err != nil {
		return nil, err
	}
	host, err := loadOrCreateKey(filepath.Join(dir, hostKeyFile), "kubeforge-node")
	if err != nil {
		return nil, err
	}
	hs, err := ssh.ParsePrivateKey(host)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, hostKeyFile), err)
	}
	cs, err := ssh.ParsePrivateKey(client)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, clientKeyFile), err)
	}
	return &Keys{Dir: dir, Client: cs, HostPublic: hs.PublicKey(), hostPrivatePEM: host}, nil
}

func loadOrCreateKey(path, comment string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(block)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, b, 0o600, 0o700); err != nil {
		return nil, err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	pub = append(bytes.TrimSpace(pub), []byte(" "+comment+"\n")...)
	if err := fsutil.WriteFileAtomic(path+".pub", pub, 0o644, 0o700); err != nil {
		return nil, err
	}
	return b, nil
}

// AuthorizedKey is the line of the client key for a node's authorized_keys.
func (k *Keys) AuthorizedKey() []byte { return ssh.MarshalAuthorizedKey(k.Client.PublicKey()) }

// ClientKeyPath is the client's private key file (for `ssh -i`).
func (k *Keys) ClientKeyPath() string { return filepath.Join(k.Dir, clientKeyFile) }

// KnownHostsLine is the known_hosts line pinning the nodes' host key for addr.
func (k *Keys) KnownHostsLine(addr string) string {
	return addr + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.HostPublic)))
}

// sshConn is one node's SSH connection, dialled when first needed and again after it broke.
type sshConn struct {
	node string
	addr string // host:22
	keys *Keys
	// dial opens the TCP connection (through the hypervisor's SSH connection for a remote one).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// timeout bounds the dial and the SSH handshake (0: 10 s). Under software emulation a busy
	// node's sshd needs far longer than that to answer.
	timeout time.Duration

	mu     sync.Mutex
	client *ssh.Client
}

func (c *sshConn) config() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(c.keys.Client)},
		HostKeyCallback: ssh.FixedHostKey(c.keys.HostPublic),
		Timeout:         c.handshakeTimeout(),
	}
}

func (c *sshConn) handshakeTimeout() time.Duration {
	if c.timeout > 0 {
		return c.timeout
	}
	return 10 * time.Second
}

// get returns a live client, dialling when there is none.
func (c *sshConn) get(ctx context.Context) (*ssh.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client, nil
	}
	dctx, cancel := context.WithTimeout(ctx, c.handshakeTimeout())
	defer cancel()
	conn, err := c.dial(dctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, c.addr, c.config())
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	c.client = ssh.NewClient(sc, chans, reqs)
	go func(cl *ssh.Client) { // forget the client when the connection ends
		_ = safe.Call(func() error { return cl.Wait() }) // a panic in it must not end the process
		c.mu.Lock()
		if c.client == cl {
			c.client = nil
		}
		c.mu.Unlock()
	}(c.client)
	return c.client, nil
}

func (c *sshConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
}

// run runs cmd as provision.Node.Run does: a failure is a *provision.RunError with the output.
//
// When ctx ends, run stops the command before it returns. Without a pty, sshd leaves a session's
// command running when the session closes, and it delivers a "signal" request (OpenSSH 8.1 and
// later) to the session's main process only. So the command runs with a token in its
// environment (exec'd by the login shell, so the process holding it is the command itself), and
// after the signal request a second session signals every process holding the token
// (provision.KillCmd: SIGTERM, SIGKILL after provision.KillGrace), the command's children too.
func (c *sshConn) run(ctx context.Context, cmd provision.Cmd) error {
	token := provision.NewExecToken()
	started, err := c.exec(ctx, tokenCommand(token, cmd.Args), cmd)
	if err == nil || ctx.Err() == nil || !started {
		return err
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	kill := provision.KillCmd(token, provision.KillGrace)
	if _, kerr := c.exec(kctx, shellJoin(kill), provision.Cmd{Args: kill}); kerr != nil {
		var re *provision.RunError
		if errors.As(err, &re) {
			re.Err = fmt.Errorf("%w (stopping the command in the node failed: it may still run: %v)", re.Err, kerr)
		}
	}
	return err
}

// killTimeout bounds the session that stops an abandoned command (it takes KillGrace at most,
// after a new connection when the old one broke).
const killTimeout = provision.KillGrace + 20*time.Second

// tokenCommand is the remote shell's command line for args, with the token in its environment:
// the shell execs the command, which holds the token, as its children will.
func tokenCommand(token string, args []string) string {
	return provision.ExecTokenEnv + "=" + token + "; export " + provision.ExecTokenEnv + "; exec " + shellJoin(args)
}

// exec runs command (a remote shell command line; cmd gives its streams, and its Args for
// errors) in a new session; started says whether the command may have started.
func (c *sshConn) exec(ctx context.Context, command string, cmd provision.Cmd) (started bool, _ error) {
	fail := func(code int, out string, err error) error {
		return &provision.RunError{Node: c.node, Args: cmd.Args, ExitCode: code, Output: out, Err: err}
	}
	client, err := c.get(ctx)
	if err != nil {
		return false, fail(-1, "", fmt.Errorf("SSH to %s: %w", c.addr, err))
	}
	sess, err := client.NewSession()
	if err != nil {
		c.close()
		if client, err = c.get(ctx); err != nil {
			return false, fail(-1, "", fmt.Errorf("SSH to %s: %w", c.addr, err))
		}
		if sess, err = client.NewSession(); err != nil {
			return false, fail(-1, "", fmt.Errorf("SSH session on %s: %w", c.addr, err))
		}
	}
	defer sess.Close()
	var captured lockedBuffer
	sess.Stdout, sess.Stderr = cmd.Stdout, cmd.Stderr
	if sess.Stdout == nil {
		sess.Stdout = &captured
	}
	if sess.Stderr == nil {
		sess.Stderr = &captured
	}
	if cmd.Stdin != nil {
		sess.Stdin = cmd.Stdin
	}
	done := make(chan error, 1)
	go func() { done <- safe.Call(func() error { return sess.Run(command) }) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		sess.Close()
		return true, fail(-1, captured.String(), ctx.Err())
	}
	if err == nil {
		return true, nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return true, fail(ee.ExitStatus(), captured.String(), nil)
	}
	return true, fail(-1, captured.String(), err)
}

// shellJoin quotes args for the remote shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)
