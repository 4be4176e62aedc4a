package cli

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
	"kubeforge.dev/kubeforge/provision/libvirt"
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
			dir, err := artifactsDir()
			if err != nil {
				return err
			}
			opts := images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: kubeVersion, Log: g.log()}
			switch kind {
			case "vm":
				im, err := images.BuildVM(cmd.Context(), opts)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.streams.Out, im.Dir)
				return nil
			case "docker":
			default:
				return kferr.Usage("--kind %q is not one of docker (the container node image) or vm (the VM node image)", kind)
			}
			e, err := g.pingedEnv(cmd.Context())
			if err != nil {
				return err
			}
			defer e.close()
			opts.Client = e.docker.Client()
			ref, err := images.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.streams.Out, ref)
			return nil
		},
	}
	c.Flags().StringVar(&kubeVersion, "kubernetes-version", spec.KubernetesVersion, "Kubernetes version of the node binary")
	c.Flags().StringVar(&kind, "kind", "docker", "which image: docker (container nodes) or vm (VM nodes, --driver kvm)")
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
			return g.onCluster(cmd, name, func(e *env) error {
				return e.provider.LoadImages(cmd.Context(), name, args)
			})
		},
	}
	c.Flags().StringVar(&name, "name", spec.DefaultName, "cluster name")
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
			return g.onCluster(cmd, name, func(e *env) error {
				nodes, err := e.driver.Nodes(cmd.Context(), name)
				if err != nil {
					return err
				}
				if len(nodes) == 0 {
					return kferr.Usage("cluster %q has no nodes: create it with `kubeforge start --name %s`", name, name)
				}
				nodes = slices.DeleteFunc(nodes, provision.IsLoadBalancer)
				list, err := images.List(cmd.Context(), nodes)
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
			dir, err := artifactsDir()
			if err != nil {
				return err
			}
			opts := images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: spec.KubernetesVersion, Log: g.log()}
			var res struct {
				DockerImages []string `json:"dockerImages"`
				VMImages     []string `json:"vmImages"`
				VMVolumes    []string `json:"vmVolumes"`
			}
			keepVM, err := images.VMImageDir(opts)
			if err != nil {
				return err
			}
			// The images recorded clusters were made from stay: `node add` uses them.
			recordedDocker, recordedVM, err := recordedImages()
			if err != nil {
				return err
			}
			if res.VMImages, err = images.PruneVMImages(keepVM, recordedVM); err != nil {
				return err
			}
			keepKeys := []string{filepath.Base(keepVM)}
			for _, d := range recordedVM {
				keepKeys = append(keepKeys, filepath.Base(filepath.Clean(d)))
			}
			// Pruning makes no VM: the driver is opened as for emulation, so a host without KVM
			// is not refused.
			if e, err := g.pingedEnvWith(cmd.Context(), driverSel{name: spec.DriverKVM, libvirtURI: libvirtURI, accel: libvirt.AccelTCG}); err != nil {
				if cmd.Flags().Changed("libvirt-uri") {
					g.log().Warnf("libvirt's VM image volumes were not pruned: %v", err)
				} else {
					g.log().Debugf("libvirt's VM image volumes were not pruned: %v", err)
				}
			} else {
				defer e.close()
				if res.VMVolumes, err = e.vm.PruneImages(cmd.Context(), keepKeys); err != nil {
					return err
				}
			}
			if e, err := g.pingedEnv(cmd.Context()); err != nil {
				g.log().Warnf("Docker's node images were not pruned: %v", err)
			} else {
				defer e.close()
				keep, err := images.Ref(opts)
				if err != nil {
					return err
				}
				if res.DockerImages, err = images.Prune(cmd.Context(), e.docker.Client(), append(recordedDocker, keep), g.log()); err != nil {
					return err
				}
			}
			if res.DockerImages == nil {
				res.DockerImages = []string{}
			}
			if res.VMImages == nil {
				res.VMImages = []string{}
			}
			if res.VMVolumes == nil {
				res.VMVolumes = []string{}
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

// recordedImages returns the node images the recorded clusters were made from: Docker image
// references, and VM image directories.
func recordedImages() (docker, vm []string, err error) {
	recorded, err := cluster.RecordedClusters("")
	if err != nil {
		return nil, nil, err
	}
	for name, driver := range recorded {
		rec, ok, err := cluster.LoadRecord("", name)
		if err != nil {
			return nil, nil, err
		}
		if !ok || rec.Image == "" {
			continue
		}
		if driver == spec.DriverKVM {
			vm = append(vm, rec.Image)
		} else {
			docker = append(docker, rec.Image)
		}
	}
	return docker, vm, nil
}
