package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newNode(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "List, add, stop, start and delete the nodes of a running cluster",
		Args:  noArgs,
	}
	c.AddCommand(newNodeList(g), newNodeAdd(g), newNodeDelete(g), newNodeStop(g), newNodeStart(g))
	return c
}

// oneNode checks that a node subcommand got exactly one node name.
func oneNode(c *cobra.Command, args []string) error {
	if len(args) != 1 {
		return kferr.Usage("%s takes one node name, e.g. `%s kubeforge-m02` (`kubeforge node list` shows them)", c.CommandPath(), c.CommandPath())
	}
	return nil
}

func newNodeList(g *globals) *cobra.Command {
	var name, output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the cluster's nodes: machine state and Kubernetes status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				nodes, err := c.NodeList(cmd.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, nodes)
				}
				tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tROLE\tIP\tMACHINE\tSTATUS\tVERSION")
				for _, n := range nodes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.IP, n.Machine, dash(n.Status), dash(n.Version))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	outputFlag(c, &output)
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newNodeAdd(g *globals) *cobra.Command {
	var (
		name, output, cpus, memory string
		cp, keep                   bool
		wait                       time.Duration
	)
	c := &cobra.Command{
		Use:   "add",
		Short: "Add a worker node to a running cluster and wait until it is Ready",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 3m, got %s", wait)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				start := time.Now()
				n, err := c.AddNode(cmd.Context(), cluster.AddNodeOptions{ControlPlane: cp, Wait: wait, KeepOnFailure: keep, CPUs: cpus, Memory: memory})
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, n)
				}
				fmt.Fprintf(g.streams.Out, "Node %s (%s) joined cluster %q and is Ready in %.1fs.\n", n.Name, n.IP, name, time.Since(start).Seconds())
				return nil
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", spec.DefaultName, "cluster name")
	f.BoolVar(&cp, "control-plane", false, "add a control-plane node (clusters started with --control-planes 2 or more)")
	f.StringVar(&cpus, "cpus", "", "cap the node's CPUs (e.g. 1 or 1500m); its Node reports that much allocatable")
	f.StringVar(&memory, "memory", "", "cap the node's memory (e.g. 2Gi); its Node reports that much allocatable")
	f.BoolVar(&keep, "keep-on-failure", false, "keep a node that failed to join, for debugging")
	f.DurationVar(&wait, "wait", 3*time.Minute, "how long the whole add may take: waiting for another kubeforge working on the cluster, making the node and waiting for it to be Ready")
	outputFlag(c, &output)
	return c
}

func newNodeDelete(g *globals) *cobra.Command {
	var (
		name  string
		force bool
		wait  time.Duration
	)
	c := &cobra.Command{
		Use:   "delete NODE",
		Short: "Drain a node, then remove it from the cluster and delete its machine",
		Args:  oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, err := waitContext(cmd, wait)
			if err != nil {
				return err
			}
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				if err := c.DeleteNode(ctx, args[0], cluster.DeleteNodeOptions{Force: force}); err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Node %s deleted from cluster %q.\n", args[0], name)
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	c.Flags().BoolVar(&force, "force", false, "do not drain the node first (its pods are deleted with it)")
	waitFlag(c, &wait, lockedWait)
	return c
}

func newNodeStop(g *globals) *cobra.Command {
	var (
		name string
		wait time.Duration
	)
	c := &cobra.Command{
		Use:   "stop NODE",
		Short: "Stop a node's machine (it goes NotReady; its pods move after the pod eviction timeout)",
		Args:  oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, err := waitContext(cmd, wait)
			if err != nil {
				return err
			}
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				if err := c.StopNode(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Node %s stopped; `kubeforge node start %s` brings it back.\n", args[0], args[0])
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	waitFlag(c, &wait, lockedWait)
	return c
}

func newNodeStart(g *globals) *cobra.Command {
	var (
		name string
		wait time.Duration
	)
	c := &cobra.Command{
		Use:   "start NODE",
		Short: "Start a stopped node and wait until it is Ready",
		Args:  oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 3m, got %s", wait)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				if err := c.StartNode(cmd.Context(), args[0], wait); err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Node %s is Ready.\n", args[0])
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	c.Flags().DurationVar(&wait, "wait", 3*time.Minute, "how long the whole start may take: waiting for another kubeforge working on the cluster, starting the node and waiting for it to be Ready")
	return c
}

func newService(g *globals) *cobra.Command {
	var (
		name, namespace, output string
		url                     bool
	)
	c := &cobra.Command{
		Use:   "service SERVICE",
		Short: "Print URLs that reach a NodePort or LoadBalancer service from the host",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("name one service, e.g. `kubeforge service web --url`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				urls, err := c.ServiceURLs(cmd.Context(), namespace, args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, urls)
				}
				if url {
					for _, u := range urls {
						fmt.Fprintln(g.streams.Out, u.URL)
					}
					return nil
				}
				tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAMESPACE\tSERVICE\tPORT\tNODEPORT\tURL\tLOADBALANCER")
				for _, u := range urls {
					lb := u.LoadBalancer
					if lb == "" {
						lb = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", namespace, args[0], u.Port, u.NodePort, u.URL, lb)
				}
				return tw.Flush()
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", spec.DefaultName, "cluster name")
	f.StringVarP(&namespace, "namespace", "n", "default", "the service's namespace")
	f.BoolVar(&url, "url", false, "print only the URLs, one per line")
	outputFlag(c, &output)
	return c
}
