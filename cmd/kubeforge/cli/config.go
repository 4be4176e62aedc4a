package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/config"
	"kubeforge.dev/kubeforge/internal/kferr"
)

func newConfig(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Cluster files for `kubeforge start --config`: print an example, check one",
		Args:  noArgs,
	}
	c.AddCommand(newConfigExample(g), newConfigValidate(g))
	return c
}

func newConfigExample(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a commented cluster file that sets every field (kubeforge config example > cluster.yaml)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(g.streams.Out, config.Example)
			return err
		},
	}
}

func newConfigValidate(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a cluster file without starting anything (- reads stdin)",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("%s takes one file, e.g. `%s cluster.yaml`", c.CommandPath(), c.CommandPath())
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			f, err := config.Load(args[0], g.streams.In)
			if err != nil {
				return kferr.Usage("%v", err)
			}
			c, err := f.ToSpec()
			if err != nil {
				return kferr.Usage("%v", err)
			}
			fmt.Fprintf(g.streams.Out, "%s: valid: cluster %q, %s (%s)\n", f.Name, c.Name,
				plural(len(c.Nodes), "node"), plural(c.ControlPlanes(), "control plane"))
			return nil
		},
	}
}

// plural is "1 node", "2 nodes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
