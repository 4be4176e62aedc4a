//go:build linux

// Command kubeforge-init is a node's PID 1: it prepares the node (cgroups, mounts, sysctls),
// runs the services listed in /etc/kubeforge/services.json in dependency order, restarts them,
// reaps zombies, and stops everything in reverse order on SIGTERM.
//
//	kubeforge-init [-config FILE] [-setup auto|true|false]   run as the node's init
//	kubeforge-init status [-json]                            show the services' state
//	kubeforge-init setup                                     run the node setup again
//	kubeforge-init lb [-config FILE]                         the API load balancer of an HA cluster
//	kubeforge-init svclb -port P/N/NP... -node IP...         a LoadBalancer Service's forwarder
//
// It must stay small: stdlib and golang.org/x/sys only, no Kubernetes packages.
package main

import (
	"fmt"
	"os"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/node/lb"
	"kubeforge.dev/kubeforge/node/supervisor"
	"kubeforge.dev/kubeforge/node/svclb"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "status":
			os.Exit(supervisor.StatusMain(args[1:], os.Stdout, os.Stderr))
		case "setup":
			os.Exit(supervisor.SetupMain(args[1:], os.Stdout, os.Stderr))
		case "lb":
			os.Exit(lb.Main(args[1:], os.Stdout, os.Stderr))
		case "svclb":
			os.Exit(svclb.Main(args[1:], os.Stdout, os.Stderr))
		case "help", "-h", "-help", "--help":
			fmt.Fprint(os.Stdout, usage)
			os.Exit(0)
		}
	}
	os.Exit(supervisor.Main(args, os.Stdout, os.Stderr))
}

const usage = `usage:
  kubeforge-init [-config FILE] [-setup auto|true|false]   run as the node's init (PID 1)
  kubeforge-init status [-json]                            show the state of the node's services
  kubeforge-init setup                                     run the node setup again (idempotent)
  kubeforge-init lb [-config FILE]                         the API servers' load balancer (HA clusters)
  kubeforge-init svclb -port PROTO/PORT/NODEPORT... -node IP...   a LoadBalancer Service's forwarder

Services come from ` + contract.ServicesPath + `; their logs are in ` + contract.LogDir + `/<name>.log
and their state in ` + contract.StatusPath + `.
`
