package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/config"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

func newBundle(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Save everything a cluster needs into one file; load it on machines without network or Go (classrooms)",
		Long: `A classroom bundle is one file holding the node image of one Kubernetes version, workload
images from this machine's Docker, the program images of the config's add-ons and registry (when
they are built here) and the cluster config:

  kubeforge bundle save class.kfb --image web:v1 --config cluster.yaml    (trainer, once)
  kubeforge bundle load class.kfb                                       (each attendee, offline)
  kubeforge start --config ~/.kubeforge/bundles.d/class/cluster.yaml    (printed by load)

load needs Docker and the kubeforge binary, no network and no Go toolchain. The file is a tar of
manifest.json (what it holds, each member's size and sha256) and docker-save archives; load checks
all of it before it changes anything.`,
	}
	c.AddCommand(newBundleSave(g), newBundleLoad(g))
	return c
}

func newBundleSave(g *globals) *cobra.Command {
	var (
		kubeVersion, cfg, output string
		imgs                     []string
	)
	c := &cobra.Command{
		Use:   "save FILE",
		Short: "Write the node image, workload images, add-on images and config into FILE",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("name the bundle file to write, e.g. `kubeforge bundle save class.kfb`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s := spec.Default("")
			var raw []byte
			cfgVersion := ""
			if cfg != "" {
				if cfg == "-" {
					return kferr.Usage("--config: name a file (a bundle keeps the file's text)")
				}
				f, err := config.Load(cfg, nil)
				if err != nil {
					return kferr.Usage("%v", err)
				}
				cfgVersion = f.Cluster.KubernetesVersion
				if s, err = f.ToSpec(); err != nil {
					return kferr.Usage("%v", err)
				}
				if raw, err = os.ReadFile(cfg); err != nil {
					return kferr.Usage("--config: %v", err)
				}
				if err := cluster.ValidateAddons(s.Addons); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("kubernetes-version") {
				r, err := versions.Resolve(kubeVersion)
				if err != nil {
					return kferr.Usage("--kubernetes-version: %v", err)
				}
				if cfgVersion != "" && s.KubernetesVersion != r.Kubernetes {
					return kferr.Usage("--kubernetes-version %s differs from the config's kubernetesVersion %s: give one", r.Kubernetes, s.KubernetesVersion)
				}
				s.KubernetesVersion = r.Kubernetes
			}
			if s.Image != "" && cmd.Flags().Changed("kubernetes-version") {
				return kferr.Usage("the config names its node image (image: %s): drop --kubernetes-version, or drop image: to bundle the node image of that version", s.Image)
			}
			for _, im := range imgs {
				if strings.TrimSpace(im) == "" {
					return kferr.Usage("--image: an empty image name")
				}
			}
			return g.withProvider(func(p *cluster.Provider) error {
				res, err := p.SaveBundle(cmd.Context(), cluster.BundleSaveOptions{File: args[0], Spec: s, Config: raw, Images: imgs})
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, res)
				}
				fmt.Fprintf(g.streams.Out, "Bundle %s: %.0f MB, Kubernetes %s, node image %s", res.File, float64(res.Size)/1e6, res.KubernetesVersion, res.NodeImage)
				if len(res.Images) > 0 {
					fmt.Fprintf(g.streams.Out, ", images %s", strings.Join(res.Images, " "))
				}
				if len(res.Programs) > 0 {
					fmt.Fprintf(g.streams.Out, ", add-on images %s", strings.Join(res.Programs, " "))
				}
				if res.Config {
					fmt.Fprint(g.streams.Out, ", the config")
				}
				fmt.Fprintf(g.streams.Out, ".\nOn each machine: kubeforge bundle load %s\n", res.File)
				return nil
			})
		},
	}
	c.Flags().StringVar(&kubeVersion, "kubernetes-version", versions.Default().Minor(), "Kubernetes version of the node image: one of "+strings.Join(versions.Names(), ", ")+", or a minor (default: the config's, else the newest)")
	c.Flags().StringArrayVar(&imgs, "image", nil, "a workload image from the host's Docker to put in (repeatable)")
	c.Flags().StringVar(&cfg, "config", "", "cluster config file (kubeforge config example) to put in; its add-ons' and registry's images go in too when built here")
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func newBundleLoad(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "load FILE",
		Short: "Load a bundle: its images into Docker and the cache, its config for start; prints the next commands",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return kferr.Usage("name the bundle file to load, e.g. `kubeforge bundle load class.kfb`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return g.withProvider(func(p *cluster.Provider) error {
				res, err := p.LoadBundle(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(g, res)
				}
				fmt.Fprintf(g.streams.Out, "Loaded bundle %s (Kubernetes %s) in %.1fs; its config is %s.\nNext:\n", res.Name, res.KubernetesVersion, res.Seconds, res.Config)
				for _, n := range res.Next {
					fmt.Fprintf(g.streams.Out, "  %s\n", n)
				}
				return nil
			})
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}
