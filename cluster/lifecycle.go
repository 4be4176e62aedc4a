package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// Stop stops every machine of the cluster, workers first, then the control planes, then the
// load balancer; their disks (etcd, images, volumes) stay. `start` brings the cluster back.
func (p *Provider) Stop(ctx context.Context, name string) error {
	l, err := p.live(ctx, name)
	if err != nil {
		return err
	}
	var workers, cps []provision.Node
	for _, n := range l.nodes {
		if n.Role() == string(spec.RoleControlPlane) {
			cps = append(cps, n)
		} else {
			workers = append(workers, n)
		}
	}
	groups := [][]provision.Node{workers, cps}
	count := len(l.nodes)
	if l.lb != nil {
		groups = append(groups, []provision.Node{l.lb})
		count++
	}
	step := p.log().Step(fmt.Sprintf("Stopping cluster %s (%d machines)", name, count))
	for _, g := range groups {
		if err := stopAll(ctx, g); err != nil {
			return step.Done(err)
		}
	}
	return step.Done(nil)
}

func stopAll(ctx context.Context, nodes []provision.Node) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, n := range nodes {
		g.Go(func() error { return n.Stop(ctx) })
	}
	return g.Wait()
}

// allRestarted says whether every node of nodes is among restarted.
func allRestarted(nodes []provision.Node, restarted map[string]bool) bool {
	for _, n := range nodes {
		if !restarted[n.Name()] {
			return false
		}
	}
	return true
}

// resume starts a stopped cluster's machines and returns once it is usable again: API server
// ready, every node Ready as reported after the start, CoreDNS running again, the context in the
// user's kubeconfig.
func (p *Provider) resume(ctx context.Context, name string, wait time.Duration, res *CreateResult) error {
	l, err := p.live(ctx, name)
	if err != nil {
		return err
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	started := time.Now()
	machines := slices.Clone(l.nodes)
	if l.lb != nil {
		machines = append(machines, l.lb)
	}
	// The nodes that were stopped: their pods' statuses are stale until they report again.
	restarted := map[string]bool{}
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
			restarted[n.Name()] = true
		}
	}
	names := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		names[i] = n.Name()
	}
	cs, err := l.client(0)
	if err != nil {
		return err
	}
	first := l.controlPlanes()[0]
	steps := []step{
		{name: fmt.Sprintf("Starting %d stopped node(s)", len(restarted)), run: func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			for _, n := range machines {
				if !restarted[n.Name()] && !provision.IsLoadBalancer(n) {
					continue
				}
				g.Go(func() error {
					if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
						return nil
					}
					return n.Start(ctx)
				})
			}
			return g.Wait()
		}},
		{name: "Control plane", run: func(ctx context.Context) error {
			if err := ready.APIServerEvery(ctx, cs, pollInterval(l.rec.Spec)); err != nil {
				return p.waitError(ctx, err, first, "the API server")
			}
			if !allRestarted(l.controlPlanes(), restarted) {
				return nil
			}
			// Every control plane was down: the leader leases' holders are gone. Without this the
			// new controller-manager (and with it the endpoints of CoreDNS's new addresses) waits
			// out the old lease.
			released, err := controlplane.ReleaseStaleLeases(ctx, cs, started)
			if err != nil {
				return err
			}
			p.log().Debugf("released stale leader leases: %v", released)
			return nil
		}},
		{name: "Kubelet", run: func(ctx context.Context) error {
			var again []string
			for n := range restarted {
				again = append(again, n)
			}
			if err := ready.NodesSince(ctx, cs, started, again...); err != nil {
				return p.waitError(ctx, err, first, "the nodes")
			}
			return ready.Nodes(ctx, cs, names...)
		}},
		{name: "DNS", run: func(ctx context.Context) error {
			// CoreDNS and kube-proxy run again on the restarted nodes, and the kube-dns Service
			// lists the CoreDNS pods' new addresses (kube-proxy programs what it lists).
			for _, sel := range []string{"k8s-app=kube-dns", "k8s-app=kube-proxy"} {
				if err := ready.PodsRestartedSince(ctx, cs, metav1.NamespaceSystem, sel, started, restarted); err != nil {
					return p.waitError(ctx, err, first, sel+" pods")
				}
			}
			if err := ready.EndpointsMatchPods(ctx, cs, metav1.NamespaceSystem, "kube-dns", "k8s-app=kube-dns"); err != nil {
				return p.waitError(ctx, err, first, "CoreDNS's endpoints")
			}
			if err := dnsProgrammed(ctx, cs, l.nodes); err != nil {
				return p.waitError(ctx, err, first, "cluster DNS on every node")
			}
			return nil
		}},
		{name: "Ready", run: func(ctx context.Context) error {
			kc, err := readFile(l.dirs.Kubeconfig())
			if err != nil {
				return err
			}
			if err := MergeKubeconfig(res.Kubeconfig, kc, name); err != nil {
				return fmt.Errorf("merging context %s into %s: %w", name, res.Kubeconfig, err)
			}
			return nil
		}},
	}
	// The steps have no undo: a failed resume keeps the cluster and its data.
	if err := p.run(ctx, steps, false); err != nil {
		return err
	}
	res.APIServer = l.rec.APIServerURL()
	return nil
}
