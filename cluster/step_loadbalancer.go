package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/netip"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// loadBalancerName is the HA load balancer's machine.
func loadBalancerName(cluster string) string { return cluster + "-lb" }

// stepLoadBalancer (HA control planes) makes the load-balancer machine at the network's last
// address, publishing the API server's port, in front of every control plane.
func stepLoadBalancer() step {
	return step{name: "Load balancer", run: func(ctx context.Context, b *build) error {
		if b.port == 0 {
			port, err := freePort()
			if err != nil {
				return err
			}
			b.port = port
		}
		var cpIPs []netip.Addr
		for i, n := range b.spec.Nodes {
			if n.Role == spec.RoleControlPlane {
				ip, err := nodeAddr(b.network, i)
				if err != nil {
					return err
				}
				cpIPs = append(cpIPs, ip)
			}
		}
		files, err := bootstrap.LoadBalancerFiles(cpIPs)
		if err != nil {
			return err
		}
		tarball, err := files.Tar()
		if err != nil {
			return err
		}
		name := loadBalancerName(b.spec.Name)
		lb, err := b.driver.CreateNode(ctx, provision.NodeConfig{
			Cluster: b.spec.Name, Name: name, Role: provision.RoleLoadBalancer, Image: b.image,
			Network: b.network, IP: b.network.LoadBalancerIP(), APIServerHostPort: b.port,
		})
		if err != nil {
			return err
		}
		b.made = append(b.made, name)
		if err := lb.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
			return err
		}
		return lb.Start(ctx)
	}, undo: undoMachines}
}

// undoMachines removes the machines this run made, and only those.
func undoMachines(ctx context.Context, b *build) error {
	var errs []error
	for _, n := range b.made {
		if err := b.driver.DeleteNode(ctx, b.spec.Name, n); err != nil {
			errs = append(errs, err)
		}
	}
	b.made = nil
	return errors.Join(errs...)
}
