// Command kubeforge-node is the multi-call node binary: it links the real upstream Kubernetes
// components and etcd as libraries and runs the one named by its first argument (or by the name
// it was invoked as, busybox-style).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"kubeforge.dev/kubeforge/cmd/kubeforge-node/components"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := components.Lookup(name); !ok {
		if len(args) == 0 {
			usage()
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	run, ok := components.Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "kubeforge-node: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	os.Exit(run(args))
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: kubeforge-node COMPONENT [FLAGS...]\ncomponents: %v\n", components.Names())
}
