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
	"kubeforge.dev/kubeforge/internal/spec"
)

func newAddons(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:     "addons",
		Aliases: []string{"addon"},
		Short:   "List, enable and disable a cluster's optional services (" + strings.Join(cluster.AddonNames(), ", ") + ")",
		Long: `Optional cluster services, built here from their Go modules (no registry needed) and copied
into the nodes as the node image's own images are. Enabled add-ons are kept in the cluster's
record: a stop and start keeps them, and nodes added later get their images.

Enable them when the cluster is made with ` + "`kubeforge start --addons NAME,...`" + ` (or addons: in
the config file), or later with ` + "`kubeforge addons enable NAME`" + `.`,
	}
	c.AddCommand(newAddonsList(g), newAddonsChange(g, true), newAddonsChange(g, false))
	return c
}

func newAddonsList(g *globals) *cobra.Command {
	var name, output string
	c := &cobra.Command{
		Use:   "list",
		Short: "List the add-ons and whether the cluster has each enabled",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				list := c.Addons()
				if output == "json" {
					return printJSON(g, list)
				}
				w := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tVERSION\tENABLED\tDESCRIPTION")
				for _, a := range list {
					enabled := "no"
					if a.Enabled {
						enabled = "yes"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Name, a.Version, enabled, a.Description)
				}
				return w.Flush()
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	outputFlag(c, &output)
	return c
}

func newAddonsChange(g *globals, enable bool) *cobra.Command {
	var (
		name string
		wait time.Duration
	)
	use, short := "disable NAME...", "Remove add-ons' objects from a running cluster"
	if enable {
		use, short = "enable NAME...", "Enable add-ons in a running cluster and wait until they serve"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return kferr.Usage("name at least one add-on: %s", strings.Join(cluster.AddonNames(), ", "))
			}
			return cluster.ValidateAddons(args)
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return cluster.AddonNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 5m, got %s", wait)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				var err error
				if enable {
					err = c.EnableAddons(ctx, args)
				} else {
					err = c.DisableAddons(ctx, args)
				}
				if err != nil && ctx.Err() == context.DeadlineExceeded && kferr.Code(err) != kferr.ExitTimeout {
					return kferr.Timeout("retry with a longer --wait", "timed out after %s: %v", wait, err)
				}
				return err
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	c.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait, a wait for another kubeforge on the cluster and a first build of the add-on included")
	return c
}
