package libvirt

import (
	"fmt"
	"net"
	"os"
	"os/exec"
)

// TerminalCommand is the ssh client logging in as root with the cluster's key, accepting only
// the node's pinned host key (a temporary known-hosts file, removed by cleanup). ok is false
// without an ssh client on the host.
func (n *Node) TerminalCommand() (argv []string, cleanup func(), ok bool, err error) {
	sshBin, lerr := exec.LookPath("ssh")
	if lerr != nil {
		return nil, nil, false, nil
	}
	kh, err := os.CreateTemp("", "kubeforge-known-hosts-")
	if err != nil {
		return nil, nil, false, err
	}
	cleanup = func() { os.Remove(kh.Name()) }
	_, err = fmt.Fprintln(kh, n.KnownHostsLine())
	if cerr := kh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return nil, nil, false, err
	}
	host, port, _ := net.SplitHostPort(n.SSHAddress())
	return []string{sshBin, "-t", "-i", n.KeyPath(), "-p", port, "-o", "UserKnownHostsFile=" + kh.Name(),
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "root@" + host}, cleanup, true, nil
}
