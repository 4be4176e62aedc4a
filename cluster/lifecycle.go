package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// Stop stops every machine of the cluster, workers first, then the control planes, then the
// load balancer; their disks (etcd, images, volumes) stay. `start` brings the cluster back.
func (c *Cluster) Stop(ctx context.Context) error {
	unlock, err := c.lock(ctx, "stop")
	if err != nil {
		return err
	}
	defer unlock()
	l, err := c.live(ctx)
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
	// The cloud provider and the Services' load balancers first: nothing then reacts to the nodes
	// going away.
	groups := [][]provision.Node{l.services, workers, cps}
	count := len(l.nodes) + len(l.services)
	if l.lb != nil {
		groups = append(groups, []provision.Node{l.lb})
		count++
	}
	step := c.p.log.Step(fmt.Sprintf("Stopping cluster %s (%d machines)", c.name, count))
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
		safe.Go(g, func() error { return n.Stop(ctx) })
	}
	return g.Wait()
}

// resume starts a stopped cluster's machines and returns once it is usable again: API server
// ready, every node Ready as reported after the start, CoreDNS running again, the context in the
// user's kubeconfig. The caller holds the cluster's lock.
func (c *Cluster) resume(ctx context.Context, res *CreateResult) error {
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	k, err := c.kube(0)
	if err != nil {
		return err
	}
	b := &build{p: c.p, spec: c.rec.Spec, dir: c.dir, driver: c.driver, res: res, kube: k,
		nodes: l.nodes, since: time.Now(), restarted: map[string]bool{}}
	// The nodes that were stopped: their pods' statuses are stale until they report again.
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
			b.restarted[n.Name()] = true
		}
	}
	steps := []step{stepStartMachines(l, len(b.restarted)), stepControlPlaneAgain(l)}
	if c.rec.Spec.RegistryPort > 0 {
		// The registry back (made again if it was deleted), connected, the nodes' mirrors.
		steps = append(steps, stepRegistryAgain(l))
	}
	steps = append(steps, stepKubelet(), stepDNS())
	if len(c.rec.Spec.Addons) > 0 {
		// Their objects applied again (a newer kubeforge may have changed them), their images
		// put back into a node that lost them; no wait for them to serve.
		steps = append(steps, stepAddons(&c.rec.Spec, false))
	}
	steps = append(steps, stepContext())
	// The steps have no undo: a failed resume keeps the cluster and its data.
	if err := c.p.runSteps(ctx, b, steps, false); err != nil {
		return err
	}
	res.APIServer = c.rec.APIServerURL()
	return nil
}

// stepStartMachines starts the stopped machines of a cluster (the load balancer first among
// them, in parallel).
func stepStartMachines(l *live, stopped int) step {
	machines := slices.Clone(l.nodes)
	if l.lb != nil {
		machines = append(machines, l.lb)
	}
	machines = append(machines, l.services...)
	return step{name: fmt.Sprintf("Starting %d stopped node(s)", stopped), run: func(ctx context.Context, b *build) error {
		g, ctx := errgroup.WithContext(ctx)
		for _, n := range machines {
			if !b.restarted[n.Name()] && !provision.IsLoadBalancer(n) && !provision.IsService(n) {
				continue
			}
			safe.Go(g, func() error {
				if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
					return nil
				}
				return n.Start(ctx)
			})
		}
		return g.Wait()
	}}
}

// stepControlPlaneAgain waits for the API server of a resumed cluster and, when every control
// plane was down, releases the leader leases whose holders are gone: otherwise the new
// controller-manager (and with it the endpoints of CoreDNS's new addresses) waits out the old
// lease.
func stepControlPlaneAgain(l *live) step {
	return step{name: "Control plane", run: func(ctx context.Context, b *build) error {
		if err := b.kube.up(ctx, 0, pollInterval(b.spec)); err != nil {
			return b.waitError(ctx, err, "the API server")
		}
		for _, cp := range l.controlPlanes() {
			if !b.restarted[cp.Name()] {
				return nil
			}
		}
		released, err := controlplane.ReleaseStaleLeases(ctx, b.kube.cs, b.since)
		if err != nil {
			return err
		}
		b.p.log.Debugf("released stale leader leases: %v", released)
		return nil
	}}
}
