// Command kubeforge-image is the developers' tool for the node image: it makes the cached Debian
// rootfs, and builds or names the node image, without going through the kubeforge CLI.
//
//	kubeforge-image rootfs [-ready FILE] [-vm]   make (or find) the cached rootfs tarball, print its path
//	kubeforge-image ref [-artifacts DIR]    print the node image's tag for the binaries in DIR/bin
//	kubeforge-image build [-artifacts DIR]  build the node image (unless Docker has it), print its tag
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/ui"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "rootfs":
		err = cmdRootfs(ctx, os.Args[2:])
	case "ref", "build":
		err = cmdBuild(ctx, os.Args[1], os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeforge-image:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kubeforge-image rootfs [-ready FILE] [-vm] [-v]\n       kubeforge-image ref|build [-artifacts DIR] [-kubernetes-version V] [-v]")
	os.Exit(2)
}

func cmdRootfs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rootfs", flag.ExitOnError)
	ready := fs.String("ready", "", "write the tarball's path into this file when it is ready")
	verbose := fs.Bool("v", false, "show debootstrap's output")
	vm := fs.Bool("vm", false, "the VM nodes' rootfs (with a kernel and an SSH server)")
	fs.Parse(args)
	opts := rootfs.Options{Log: ui.New(os.Stderr, *verbose)}
	if *vm {
		opts = images.VMRootfsOptions(opts)
	}
	path, err := rootfs.Ensure(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Println(path)
	if *ready != "" {
		return os.WriteFile(*ready, []byte(path+"\n"), 0o644)
	}
	return nil
}

func cmdBuild(ctx context.Context, what string, args []string) error {
	fs := flag.NewFlagSet(what, flag.ExitOnError)
	artifacts := fs.String("artifacts", ".", "directory holding bin/ with the node's binaries")
	kubeVersion := fs.String("kubernetes-version", "", "Kubernetes version of bin/kubeforge-node (default: the module's)")
	verbose := fs.Bool("v", false, "show details")
	fs.Parse(args)
	opts := images.BuildOptions{ArtifactsDir: *artifacts, KubernetesVersion: *kubeVersion, Log: ui.New(os.Stderr, *verbose)}
	if what == "ref" {
		ref, err := images.Ref(opts)
		if err == nil {
			fmt.Println(ref)
		}
		return err
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	opts.Client = cli
	ref, err := images.Build(ctx, opts)
	if err != nil {
		return err
	}
	if insp, err := cli.ImageInspect(ctx, ref); err == nil {
		fmt.Fprintf(os.Stderr, "%s: %.0f MB\n", ref, float64(insp.Size)/1e6)
	}
	fmt.Println(ref)
	return nil
}
