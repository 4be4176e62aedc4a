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
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
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

// errInterrupted is the cause of the context of a command stopped by Ctrl-C (or SIGTERM).
var errInterrupted = errors.New("interrupted")

// Main runs kubeforge with args and returns the exit code. The first Ctrl-C (or SIGTERM) cancels
// the command, which undoes what it made and returns (exit 130, "interrupted"); a second one
// quits at once through exit, leaving what was made for `kubeforge delete`. A panic is reported
// as an internal error, never as a Go stack trace (KUBEFORGE_DEBUG=1 adds it): here in the main
// goroutine; the library's goroutines turn theirs into errors (internal/safe).
func Main(args []string, s Streams) (code int) {
	return runMain(args, s, os.Exit)
}

func runMain(args []string, s Streams, exit func(int)) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(s.Err, "Error: internal error in kubeforge: %v\n", r)
			fmt.Fprintf(s.Err, "Fix: %s\n", safe.Hint)
			if os.Getenv("KUBEFORGE_DEBUG") != "" {
				fmt.Fprintf(s.Err, "%s", debug.Stack())
			}
			code = kferr.ExitInternal
		}
	}()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-sigs:
				if n == 0 {
					fmt.Fprintln(s.Err, "\nInterrupted: stopping and cleaning up (Ctrl-C again to quit at once)")
					cancel(errInterrupted)
					continue
				}
				fmt.Fprintln(s.Err, "Quitting at once: what was made is left; `kubeforge delete` removes it")
				exit(130)
				return
			case <-done:
				return
			}
		}
	}()

	g := &globals{streams: s}
	// client-go reports through klog (a response cut short while an API server restarts, a
	// retried watch): kubeforge reports what fails itself, so these are details for -v only,
	// never lines in the middle of its progress. `kubeforge kubectl` gives kubectl klog back.
	klog.SetLogger(funcr.New(func(prefix, args string) {
		if g.verbose {
			fmt.Fprintln(s.Err, "   client-go:", prefix, args)
		}
	}, funcr.Options{}))
	defer klog.ClearLogger()
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	err := root.ExecuteContext(ctx)
	interrupted := errors.Is(context.Cause(ctx), errInterrupted)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	if interrupted {
		// The command's own error is the cancellation ("context canceled") or what it cut
		// short: say what happened, and what the cleanup could not do.
		fmt.Fprintln(s.Err, "Error: interrupted")
		if !errors.Is(err, context.Canceled) || g.verbose {
			fmt.Fprintf(s.Err, "(%v)\n", err)
		}
		return 130
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		err = kferr.Usage("%v (see `kubeforge --help`)", err)
	}
	fmt.Fprintf(s.Err, "Error: %v\n", err)
	if h := kferr.Hint(err); h != "" {
		fmt.Fprintf(s.Err, "Fix: %s\n", h)
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
		newKubectl(g), newImage(g), newAddons(g), newRegistry(g), newSSH(g), newVersion(g), newNode(g), newService(g), newConfig(g), newLogs(g), newExport(g), newEtcd(g),
		newCompletion(g), newUpgrade(g), newTrace(g), newBundle(g),
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
