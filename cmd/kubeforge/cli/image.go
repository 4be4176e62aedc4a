package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

func newImage(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Build the node image, load images into a cluster's nodes, prune old node images",
	}
	c.AddCommand(newImageBuild(g), newImageLoad(g), newImageList(g), newImagePrune(g))
	for _, sc := range c.Commands() {
		if sc.Args == nil {
			sc.Args = noArgs
		}
	}
	return c
}

func newImageBuild(g *globals) *cobra.Command {
	var kubeVersion, kind string
	c := &cobra.Command{
		Use:   "build",
		Short: "Build the node image from this kubeforge's binaries (skipped when it is up to date) and print its name",
		Long: `Build the node image from this kubeforge's binaries and print its name.

--kind docker (the default) makes the Docker image (kubeforge.local/node:...) and prints its tag;
--kind vm makes the VM image (a qcow2 disk with its kernel and initramfs, for --driver kvm) and
prints its directory. Both are cached by the digest of their inputs.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := versions.Resolve(kubeVersion)
			if err != nil {
				return kferr.Usage("--kubernetes-version: %v", err)
			}
			return g.withProvider(func(p *cluster.Provider) error {
				name, err := p.BuildImage(cmd.Context(), kind, r.Kubernetes)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.streams.Out, name)
				return nil
			})
		},
	}
	c.Flags().StringVar(&kubeVersion, "kubernetes-version", versions.Default().Minor(), "Kubernetes version of the image: one of "+strings.Join(versions.Names(), ", ")+", or a minor")
	c.Flags().StringVar(&kind, "kind", "docker", "which image: docker (container nodes) or vm (VM nodes, --driver kvm)")
	return c
}

func newImageLoad(g *globals) *cobra.Command {
	var (
		name string
		wait time.Duration
	)
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
			ctx, cancel, err := waitContext(cmd, wait)
			if err != nil {
				return err
			}
			defer cancel()
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				return c.LoadImages(ctx, args)
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	// Copying large images into many (VM) nodes takes a while: a longer default.
	waitFlag(c, &wait, 30*time.Minute)
	return c
}

func newImageList(g *globals) *cobra.Command {
	var name, output string
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the images in the cluster's nodes, and which nodes have each",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.onCluster(cmd, name, func(c *cluster.Cluster) error {
				list, err := c.Images(cmd.Context())
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, list)
				}
				tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "IMAGE\tID\tSIZE\tNODES")
				for _, img := range list {
					id := strings.TrimPrefix(img.ID, "sha256:")
					if len(id) > 12 {
						id = id[:12]
					}
					fmt.Fprintf(tw, "%s\t%s\t%.1f MB\t%s\n", img.Ref, id, float64(img.Size)/1e6, strings.Join(img.Nodes, ","))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
	outputFlag(c, &output)
	return c
}

func newImagePrune(g *globals) *cobra.Command {
	var output, libvirtURI string
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove the node images (Docker's, cached and uploaded VM images) that this kubeforge no longer makes",
		Long: `Remove the node images this kubeforge's binaries no longer make:
  - Docker's kubeforge.local/node:* images other than the current one (an image a cluster's
    container still uses, even a stopped one, stays);
  - the VM images cached on this machine other than the current one;
  - the VM images uploaded to libvirt's pool "kubeforge" other than the current one, unless a VM
    on that hypervisor still runs from them (node disks are copy-on-write over them).
The images that clusters kubeforge knows of were made from stay (nodes added later use them).
Do not run it while a start from another kubeforge build is making VMs on the same hypervisor.
Docker not running is a warning (its images stay); so is libvirt not answering at an
--libvirt-uri you gave (without it, a missing local libvirt is skipped quietly).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var res cluster.Pruned
			if err := g.withProvider(func(p *cluster.Provider) (err error) {
				res, err = p.PruneImages(cmd.Context(), cluster.PruneOptions{LibvirtURI: libvirtURI})
				return err
			}); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g, res)
			}
			for _, r := range res.DockerImages {
				fmt.Fprintf(g.streams.Out, "Removed node image %s\n", r)
			}
			for _, d := range res.VMImages {
				fmt.Fprintf(g.streams.Out, "Removed VM image %s\n", d)
			}
			for _, v := range res.VMVolumes {
				fmt.Fprintf(g.streams.Out, "Removed volume %s from libvirt's pool\n", v)
			}
			if len(res.DockerImages)+len(res.VMImages)+len(res.VMVolumes) == 0 {
				fmt.Fprintln(g.streams.Out, "Nothing to prune.")
			}
			return nil
		},
	}
	c.Flags().StringVar(&libvirtURI, "libvirt-uri", "", "libvirt daemon whose pool to prune: qemu:///system (default) or qemu+ssh://USER@HOST/system")
	outputFlag(c, &output)
	return c
}
