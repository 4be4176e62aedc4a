package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
)

func newRegistry(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "registry",
		Short: "Make, list and remove the local image registry every Docker cluster can pull from",
		Long: `One registry container for all Docker clusters (kubeforge-registry, distribution's registry
` + cluster.RegistryVersion + ` built here), its images in the Docker volume kubeforge-registry-data,
published on 127.0.0.1 (port 5001 unless --port). The host pushes with plain docker push
(Docker treats 127.0.0.0/8 as an insecure registry: no daemon setting needed):

  kubeforge start --registry                 makes it when missing and wires the cluster to it
  docker tag app:dev localhost:5001/app:dev && docker push localhost:5001/app:dev
  kubectl create deployment app --image=localhost:5001/app:dev

Pods pull localhost:5001/NAME or kubeforge-registry:5000/NAME: every node's containerd mirrors
both to the registry's address on the cluster's network. Deleting a cluster leaves the registry
and its images; ` + "`kubeforge registry delete`" + ` removes them.`,
	}
	c.AddCommand(newRegistryCreate(g), newRegistryList(g), newRegistryDelete(g))
	return c
}

func newRegistryCreate(g *globals) *cobra.Command {
	var port int
	c := &cobra.Command{
		Use:   "create",
		Short: "Make the local registry (building its image the first time) and wait until it serves",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port < 1 || port > 65535 {
				return kferr.Usage("--port must be between 1 and 65535, got %d", port)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			return g.withProvider(func(p *cluster.Provider) error {
				info, made, err := p.CreateRegistry(ctx, port)
				if err != nil {
					return err
				}
				if made {
					fmt.Fprintf(g.streams.Out, "Registry %s is serving on 127.0.0.1:%d: docker push %s/NAME:TAG; clusters started with --registry pull from it.\n", info.Name, info.HostPort, info.Host)
				} else {
					fmt.Fprintf(g.streams.Out, "Registry %s is already there, serving on 127.0.0.1:%d; nothing changed.\n", info.Name, info.HostPort)
				}
				return nil
			})
		},
	}
	c.Flags().IntVar(&port, "port", cluster.DefaultRegistryPort, "host port on 127.0.0.1 to publish the registry on")
	return c
}

func newRegistryList(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "Show the local registry: its port, state, the clusters connected and its repositories",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.withProvider(func(p *cluster.Provider) error {
				info, ok, err := p.Registry(cmd.Context())
				if err != nil {
					return err
				}
				list := []cluster.RegistryInfo{}
				if ok {
					list = append(list, info)
				}
				if output == "json" {
					return printJSON(g, list)
				}
				if !ok {
					fmt.Fprintln(g.streams.Out, "No registry: `kubeforge registry create` or `kubeforge start --registry` makes it.")
					return nil
				}
				w := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tHOST\tSTATE\tCLUSTERS\tREPOSITORIES")
				repos := strings.Join(info.Repositories, ",")
				if info.CatalogError != "" {
					repos = "? (" + info.CatalogError + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", info.Name, info.Host, info.State, orNone(strings.Join(info.Clusters, ",")), orNone(repos))
				return w.Flush()
			})
		},
	}
	outputFlag(c, &output)
	return c
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func newRegistryDelete(g *globals) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "delete",
		Short: "Remove the local registry and its images (disconnecting it from every cluster)",
		Long: `Remove the local registry: it leaves every cluster's network, its container goes, and so does
its data volume (kubeforge-registry-data, the images pushed) unless --keep-data. Clusters started
with --registry get a new, empty one at their next start. Nothing to remove is not an error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			return g.withProvider(func(p *cluster.Provider) error {
				existed, err := p.DeleteRegistry(ctx, keep)
				if err != nil {
					return err
				}
				switch {
				case !existed:
					fmt.Fprintln(g.streams.Out, "There is no registry; nothing to delete.")
				case keep:
					fmt.Fprintln(g.streams.Out, "Registry kubeforge-registry deleted; its images stay in the volume kubeforge-registry-data (`kubeforge registry create` uses them again).")
				default:
					fmt.Fprintln(g.streams.Out, "Registry kubeforge-registry and its images deleted.")
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&keep, "keep-data", false, "keep the data volume kubeforge-registry-data (the images pushed) for a later `registry create`")
	return c
}
