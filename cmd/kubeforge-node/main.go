// Command kubeforge-node is the multi-call node binary: it links the real upstream Kubernetes
// components and etcd as libraries and runs the one named by its first argument (or by the name
// it was invoked as, busybox-style).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"kubeforge.dev/kubeforge/cmd/kubeforge-node/components"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/node/startorder"
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
	steadyGC(os.Getenv(contract.SteadyGCEnv))
	bound, _ := time.ParseDuration(os.Getenv(contract.StartWaitEnv)) // 0 (the default) when unset
	startorder.Wait(context.Background(), name, args, bound, os.Stderr)
	os.Exit(run(args))
}

// steadyGCDelay is how long a component runs with Go's default GC target before it switches to
// the steady one: past the start-up allocation burst of every component.
const steadyGCDelay = 30 * time.Second

// steadyGC switches the GC target to pct (contract.SteadyGCEnv) once the component has
// started, and returns the memory freed to the system; an empty or invalid pct does nothing.
func steadyGC(pct string) {
	p, err := strconv.Atoi(pct)
	if err != nil || p <= 0 {
		return
	}
	time.AfterFunc(steadyGCDelay, func() {
		debug.SetGCPercent(p)
		debug.FreeOSMemory()
	})
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: kubeforge-node COMPONENT [FLAGS...]\ncomponents: %v\n", components.Names())
}
