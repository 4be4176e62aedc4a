package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newDelete(g *globals) *cobra.Command {
	var (
		name string
		all  bool
	)
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete a cluster (or --all): its nodes, network, volumes, state and kubeconfig context",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && cmd.Flags().Changed("name") {
				return kferr.Usage("give either --name or --all, not both")
			}
			del := func(n string, e *env) error {
				st := g.log().Step("Deleting cluster " + n)
				return st.Done(e.provider.Delete(cmd.Context(), n))
			}
			if !all {
				return g.onCluster(cmd, name, func(e *env) error { return del(name, e) })
			}
			// Every cluster that can be deleted is, whatever happens to the others; the
			// failures (a driver that does not answer, a delete that failed) are returned together.
			seen := 0
			var errs []error
			err := g.forEachCluster(cmd.Context(), func(c clusterRef) error {
				seen++
				if c.err != nil {
					errs = append(errs, fmt.Errorf("cluster %s was not deleted: %w", c.name, c.err))
				} else if err := del(c.name, c.env); err != nil {
					errs = append(errs, fmt.Errorf("cluster %s: %w", c.name, err))
				}
				return cmd.Context().Err()
			})
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			if seen == 0 {
				fmt.Fprintln(g.streams.Out, "No clusters.")
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster to delete")
	c.Flags().BoolVar(&all, "all", false, "delete every kubeforge cluster")
	return c
}

func newStop(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "stop",
		Short: "Stop a cluster's nodes, keeping their data; `kubeforge start` brings it back",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.onCluster(cmd, name, func(e *env) error {
				if err := e.provider.Stop(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Cluster %q stopped; `kubeforge start --name %s` starts it again with its objects and data.\n", name, name)
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}
