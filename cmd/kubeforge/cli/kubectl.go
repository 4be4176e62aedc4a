package cli

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newKubeconfig(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the cluster's standalone kubeconfig (admin, API server on 127.0.0.1)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := clusterName(name); err != nil {
				return err
			}
			return g.withProvider(func(p *cluster.Provider) error {
				b, err := p.Kubeconfig(name)
				if err != nil {
					return err
				}
				_, err = g.streams.Out.Write(b)
				return err
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}

// newKubectl embeds upstream kubectl, pointed at the cluster's kubeconfig, so that a workshop
// attendee without kubectl can follow along: kubeforge kubectl -- get pods -A.
func newKubectl(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "kubectl [--name NAME] -- ARGS...",
		Short: "Run kubectl (built in) against a cluster",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if _, err := clusterName(name); err != nil {
				return err
			}
			var path, own string
			if err := g.withProvider(func(p *cluster.Provider) (err error) {
				if path, err = p.KubeconfigPath(name); err != nil {
					return err
				}
				own, err = p.KubectlFor(cmd.Context(), name)
				return err
			}); err != nil {
				return err
			}
			if own != "" {
				// The cluster's version is out of the linked kubectl's skew: its own kubectl.
				k := exec.CommandContext(cmd.Context(), own, append([]string{"--kubeconfig", path}, args...)...)
				k.Stdin, k.Stdout, k.Stderr = g.streams.In, g.streams.Out, g.streams.Err
				err := k.Run()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitCode(ee.ExitCode())
				}
				return err
			}
			flags := genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50)
			flags.KubeConfig = &path
			// Requests say they come from kubectl (as upstream's binary's do), not from kubeforge:
			// the API server's audit log, and so `kubeforge trace`, name kubectl.
			flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
				_, ver, _ := strings.Cut(rest.DefaultKubernetesUserAgent(), "/")
				c.UserAgent = "kubectl/" + ver
				return c
			}
			// kubectl's own warnings and -v output go through klog, to stderr as upstream's binary.
			klog.ClearLogger()
			streams := genericiooptions.IOStreams{In: g.streams.In, Out: g.streams.Out, ErrOut: g.streams.Err}
			k := kubectlcmd.NewKubectlCommand(kubectlcmd.KubectlOptions{
				Arguments: append([]string{"kubectl"}, args...), ConfigFlags: flags.WithWarningPrinter(streams), IOStreams: streams,
			})
			k.SetArgs(args)
			k.SetIn(g.streams.In)
			k.SetOut(g.streams.Out)
			k.SetErr(g.streams.Err)
			// kubectl reports fatal errors itself and would exit the process: turn that into an
			// exit code returned from here.
			cmdutil.BehaviorOnFatal(func(msg string, code int) {
				if msg != "" {
					if !strings.HasSuffix(msg, "\n") {
						msg += "\n"
					}
					fmt.Fprint(g.streams.Err, msg)
				}
				panic(exitCode(code))
			})
			defer cmdutil.DefaultBehaviorOnFatal()
			defer func() {
				if r := recover(); r != nil {
					code, ok := r.(exitCode)
					if !ok {
						panic(r)
					}
					err = code
				}
			}()
			if err := k.ExecuteContext(cmd.Context()); err != nil {
				fmt.Fprintf(g.streams.Err, "error: %v\n", err)
				return exitCode(1)
			}
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}
