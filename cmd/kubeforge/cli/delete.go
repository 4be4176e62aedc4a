package cli

import (
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
			deleted := 0
			err := g.forEachCluster(cmd.Context(), func(n string, e *env) error {
				deleted++
				return del(n, e)
			})
			if err != nil {
				return err
			}
			if deleted == 0 {
				fmt.Fprintln(g.streams.Out, "No clusters.")
			}
			return nil
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
