package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/cluster/trace"
	"kubeforge.dev/kubeforge/cluster/trace/web"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newTrace(g *globals) *cobra.Command {
	var (
		name, output string
		all, webPage bool
		webPort      int
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
  kubeforge trace -A -o json           # every namespace, one JSON object per line (NDJSON)
  kubeforge trace --web                # the same, live, drawn on a local web page (URL printed)
  kubeforge trace --why                # and why the scheduler chose each pod's node

--why adds, for each pod the scheduler places (or cannot place), its reasons as its own log gives
them: the nodes evaluated and those that fit, each node's score from each plugin (TaintToleration,
NodeResourcesFit, PodTopologySpread...), the chosen node, and the nodes a filter plugin turned
down and why. The scheduler writes these at log verbosity 10: --why raises its verbosity while the
trace runs and sets it back when the trace ends (a trace killed at once leaves it raised until the
scheduler restarts).

--web serves a page on 127.0.0.1 (--web-port, default any free port) drawing the diagram
workshops teach: kubectl, the API server, etcd, the controller manager, the scheduler and one box
per node with its kubelet and pods. Each step is animated as it happens (the component to the API
server, the API server to etcd with the key), pods appear in their node's box when bound and turn
green when their kubelet reports Running; a timeline lists the steps, a click shows one's object,
etcd key, resourceVersion and cause. A new page first gets the steps of the last 10 minutes (at
most 5000), which it can replay. The page needs no network (its files are in kubeforge). It keeps
going when the cluster is stopped ("cluster stopped, waiting") and follows it again once started.`,
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
			if webPage && output != "text" {
				return kferr.Usage("--web shows the steps on a web page: -o %s is for the terminal", output)
			}
			if webPage && o.Why {
				return kferr.Usage("--why shows the scheduler's reasons in the terminal (text or -o json), not on --web's page: leave one out")
			}
			if !webPage && cmd.Flags().Changed("web-port") {
				return kferr.Usage("--web-port is the port of --web's page: add --web")
			}
			if webPort < 0 || webPort > 65535 {
				return kferr.Usage("--web-port must be between 0 (any free port) and 65535, got %d", webPort)
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
			if webPage {
				return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
					return traceWeb(cmd.Context(), g, c, name, args, o, webPort)
				})
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
	f.BoolVar(&o.Why, "why", false, "also show why the scheduler chose each pod's node: filters, every node's scores (raises the scheduler's log verbosity while tracing)")
	f.BoolVar(&webPage, "web", false, "show the steps live on a local web page (127.0.0.1 only; its URL is printed)")
	f.IntVar(&webPort, "web-port", 0, "port of --web's page on 127.0.0.1 (0: any free port)")
	outputFlag(c, &output)
	return c
}

// traceRetry is how long `trace --web` waits before following a stopped cluster again.
const traceRetry = 2 * time.Second

// traceWeb serves the page of `trace --web` and feeds it the trace's steps until Ctrl-C: the
// trace is begun again whenever it ends (the cluster stopped, its control plane went down).
func traceWeb(ctx context.Context, g *globals, c *cluster.Cluster, name string, args []string, o cluster.TraceOptions, port int) error {
	scope := "namespace " + o.Namespace
	if o.Namespace == "" {
		scope = "every namespace"
	}
	if len(args) == 1 {
		scope += ", " + args[0] + " and what is made from it"
	}
	srv := web.New(web.Options{
		Cluster: name,
		Scope:   scope,
		Nodes: func(ctx context.Context) ([]web.Node, error) {
			st, err := c.Status(ctx)
			nodes := make([]web.Node, 0, len(st.Nodes))
			for _, n := range st.Nodes {
				nodes = append(nodes, web.Node{Name: n.Name, Role: n.Role, State: n.State})
			}
			return nodes, err
		},
	})
	ln, err := web.Listen(port)
	if err != nil {
		return kferr.Environment("pick another --web-port, or leave it out for any free port", "%v", err)
	}
	url := web.URL(ln)
	log := g.log()
	log.Infof("Serving the trace of cluster %s (%s) at %s; Ctrl-C to stop", name, scope, url)
	if _, err := fmt.Fprintln(g.streams.Out, url); err != nil {
		ln.Close()
		return err
	}
	eg, gctx := errgroup.WithContext(ctx)
	waiting := ""
	eg.Go(func() error { return srv.Serve(gctx, ln) })
	eg.Go(func() error {
		o.Following = func(cps []string) {
			waiting = ""
			msg := "following the audit log of " + strings.Join(cps, ", ")
			log.Infof("Tracing cluster %s (%s)", name, msg)
			srv.SetState(web.State{Phase: "following", Message: msg})
		}
		err := c.TraceAgain(gctx, o, traceRetry, func(err error) {
			msg := fmt.Sprintf("cluster %s stopped, waiting: %v", name, err)
			if msg != waiting {
				log.Infof("%s", msg)
				waiting = msg
			}
			srv.SetState(web.State{Phase: "waiting", Message: msg})
		}, func(s trace.Step) error {
			srv.Publish(s)
			return nil
		})
		if err != nil {
			return err
		}
		return context.Canceled // Ctrl-C: stop serving too
	})
	err = eg.Wait()
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil // Ctrl-C: the normal end of a trace
	}
	return err
}
