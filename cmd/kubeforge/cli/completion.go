package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
)

func newCompletion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script (commands, flags, cluster and node names)",
		Long: `Print a shell completion script; cluster names (--name) and node names are completed from
the clusters that exist. For example:

  source <(kubeforge completion bash)                      # this shell
  kubeforge completion bash > /etc/bash_completion.d/kubeforge
  kubeforge completion zsh > "${fpath[1]}/_kubeforge"
  kubeforge completion fish > ~/.config/fish/completions/kubeforge.fish`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("name one shell: bash, zsh, fish or powershell (e.g. `kubeforge completion bash`)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), g.streams.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return kferr.Usage("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}

// completionTimeout bounds what a completion asks Docker or libvirt: a shell waits for it.
const completionTimeout = 3 * time.Second

// completeNames registers completion of cluster names for every --name flag, and of node names
// for the commands that take a node.
func completeNames(g *globals, root *cobra.Command, nodeArgs ...*cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("name") != nil {
			_ = c.RegisterFlagCompletionFunc("name", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
				return completeClusters(g, cmd), cobra.ShellCompDirectiveNoFileComp
			})
		}
		if c.Flags().Lookup("node") != nil {
			_ = c.RegisterFlagCompletionFunc("node", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
				return completeNodes(g, cmd), cobra.ShellCompDirectiveNoFileComp
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, c := range nodeArgs {
		c.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeNodes(g, cmd), cobra.ShellCompDirectiveNoFileComp
		}
	}
}

func completeClusters(g *globals, cmd *cobra.Command) []string {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	var names []string
	_ = g.quiet().withProvider(func(p *cluster.Provider) (err error) {
		names, err = p.Names(ctx)
		return err
	})
	return names
}

// completeNodes lists the machines of the cluster the command's --name names.
func completeNodes(g *globals, cmd *cobra.Command) []string {
	name, _ := cmd.Flags().GetString("name")
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	var names []string
	_ = g.quiet().withProvider(func(p *cluster.Provider) error {
		c, err := p.Open(ctx, name)
		if err != nil {
			return err
		}
		names, err = c.MachineNames(ctx)
		return err
	})
	return names
}
