package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/bootstrap/addons"
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
		name         string
		wait         time.Duration
		ingressPorts string
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
			var ports *spec.IngressPorts
			if cmd.Flags().Changed("ingress-ports") {
				if !slices.Contains(args, cluster.IngressAddon) {
					return kferr.Usage("--ingress-ports sets the ports of the %s add-on: enable it too (`kubeforge addons enable %s --ingress-ports %s`)", cluster.IngressAddon, cluster.IngressAddon, ingressPorts)
				}
				p, err := parseIngressPorts(ingressPorts)
				if err != nil {
					return err
				}
				ports = p
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				var err error
				if enable {
					err = c.EnableAddons(ctx, args, ports)
					if err == nil && slices.Contains(args, cluster.IngressAddon) {
						printIngress(ctx, g, c)
					}
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
	c.Flags().DurationVar(&wait, "wait", 30*time.Minute, "how long to wait, a wait for another kubeforge on the cluster and a first build of the add-on included (Traefik's takes 15-20 min on 2 cores)")
	if enable {
		c.Flags().StringVar(&ingressPorts, "ingress-ports", "80,443", ingressPortsUsage)
	}
	return c
}

const ingressPortsUsage = "host ports (127.0.0.1) of the ingress add-on, `HTTP,HTTPS`; one that is not free is replaced by one Docker picks (`kubeforge service traefik -n kube-system --url` prints them)"

// parseIngressPorts parses --ingress-ports HTTP,HTTPS.
func parseIngressPorts(s string) (*spec.IngressPorts, error) {
	h, hs, ok := strings.Cut(s, ",")
	hp, err1 := strconv.Atoi(strings.TrimSpace(h))
	hsp, err2 := strconv.Atoi(strings.TrimSpace(hs))
	if !ok || err1 != nil || err2 != nil || hp < 1 || hp > 65535 || hsp < 1 || hsp > 65535 || hp == hsp {
		return nil, kferr.Usage("--ingress-ports %q: want two different host ports HTTP,HTTPS, e.g. 8080,8443", s)
	}
	return &spec.IngressPorts{HTTP: hp, HTTPS: hsp}, nil
}

// printIngress says where the ingress add-on answers on the host.
func printIngress(ctx context.Context, g *globals, c *cluster.Cluster) {
	urls, err := c.ServiceURLs(ctx, metav1.NamespaceSystem, addons.TraefikName)
	if err != nil {
		g.log().Warnf("where the ingress answers: %v", err)
		return
	}
	var list []string
	for _, u := range urls {
		list = append(list, u.URL)
	}
	fmt.Fprintf(g.streams.Out, "Ingress and Gateway API answer at %s (e.g. curl -H 'Host: app.localhost' %s/ for an Ingress of host app.localhost).\n",
		strings.Join(list, " and "), list[0])
}
