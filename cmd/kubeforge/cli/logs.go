package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newLogs(g *globals) *cobra.Command {
	var (
		name string
		o    cluster.LogOptions
	)
	c := &cobra.Command{
		Use:   "logs",
		Short: "Show a node's logs: its console, a node service (kubelet, containerd...) or a control-plane component",
		Long: `Show the logs of a node (default: the first control plane).

Without --component: the node's console, every service of the node interleaved.
--component picks one: a node service (kubelet, containerd, netctl, node-net, kubeforge-init)
or a pod component (` + strings.Join(cluster.PodComponents, ", ") + `), whose
latest container's log is shown.

  kubeforge logs --component kubelet -f
  kubeforge logs --node kubeforge-m02 --component kube-proxy --tail 50`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Tail < 0 {
				return kferr.Usage("--tail must be 0 (all) or more, got %d", o.Tail)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				err := c.Logs(cmd.Context(), o, g.streams.Out)
				if cmd.Context().Err() != nil && o.Follow {
					return nil // interrupted while following: the normal end
				}
				return err
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", spec.DefaultName, "cluster name")
	f.StringVar(&o.Node, "node", "", "node to read from (default: the first control plane)")
	f.StringVarP(&o.Component, "component", "c", "", "a node service or pod component (default: the node's console)")
	f.BoolVarP(&o.Follow, "follow", "f", false, "keep printing new lines")
	f.IntVar(&o.Tail, "tail", 0, "show only the last N lines (default: all)")
	return c
}

func newExport(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "export",
		Short: "Export what a bug report or a CI artifact needs",
	}
	var name string
	logs := &cobra.Command{
		Use:   "logs DIR",
		Short: "Write every node's logs, runtime and network state, and the cluster's nodes, pods and events into DIR",
		Long: `Write into DIR, for a CI artifact or a bug report:
  DIR/<node>/console.log, inspect.json, containers.txt, ip-route.txt, iptables-save.txt...
  DIR/<node>/logs/kubeforge/<service>.log   node services (kubelet, containerd...)
  DIR/<node>/logs/pods/...                  every pod's container logs
  DIR/cluster.json, nodes.yaml, pods.txt, pods.yaml, events.txt, events.yaml
It works on a cluster whose start failed (kept with --keep-on-failure) and writes what it can
when the API server does not answer. Credentials are replaced with REDACTED (the userinfo of
URLs such as proxy settings, tokens, passwords, private keys, kubeconfig client keys, Secrets'
data) and the files are private (0600, directories 0700), but read a bundle before you publish it.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("export logs takes one directory, e.g. `kubeforge export logs ./artifacts`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
				return kferr.Usage("%s is a file: give a directory (it is created when missing)", dir)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				// Nothing to export is the user's mistake, not an export with gaps.
				if machines, err := c.MachineNames(cmd.Context()); err != nil {
					return err
				} else if len(machines) == 0 {
					return kferr.Usage("cluster %q has no machines: `kubeforge list` shows the clusters", name)
				}
				st := g.log().Step(fmt.Sprintf("Exporting logs of %s to %s", name, dir))
				err := c.ExportLogs(cmd.Context(), dir)
				if err != nil {
					g.log().Warnf("some parts could not be exported:\n%v", err)
				}
				st.Done(nil)
				if err != nil {
					return fmt.Errorf("logs of %s exported to %s, with gaps (see above)", name, dir)
				}
				fmt.Fprintln(g.streams.Out, dir)
				return nil
			})
		},
	}
	logs.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	c.AddCommand(logs)
	return c
}
