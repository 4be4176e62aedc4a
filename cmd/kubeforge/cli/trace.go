package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/cluster/trace"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newTrace(g *globals) *cobra.Command {
	var (
		name, output string
		all          bool
		o            cluster.TraceOptions
	)
	c := &cobra.Command{
		Use:   "trace [OBJECT]",
		Short: "Show, live, each write to the API server: who (kubectl, a controller, the scheduler, a kubelet) stored what, and why",
		Long: `Show, from now on, one line per write the API server answers: the time (ms), the component
that asked (kubectl, deployment-controller, replicaset-controller, scheduler, the kubelet of a
node, node-lifecycle-controller...), the object written, its etcd key and resourceVersion, the
object it was made for (its owner), the node a pod is bound to, the pods' status as the kubelets
report it, and the Events they record (Pulled, Created, Started, Killing, BackOff...). Each line
is one event of the API server's audit log; nothing is guessed.

OBJECT (NAME or KIND/NAME: deployment/web, rs/web-5d8f7, pod/web-5d8f7-x2x) limits the trace
to that object and what its controllers make from it, as it happens.

  kubeforge trace                      # namespace default, every object
  kubeforge trace deployment/web       # then: kubectl create deployment web --image=... --replicas=3
  kubeforge trace -A -o json           # every namespace, one JSON object per line (NDJSON)`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return kferr.Usage("trace follows one object, got %d: %s", len(args), strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if len(args) == 1 {
				o.Object = args[0]
			}
			if all {
				o.Namespace = ""
			}
			write := trace.WriteText
			if output == "json" {
				write = trace.WriteJSON
			}
			o.Following = func(cps []string) {
				ns := "namespace " + o.Namespace
				if o.Namespace == "" {
					ns = "every namespace"
				}
				g.log().Infof("Tracing cluster %s (%s; the audit log of %s); Ctrl-C to stop", name, ns, strings.Join(cps, ", "))
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				err := c.Trace(cmd.Context(), o, func(s trace.Step) error { return write(g.streams.Out, s) })
				if cmd.Context().Err() != nil {
					return nil // Ctrl-C: the normal end of a trace
				}
				return err
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", spec.DefaultName, "cluster name")
	f.StringVarP(&o.Namespace, "namespace", "n", "default", "namespace to trace")
	f.BoolVarP(&all, "all-namespaces", "A", false, "trace every namespace")
	outputFlag(c, &output)
	return c
}
