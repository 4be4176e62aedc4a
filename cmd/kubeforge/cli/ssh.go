package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
	"kubeforge.dev/kubeforge/provision/libvirt"
)

func newSSH(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "ssh [NODE] [-- COMMAND...]",
		Short: "Open a shell in a node (default: the first), or run a command there",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := clusterName(name); err != nil {
				return err
			}
			node := spec.NodeName(name, 0)
			dash := cmd.ArgsLenAtDash()
			before, after := args, []string(nil)
			if dash >= 0 {
				before, after = args[:dash], args[dash:]
			}
			switch len(before) {
			case 0:
			case 1:
				node = before[0]
			default:
				return kferr.Usage("give one node name, then `--` and the command: kubeforge ssh %s -- %v", before[0], before[1:])
			}
			e, err := g.clusterEnv(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer e.close()
			nodes, err := e.driver.Nodes(cmd.Context(), name)
			if err != nil {
				return err
			}
			var target provision.Node
			var names []string
			for _, n := range nodes {
				names = append(names, n.Name())
				if n.Name() == node {
					target = n
				}
			}
			if target == nil {
				return kferr.Usage("cluster %q has no node %q (nodes: %v)", name, node, names)
			}
			if len(after) == 0 {
				return interactiveShell(g, target)
			}
			err = target.Run(cmd.Context(), provision.Cmd{Args: after, Stdin: g.streams.In, Stdout: g.streams.Out, Stderr: g.streams.Err})
			var re *provision.RunError
			if errors.As(err, &re) && re.Err == nil {
				return exitCode(re.ExitCode)
			}
			return err
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}

// interactiveShell opens a login shell with a terminal. The Docker CLI gives the best terminal
// handling; without it the shell runs over the driver's exec, without a TTY.
func interactiveShell(g *globals, n provision.Node) error {
	if vm, ok := n.(*libvirt.Node); ok {
		return vmShell(g, vm)
	}
	if docker, err := exec.LookPath("docker"); err == nil {
		c := exec.Command(docker, "exec", "-it", n.Name(), "bash", "-l")
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := c.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return exitCode(ee.ExitCode())
		}
		return err
	}
	fmt.Fprintln(g.streams.Err, "(no docker CLI found: shell without a terminal)")
	return n.Run(cmdCtx(), provision.Cmd{Args: []string{"bash", "-i"}, Stdin: g.streams.In, Stdout: g.streams.Out, Stderr: g.streams.Err})
}

// vmShell opens a login shell in a VM node with the ssh client (a terminal), the cluster's key and
// the node's pinned host key; without an ssh client, over the driver's SSH without a TTY.
func vmShell(g *globals, n *libvirt.Node) error {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		fmt.Fprintln(g.streams.Err, "(no ssh client found: shell without a terminal)")
		return n.Run(cmdCtx(), provision.Cmd{Args: []string{"bash", "-i"}, Stdin: g.streams.In, Stdout: g.streams.Out, Stderr: g.streams.Err})
	}
	kh, err := os.CreateTemp("", "kubeforge-known-hosts-")
	if err != nil {
		return err
	}
	defer os.Remove(kh.Name())
	if _, err := fmt.Fprintln(kh, n.KnownHostsLine()); err != nil {
		return err
	}
	kh.Close()
	host, port, _ := net.SplitHostPort(n.SSHAddress())
	c := exec.Command(sshBin, "-t", "-i", n.KeyPath(), "-p", port, "-o", "UserKnownHostsFile="+kh.Name(),
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "root@"+host)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCode(ee.ExitCode())
	}
	return err
}
