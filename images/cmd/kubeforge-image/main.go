// Command kubeforge-image is the developers' tool for the node image: it makes the cached Debian
// rootfs, and builds or names the node image, without going through the kubeforge CLI.
//
//	kubeforge-image rootfs [-ready FILE]   make (or find) the cached rootfs tarball, print its path
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeforge-image:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kubeforge-image rootfs [-ready FILE] [-v]")
	os.Exit(2)
}

func cmdRootfs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rootfs", flag.ExitOnError)
	ready := fs.String("ready", "", "write the tarball's path into this file when it is ready")
	verbose := fs.Bool("v", false, "show debootstrap's output")
	fs.Parse(args)
	path, err := rootfs.Ensure(ctx, rootfs.Options{Log: ui.New(os.Stderr, *verbose)})
	if err != nil {
		return err
	}
	fmt.Println(path)
	if *ready != "" {
		return os.WriteFile(*ready, []byte(path+"\n"), 0o644)
	}
	return nil
}
