package cli

import (
	"fmt"

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
