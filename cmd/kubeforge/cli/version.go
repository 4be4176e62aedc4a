package cli

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/spec"
)

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kubeforge's version and the Kubernetes version it deploys",
		RunE: func(*cobra.Command, []string) error {
			v := "devel"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						v = "git-" + s.Value[:12]
					}
				}
			}
			fmt.Fprintf(g.streams.Out, "kubeforge %s (Kubernetes %s)\n", v, spec.KubernetesVersion)
			return nil
		},
	}
}

func cmdCtx() context.Context { return context.Background() }
