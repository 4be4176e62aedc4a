package components

import (
	"os"

	"kubeforge.dev/kubeforge/node/cloud"
)

// cloudRunner runs the cloud provider of a cluster on Docker (node/cloud): LoadBalancer
// Services. It runs in the cluster's cloud-provider machine, not in a node; on VM clusters, with
// -node-addresses, in the first control plane.
//
//	kubeforge-node cloud-provider -cluster NAME -network NET -image IMAGE [-kubeconfig FILE]
//	kubeforge-node cloud-provider -node-addresses -cluster NAME [-kubeconfig FILE]   (VM clusters: node/nodelb)
//
// It is registered in table as "cloud-provider".
func cloudRunner(args []string) int { return cloud.Main(args, os.Stderr) }
