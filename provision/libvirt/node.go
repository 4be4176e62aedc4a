package libvirt

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// Node is a VM node.
type Node struct {
	d       *Driver
	name    string
	cluster string
	role    string
	ip      netip.Addr
	ssh     *sshConn

	mu sync.Mutex
	// pending are the files for the seed disk, written when the node next starts: its network
	// and SSH keys, and what CopyTar got before the node first started.
	pending    []seedFile
	pendingTar [][]byte
	hasPending bool
}

type seedFile struct {
	path string // relative to /
	mode int64
	data []byte
}

var (
	_ provision.Node      = (*Node)(nil)
	_ provision.Inspector = (*Node)(nil)
)

func (n *Node) Name() string           { return n.name }
func (n *Node) Role() string           { return n.role }
func (n *Node) IP() netip.Addr         { return n.ip }
func (n *Node) APIServerHostPort() int { return 0 }

// SSHAddress is the node's SSH server (host:port), and KeyPath the client key that logs in there
// as root; KnownHostsLine pins the node's host key (for `ssh -o UserKnownHostsFile`).
func (n *Node) SSHAddress() string     { return n.ssh.addr }
func (n *Node) KeyPath() string        { return n.ssh.keys.ClientKeyPath() }
func (n *Node) KnownHostsLine() string { return n.ssh.keys.KnownHostsLine(n.ip.String()) }

func (n *Node) domain(ctx context.Context) (*golibvirt.Libvirt, golibvirt.Domain, error) {
	l, err := n.d.lv(ctx)
	if err != nil {
		return nil, golibvirt.Domain{}, err
	}
	dom, err := l.DomainLookupByName(n.name)
	if err != nil {
		return l, dom, fmt.Errorf("node %s: %w", n.name, err)
	}
	return l, dom, nil
}

// State maps the domain's state.
func (n *Node) State(ctx context.Context) (provision.State, error) {
	l, dom, err := n.domain(ctx)
	if err != nil {
		if notFound(errors.Unwrap(err)) {
			return provision.StateMissing, nil
		}
		return "", err
	}
	st, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return "", fmt.Errorf("state of node %s: %w", n.name, err)
	}
	switch golibvirt.DomainState(st) {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return provision.StateRunning, nil
	case golibvirt.DomainShutoff, golibvirt.DomainShutdown, golibvirt.DomainCrashed:
		return provision.StateStopped, nil
	}
	return provision.StateOther, nil
}

// BootTimeout bounds the wait for a started VM to answer SSH.
func (n *Node) bootTimeout() time.Duration {
	if n.d.Accel() == AccelTCG {
		return 8 * time.Minute
	}
	return 2 * time.Minute
}

// Start writes the seed disk (when files are pending), starts the domain and waits until the
// node answers SSH.
func (n *Node) Start(ctx context.Context) error {
	l, dom, err := n.domain(ctx)
	if err != nil {
		return err
	}
	if err := n.writeSeed(ctx, l); err != nil {
		return err
	}
	st, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return err
	}
	if golibvirt.DomainState(st) != golibvirt.DomainRunning {
		if err := l.DomainCreate(dom); err != nil {
			return kferr.Environment("look at libvirtd's log, or the domain with `virsh dumpxml "+n.name+"`", "starting node %s's VM: %v", n.name, err)
		}
	}
	return n.waitSSH(ctx)
}

// waitSSH polls the node's SSH server until it runs a command, within bootTimeout.
func (n *Node) waitSSH(ctx context.Context) error {
	timeout := n.bootTimeout()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(wctx, n.ssh.handshakeTimeout()+5*time.Second)
		last = n.ssh.run(cctx, provision.Cmd{Args: []string{"true"}})
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err()
			}
			tail := n.consoleTail(4000)
			if tail != "" {
				tail = "\nlast console output:\n" + tail
			}
			hint := "look at the node's console (" + ConsolePath(n.name) + " on the hypervisor)"
			if n.d.Accel() == AccelTCG {
				hint += "; under --accel tcg a boot is slow: retry with a longer --wait"
			}
			return kferr.Timeout(hint, "node %s's VM did not answer SSH at %s within %s: %v%s", n.name, n.ssh.addr, timeout, last, tail)
		case <-time.After(time.Second):
		}
	}
}

// writeSeed builds the seed tar from the pending files and uploads it as the node's seed volume.
func (n *Node) writeSeed(ctx context.Context, l *golibvirt.Libvirt) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.hasPending {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDirs := func(p string) error {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/")
			if dirs[d] {
				continue
			}
			dirs[d] = true
			mode := int64(0o755)
			if d == "root/.ssh" {
				mode = 0o700
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: time.Unix(0, 0)}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, f := range n.pending {
		if err := addDirs(f.path); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	for _, t := range n.pendingTar {
		tr := tar.NewReader(bytes.NewReader(t))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("node %s: reading files to copy: %w", n.name, err)
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	pool, err := l.StoragePoolLookupByName(PoolName)
	if err != nil {
		return fmt.Errorf("storage pool %s: %w", PoolName, err)
	}
	name := nodeSeedName(n.name)
	if err := deleteVolume(l, pool, name); err != nil {
		return err
	}
	n.d.madeVolume(name)
	if err := uploadBytes(l, pool, name, buf.Bytes()); err != nil {
		return fmt.Errorf("node %s's seed disk: %w", n.name, err)
	}
	n.pending, n.pendingTar, n.hasPending = nil, nil, false
	return ctx.Err()
}

// Stop asks the node's init to stop its services and power off, and waits for that; a VM that
// does not stop in time is turned off.
func (n *Node) Stop(ctx context.Context) error {
	l, dom, err := n.domain(ctx)
	if err != nil {
		return err
	}
	if st, _, err := l.DomainGetState(dom, 0); err == nil && golibvirt.DomainState(st) == golibvirt.DomainShutoff {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = n.ssh.run(sctx, provision.Cmd{Args: []string{"kill", "-TERM", "1"}})
	cancel()
	n.ssh.close()
	grace := 90 * time.Second
	if n.d.Accel() == AccelTCG {
		grace = 3 * time.Minute
	}
	// The guest powers off once its supervisor stopped the components; past the grace (or when
	// ctx ends) the domain is turned off like a pulled plug.
	off := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, grace, true, func(context.Context) (bool, error) {
		st, _, err := l.DomainGetState(dom, 0)
		return err != nil || golibvirt.DomainState(st) == golibvirt.DomainShutoff, nil
	})
	if off == nil {
		return nil
	}
	if err := l.DomainDestroy(dom); err != nil && !notFound(err) {
		return fmt.Errorf("turning node %s off: %w", n.name, err)
	}
	return nil
}

// Run runs a command in the node over SSH.
func (n *Node) Run(ctx context.Context, cmd provision.Cmd) error { return n.ssh.run(ctx, cmd) }

// CopyTar unpacks a tar stream at the node's root: into the seed disk before the node first
// starts, over SSH once it runs.
func (n *Node) CopyTar(ctx context.Context, r io.Reader) error {
	n.mu.Lock()
	if n.hasPending {
		b, err := io.ReadAll(r)
		if err == nil {
			n.pendingTar = append(n.pendingTar, b)
		}
		n.mu.Unlock()
		return err
	}
	n.mu.Unlock()
	return n.ssh.run(ctx, provision.Cmd{Args: []string{"tar", "-x", "--no-overwrite-dir", "-C", "/"}, Stdin: r})
}

// ReadFile reads a file of the node.
func (n *Node) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var out bytes.Buffer
	if err := n.ssh.run(ctx, provision.Cmd{Args: []string{"cat", path}, Stdout: &out}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Logs streams the node's console: the supervisor's log over SSH, or, when the node does not
// answer, the serial console file (local hypervisors).
func (n *Node) Logs(ctx context.Context, w io.Writer, follow bool) error {
	log := path.Join(contract.LogDir, contract.SupervisorLogName+".log")
	args := []string{"tail", "-n", "+1", log}
	if follow {
		args = []string{"tail", "-n", "+1", "-F", log}
	}
	err := n.ssh.run(ctx, provision.Cmd{Args: args, Stdout: w})
	if err == nil || follow || ctx.Err() != nil {
		return err
	}
	if tail := n.consoleTail(1 << 20); tail != "" {
		_, werr := io.WriteString(w, tail)
		return werr
	}
	return err
}

// consoleTail is the end of the serial console file when the hypervisor is this machine.
func (n *Node) consoleTail(max int) string {
	if !isLocal(n.d.uri) {
		return ""
	}
	b, err := os.ReadFile(ConsolePath(n.name))
	if err != nil {
		return ""
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Inspect returns the domain's XML and state.
func (n *Node) Inspect(ctx context.Context) ([]byte, error) {
	l, dom, err := n.domain(ctx)
	if err != nil {
		return nil, err
	}
	x, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, err
	}
	st, _, _ := l.DomainGetState(dom, 0)
	return json.MarshalIndent(map[string]any{"driver": DriverName, "state": st, "domainXML": x}, "", "  ")
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
