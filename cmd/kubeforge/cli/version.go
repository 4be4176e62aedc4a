package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/buildinfo"
	"kubeforge.dev/kubeforge/internal/versions"
)

// versionInfo is `kubeforge version -o json`.
type versionInfo struct {
	buildinfo.Info
	KubernetesVersion string `json:"kubernetesVersion"`
}

func newVersion(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print kubeforge's version and commit, and the Kubernetes version it deploys",
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			v := versionInfo{Info: buildinfo.Get(), KubernetesVersion: versions.Default().Kubernetes}
			if output == "json" {
				return printJSON(g, v)
			}
			fmt.Fprintf(g.streams.Out, "Version:    %s\nCommit:     %s\nBuilt:      %s\nKubernetes: %s\n",
				v.Version, orUnknown(v.Commit), orUnknown(v.Date), v.KubernetesVersion)
			return nil
		},
	}
	outputFlag(c, &output)
	return c
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func cmdCtx() context.Context { return context.Background() }
