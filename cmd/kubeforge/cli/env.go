package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

// provider returns the library's Provider for this process's state directory and kubeconfig;
// the caller closes it.
func (g *globals) provider() (*cluster.Provider, error) {
	return cluster.New(cluster.Options{Log: g.log()})
}

// withProvider runs fn with a Provider, closed after.
func (g *globals) withProvider(fn func(*cluster.Provider) error) error {
	p, err := g.provider()
	if err != nil {
		return err
	}
	defer p.Close()
	return fn(p)
}

// onCluster runs fn with cluster name opened (name checked, its driver answering).
func (g *globals) onCluster(cmd *cobra.Command, name string, fn func(*cluster.Cluster) error) error {
	if _, err := clusterName(name); err != nil {
		return err
	}
	return g.withProvider(func(p *cluster.Provider) error {
		c, err := p.Open(cmd.Context(), name)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// clusterName validates --name.
func clusterName(name string) (string, error) {
	if err := spec.ValidateName(name); err != nil {
		return "", kferr.Usage("--name: %v", err)
	}
	return name, nil
}

func printJSON(g *globals, v any) error {
	b, err := jsonIndent(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.streams.Out, string(b))
	return err
}

// lockedWait is the default --wait of the commands that change a cluster quickly (stop, delete,
// node stop, node delete): mostly a bound on the wait for another kubeforge on the cluster.
const lockedWait = 10 * time.Minute

// waitFlag adds --wait to a command that takes the cluster's lock: it bounds the whole command,
// the wait for another kubeforge working on the cluster included.
func waitFlag(c *cobra.Command, wait *time.Duration, def time.Duration) {
	c.Flags().DurationVar(wait, "wait", def, "how long the command may take, waiting for another kubeforge working on the cluster included")
}

// waitContext is cmd's context bounded by --wait (a positive duration).
func waitContext(cmd *cobra.Command, wait time.Duration) (context.Context, context.CancelFunc, error) {
	if wait <= 0 {
		return nil, nil, kferr.Usage("--wait must be a positive duration such as 10m, got %s", wait)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), wait)
	return ctx, cancel, nil
}
