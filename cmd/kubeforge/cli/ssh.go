package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
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
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				target, err := c.Machine(cmd.Context(), node)
				if err != nil {
					return err
				}
				if len(after) == 0 {
					return interactiveShell(cmd.Context(), g, target)
				}
				err = target.Run(cmd.Context(), provision.Cmd{Args: after, Stdin: g.streams.In, Stdout: g.streams.Out, Stderr: g.streams.Err})
				var re *provision.RunError
				if errors.As(err, &re) && re.Err == nil {
					return exitCode(re.ExitCode)
				}
				return err
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}

// interactiveShell opens a login shell with a terminal, through the program on the host the
// node offers (docker exec -it, ssh -t); without it the shell runs over the driver's exec,
// without a TTY.
//
// Ctrl-C: with a terminal, the program puts it in raw mode, so Ctrl-C is a byte the remote shell
// gets (it interrupts the command running there, as in any shell) and kubeforge gets no signal;
// the program is not tied to ctx (killing it would not stop the shell in the node anyway). Without
// a terminal program, Ctrl-C is a signal to kubeforge, which cancels ctx: the shell over the
// driver's exec is then stopped in the node (the driver's Run does that when ctx ends) and the
// command ends as interrupted.
func interactiveShell(ctx context.Context, g *globals, n provision.Node) error {
	if t, ok := n.(provision.Terminal); ok {
		argv, cleanup, found, err := t.TerminalCommand()
		if err != nil {
			return err
		}
		if found {
			defer cleanup()
			c := exec.Command(argv[0], argv[1:]...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			err := c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return exitCode(ee.ExitCode())
			}
			return err
		}
	}
	fmt.Fprintln(g.streams.Err, "(no terminal program found on the host: shell without a terminal)")
	return n.Run(ctx, provision.Cmd{Args: []string{"bash", "-i"}, Stdin: g.streams.In, Stdout: g.streams.Out, Stderr: g.streams.Err})
}
