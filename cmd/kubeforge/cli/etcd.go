package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newEtcd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "etcd", Short: "Back up and restore the cluster's etcd"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save etcd to a file, or restore it from one"}
	oneFile := func(verb string) cobra.PositionalArgs {
		return func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("etcd snapshot %s takes one file, e.g. `kubeforge etcd snapshot %s backup.db`", verb, verb)
			}
			return nil
		}
	}
	var (
		name   string
		output string
		wait   time.Duration
	)
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Write a snapshot of the cluster's etcd (every object) to FILE",
		Args:  oneFile("save"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			file, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				st := g.log().Step("Saving etcd of " + name)
				s, err := c.SnapshotSave(cmd.Context(), file)
				if err := st.Done(err); err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, map[string]any{"file": file, "status": s})
				}
				fmt.Fprintf(g.streams.Out, "Saved %s: revision %d, %d keys, %d bytes (etcd %s). Restore it with `kubeforge etcd snapshot restore %s --name %s`.\n",
					file, s.Revision, s.TotalKeys, s.Bytes, s.Version, args[0], name)
				return nil
			})
		},
	}
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's etcd by a snapshot made with `snapshot save` (one control plane)",
		Long: `Replace every object of the cluster by those of the snapshot: the control plane stops, etcd's
data is replaced (the previous data stays in the node as /var/lib/etcd/member.before-restore),
the control plane starts again and the nodes' components relist. Objects made after the
snapshot are gone; those deleted since are back.`,
		Args: oneFile("restore"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 5m, got %s", wait)
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				s, err := c.SnapshotRestore(cmd.Context(), args[0], wait)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.streams.Out, "Restored %s into %q: revision %d, %d keys.\n", args[0], name, s.Revision, s.TotalKeys)
				return nil
			})
		},
	}
	for _, sc := range []*cobra.Command{save, restore} {
		sc.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	}
	outputFlag(save, &output)
	restore.Flags().DurationVar(&wait, "wait", 5*time.Minute, "how long the whole restore may take: waiting for another kubeforge working on the cluster, replacing etcd's data and waiting for the API server to answer again")
	snap.AddCommand(save, restore)
	c.AddCommand(snap)
	return c
}
