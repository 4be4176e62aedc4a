// Package cli holds kubeforge's cobra commands: thin wrappers over cluster and images
// that parse flags, call the library and print. Errors carry exit codes (internal/kferr): 1
// internal, 2 usage, 3 environment (Docker missing, port taken...), 4 timeout.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
)

// Streams are the process's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// globals are the flags every command has.
type globals struct {
	streams Streams
	verbose bool
}

func (g *globals) log() *ui.Logger { return ui.New(g.streams.Err, g.verbose) }

// quiet is g without progress output (shell completion must print only its answers).
func (g *globals) quiet() *globals {
	q := *g
	q.streams.Err = io.Discard
	return &q
}

// Main runs kubeforge with args and returns the exit code.
func Main(args []string, s Streams) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{streams: s}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit exitCode
	if errors.As(err, &exit) {
		return int(exit)
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		err = kferr.Usage("%v (see `kubeforge --help`)", err)
	}
	fmt.Fprintf(s.Err, "Error: %v\n", err)
	if h := kferr.Hint(err); h != "" {
		fmt.Fprintf(s.Err, "Fix: %s\n", h)
	}
	if ctx.Err() != nil {
		return 130
	}
	return kferr.Code(err)
}

// exitCode is returned by commands that already reported their outcome (kubectl, ssh).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubeforge",
		Short: "Local Kubernetes clusters in seconds, on Docker or VMs",
		Long: `kubeforge makes real Kubernetes clusters on your machine: upstream components, static
control-plane pods in the kubeadm layout, a kubeconfig context merged for you.

  kubeforge start          create cluster "kubeforge" and wait until it is usable
  kubectl get pods -A      the context "kubeforge" is current
  kubeforge delete         remove it`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "show details of every step")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return kferr.Usage("%v (see `%s --help`)", err, c.CommandPath())
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		newStart(g), newStop(g), newDelete(g), newStatus(g), newList(g), newKubeconfig(g),
		newKubectl(g), newImage(g), newSSH(g), newVersion(g), newNode(g), newService(g), newConfig(g), newLogs(g), newExport(g), newEtcd(g),
		newCompletion(g),
	)
	var nodeArgs []*cobra.Command
	for _, path := range [][]string{{"ssh"}, {"node", "stop"}, {"node", "start"}, {"node", "delete"}} {
		if c, _, err := root.Find(path); err == nil && c.Name() == path[len(path)-1] {
			nodeArgs = append(nodeArgs, c)
		}
	}
	completeNames(g, root, nodeArgs...)
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = noArgs
		}
	}
	return root
}

// noArgs rejects positional arguments with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return kferr.Usage("%s takes no arguments, got %q (see `%s --help`)", c.CommandPath(), args, c.CommandPath())
	}
	return nil
}
