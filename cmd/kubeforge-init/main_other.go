//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "kubeforge-init runs only on Linux (it is a node's init)")
	os.Exit(1)
}
