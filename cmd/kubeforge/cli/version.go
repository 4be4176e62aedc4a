package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/buildinfo"
	"kubeforge.dev/kubeforge/internal/versions"
)

// versionInfo is `kubeforge version -o json`.
type versionInfo struct {
	buildinfo.Info
	// KubernetesVersion is the default one; KubernetesVersions every supported one.
	KubernetesVersion  string                 `json:"kubernetesVersion"`
	KubernetesVersions []cluster.ReleaseImage `json:"kubernetesVersions"`
}

func newVersion(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print kubeforge's version and commit, and the Kubernetes version it deploys",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			v := versionInfo{Info: buildinfo.Get(), KubernetesVersion: versions.Default().Kubernetes}
			_ = g.quiet().withProvider(func(p *cluster.Provider) error {
				ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
				defer cancel()
				v.KubernetesVersions = p.Releases(ctx)
				return nil
			})
			if output == "json" {
				return printJSON(g, v)
			}
			fmt.Fprintf(g.streams.Out, "Version:    %s\nCommit:     %s\nBuilt:      %s\nKubernetes: %s\n",
				v.Version, orUnknown(v.Commit), orUnknown(v.Date), v.KubernetesVersion)
			fmt.Fprintln(g.streams.Out, "\nSupported Kubernetes versions (--kubernetes-version):")
			tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  VERSION\tETCD\tCOREDNS\tNODE IMAGE HERE")
			for _, r := range v.KubernetesVersions {
				name, img := r.Kubernetes, "no: built on first use"
				if r.Default {
					name += " (default)"
				}
				switch {
				case r.Image != "":
					img = r.Image
				case r.NodeBinary:
					img = "no: node binary built, image made on first use (seconds)"
				case !r.Default:
					img = "no: built on first use (node binary ~5 min on 2 cores, once)"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", name, r.Etcd, r.CoreDNS, img)
			}
			return tw.Flush()
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
