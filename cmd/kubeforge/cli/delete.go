package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newDelete(g *globals) *cobra.Command {
	var (
		name string
		all  bool
		wait time.Duration
	)
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete a cluster (or --all): its nodes, network, volumes, state and kubeconfig context",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && cmd.Flags().Changed("name") {
				return kferr.Usage("give either --name or --all, not both")
			}
			ctx, cancel, err := waitContext(cmd, wait)
			if err != nil {
				return err
			}
			defer cancel()
			if !all {
				return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
					st := g.log().Step("Deleting cluster " + name)
					return st.Done(c.Delete(ctx))
				})
			}
			// Every cluster that can be deleted is, whatever happens to the others; the
			// failures (a driver that does not answer, a delete that failed) are returned together.
			return g.withProvider(func(p *cluster.Provider) error {
				n, err := p.DeleteAll(ctx, func(name string) func(error) error {
					return g.log().Step("Deleting cluster " + name).Done
				})
				if n == 0 && err == nil {
					fmt.Fprintln(g.streams.Out, "No clusters.")
				}
				return err
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster to delete")
	c.Flags().BoolVar(&all, "all", false, "delete every kubeforge cluster")
	c.Flags().DurationVar(&wait, "wait", lockedWait, "how long the delete may take, waiting for another kubeforge working on the cluster included (with --all: for all the clusters together)")
	return c
}

func newStop(g *globals) *cobra.Command {
	var (
		name string
		wait time.Duration
	)
	c := &cobra.Command{
		Use:   "stop",
		Short: "Stop a cluster's nodes, keeping their data; `kubeforge start` brings it back",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel, err := waitContext(cmd, wait)
			if err != nil {
				return err
			}
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				if err := c.Stop(ctx); err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Cluster %q stopped; `kubeforge start --name %s` starts it again with its objects and data.\n", name, name)
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	waitFlag(c, &wait, lockedWait)
	return c
}
