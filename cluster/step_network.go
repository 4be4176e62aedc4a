package cluster

import (
	"context"
	"fmt"
	"net/netip"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// stepNetwork makes the cluster's own network (or finds it), and checks that the pod and service
// subnets do not overlap it. Undo removes it only when this run made it (one found, left by
// something else, stays): the cluster's lock is held, and a new cluster has no machines on it.
func stepNetwork() step {
	return step{name: "Network", run: func(ctx context.Context, b *build) error {
		n, err := b.driver.EnsureNetwork(ctx, b.spec.Name)
		if err != nil {
			return err
		}
		b.network = n
		return checkSubnets(b.spec, n)
	}, undo: func(ctx context.Context, b *build) error {
		if !b.network.Created {
			return nil
		}
		return b.driver.DeleteNetwork(ctx, b.spec.Name)
	}}
}

// checkSubnets fails when the pod or service subnet overlaps the nodes' network: node and pod
// traffic would be routed to the wrong place.
func checkSubnets(c spec.Cluster, network provision.Network) error {
	def := spec.Default(c.Name)
	for _, s := range []struct{ field, cidr, example string }{
		{"podSubnet", c.PodSubnet, def.PodSubnet},
		{"serviceSubnet", c.ServiceSubnet, def.ServiceSubnet},
	} {
		p, err := netip.ParsePrefix(s.cidr)
		if err != nil {
			return fmt.Errorf("%s: %w", s.field, err)
		}
		if network.Subnet.IsValid() && p.Overlaps(network.Subnet) {
			return kferr.Usage("%s %s overlaps the nodes' network %s (%s): choose a %s that does not, e.g. %s",
				s.field, s.cidr, network.Name, network.Subnet, s.field, s.example)
		}
	}
	return nil
}

// nodeAddr is the fixed address of the i-th node on the cluster network.
func nodeAddr(n provision.Network, i int) (netip.Addr, error) {
	ip := n.NodeIP(i)
	if !ip.IsValid() {
		return ip, fmt.Errorf("network %s (%s) has no address for node %d", n.Name, n.Subnet, i)
	}
	return ip, nil
}
