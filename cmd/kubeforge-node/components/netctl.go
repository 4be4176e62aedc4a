package components

import "kubeforge.dev/kubeforge/node/netctl"

// netctlRunner runs the node's network controller (node/netctl): CNI config for this node's
// pod CIDR, routes to the other nodes' pod CIDRs, masquerade of pod traffic leaving the cluster.
//
//	kubeforge-node netctl --kubeconfig /etc/kubernetes/kubelet.conf --node-name NAME \
//	    [--cni-conf-dir /etc/cni/net.d] [--cluster-cidr 10.244.0.0/16]
//
// It is registered in table as "netctl".
func netctlRunner(args []string) int {
	return cobraRunner(netctl.NewCommand)(args)
}
