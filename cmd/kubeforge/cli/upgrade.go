package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

func newUpgrade(g *globals) *cobra.Command {
	var (
		name, version string
		wait          time.Duration
	)
	c := &cobra.Command{
		Use:   "upgrade --kubernetes-version V",
		Short: "Move a running cluster to the next Kubernetes minor (or a newer patch), node by node, keeping its objects and data",
		Long: `Move a running cluster to another supported Kubernetes version, as upstream's version-skew
policy asks: one minor at a time; each control plane in turn (an HA cluster keeps answering),
then each worker drained, moved and uncordoned, then the add-ons. Each node's machine is made
anew from the new node image over its kept data: objects, PVC data and loaded images stay.
` + "`kubeforge status`" + ` shows each node's version meanwhile. A failed upgrade leaves the cluster
usable; running it again finishes it (nodes already moved are left alone).

Supported versions: ` + strings.Join(versions.Names(), ", ") + ".",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if version == "" {
				return kferr.Usage("name the version to move to: --kubernetes-version %s (one of %s)", versions.Default().Minor(), strings.Join(versions.Names(), ", "))
			}
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 30m, got %s", wait)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				start := time.Now()
				res, err := c.Upgrade(cmd.Context(), version, cluster.UpgradeOptions{Wait: wait})
				if err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Cluster %q runs Kubernetes %s (was %s): %d node(s) moved in %.1fs.\n",
					name, res.To, res.From, len(res.Upgraded), time.Since(start).Seconds())
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	c.Flags().StringVar(&version, "kubernetes-version", "", "the version to move to: one of "+strings.Join(versions.Names(), ", ")+", or a minor")
	c.Flags().DurationVar(&wait, "wait", 30*time.Minute, "how long the whole upgrade may take")
	return c
}
