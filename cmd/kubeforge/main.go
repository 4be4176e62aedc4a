// Command kubeforge creates and manages local Kubernetes clusters. The commands live in package
// cli; this file only wires the process to it.
package main

import (
	"os"

	"kubeforge.dev/kubeforge/cmd/kubeforge/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
