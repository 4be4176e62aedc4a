package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func newImage(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Build the node image, load images into a cluster's nodes",
	}
	c.AddCommand(newImageBuild(g), newImageLoad(g))
	for _, sc := range c.Commands() {
		if sc.Args == nil {
			sc.Args = noArgs
		}
	}
	return c
}

func newImageBuild(g *globals) *cobra.Command {
	var kubeVersion string
	c := &cobra.Command{
		Use:   "build",
		Short: "Build the node image from this kubeforge's binaries (skipped when Docker has it) and print its tag",
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := g.pingedEnv(cmd.Context())
			if err != nil {
				return err
			}
			defer e.close()
			dir, err := artifactsDir()
			if err != nil {
				return err
			}
			ref, err := images.Build(cmd.Context(), images.BuildOptions{
				ArtifactsDir: dir, KubernetesVersion: kubeVersion, Client: e.driver.Client(), Log: g.log(),
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(g.streams.Out, ref)
			return nil
		},
	}
	c.Flags().StringVar(&kubeVersion, "kubernetes-version", spec.KubernetesVersion, "Kubernetes version of the node binary")
	return c
}

func newImageLoad(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "load IMAGE...",
		Short: "Copy images from the host's Docker into every node of a cluster (skipping nodes that have them)",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return kferr.Usage("name at least one image, e.g. `kubeforge image load busybox:local`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.clusterEnv(cmd.Context(), name)
			if err != nil {
				return err
			}
			defer e.close()
			nodes, err := e.driver.Nodes(cmd.Context(), name)
			if err != nil {
				return err
			}
			if len(nodes) == 0 {
				return kferr.Usage("cluster %q has no nodes: create it with `kubeforge start --name %s`", name, name)
			}
			return images.Load(cmd.Context(), e.driver.Client(), nodes, args, g.log())
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	return c
}
