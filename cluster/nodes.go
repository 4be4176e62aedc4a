package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// NodeInfo is one node as `kubeforge node list` shows it: the machine and, when the API server
// answers, the Node object's readiness.
type NodeInfo struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	IP      string `json:"ip"`
	Machine string `json:"machine"`          // running, stopped, ...
	Status  string `json:"status,omitempty"` // Ready, NotReady, Unknown; empty when the API does not answer
	Version string `json:"version,omitempty"`
}

// live is a cluster that was completely created, with its machines.
type live struct {
	*Cluster
	nodes    []provision.Node // Kubernetes nodes, control planes first in name order
	lb       provision.Node   // the API load balancer of an HA cluster, nil otherwise
	services []provision.Node // the cloud provider and the Services' load balancers (Docker)
}

// endpoint is where nodes reach the API server: the load balancer, or the (only) control plane.
func (l *live) endpoint() netip.Addr {
	if l.lb != nil {
		return l.lb.IP()
	}
	return l.controlPlanes()[0].IP()
}

func (l *live) node(name string) (provision.Node, error) {
	for _, n := range l.nodes {
		if n.Name() == name {
			return n, nil
		}
	}
	names := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		names[i] = n.Name()
	}
	return nil, kferr.Usage("%q is not a node of cluster %q; its nodes are: %s (`kubeforge node list --name %s`)",
		name, l.name, strings.Join(names, ", "), l.name)
}

func (l *live) controlPlanes() []provision.Node {
	var out []provision.Node
	for _, n := range l.nodes {
		if n.Role() == string(spec.RoleControlPlane) {
			out = append(out, n)
		}
	}
	return out
}

// live returns the cluster's machines once it was completely created and still has a control
// plane: what every operation on a cluster needs. The errors name `kubeforge delete`.
func (c *Cluster) live(ctx context.Context) (*live, error) {
	if !c.hasRec {
		return nil, kferr.Usage("cluster %q does not exist here: `kubeforge list` shows the clusters, `kubeforge start --name %s` makes it", c.name, c.name)
	}
	fix := fmt.Sprintf("delete it with `kubeforge delete --name %s` and start again", c.name)
	if !c.rec.Complete {
		return nil, kferr.Environment(fix, "cluster %q was not completely created (the remains of a failed or interrupted start)", c.name)
	}
	all, err := c.driver.Nodes(ctx, c.name)
	if err != nil {
		return nil, err
	}
	l := &live{Cluster: c}
	for _, n := range all {
		switch {
		case provision.IsLoadBalancer(n):
			l.lb = n
		case provision.IsService(n):
			l.services = append(l.services, n)
		default:
			l.nodes = append(l.nodes, n)
		}
	}
	if len(l.nodes) == 0 {
		return nil, kferr.Environment(fix, "cluster %q has no nodes left in %s", c.name, c.driver.Name())
	}
	if len(l.controlPlanes()) == 0 {
		return nil, kferr.Environment(fix, "cluster %q has no control-plane node left in %s (its machine was removed outside kubeforge)", c.name, c.driver.Name())
	}
	return l, nil
}

// lockNode takes the cluster's lock for op and returns the live cluster and its node called
// node; the caller unlocks.
func (c *Cluster) lockNode(ctx context.Context, op, node string) (*live, provision.Node, func(), error) {
	unlock, err := c.lock(ctx, op)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := c.live(ctx)
	var n provision.Node
	if err == nil {
		n, err = l.node(node)
	}
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return l, n, unlock, nil
}

// kube returns a client of the cluster's API server (kubeforge's own credentials).
func (c *Cluster) kube(timeout time.Duration) (*kube, error) {
	return newKube(c.dir.SuperAdmin(), timeout)
}

// apiUp tells whether the API server answers /readyz within d.
func (c *Cluster) apiUp(ctx context.Context, d time.Duration) bool {
	k, err := c.kube(requestTimeout(c.rec.Spec))
	return err == nil && k.up(ctx, d, 500*time.Millisecond) == nil
}

// NodeList lists the cluster's nodes, with their Kubernetes status when the API server answers.
func (c *Cluster) NodeList(ctx context.Context) ([]NodeInfo, error) {
	l, err := c.live(ctx)
	if err != nil {
		return nil, err
	}
	objs := map[string]*corev1.Node{}
	if k, err := c.kube(3 * time.Second); err == nil {
		if list, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
			for i := range list.Items {
				objs[list.Items[i].Name] = &list.Items[i]
			}
		}
	}
	out := make([]NodeInfo, 0, len(l.nodes))
	for _, n := range l.nodes {
		st, err := n.State(ctx)
		if err != nil {
			return nil, err
		}
		ni := NodeInfo{Name: n.Name(), Role: n.Role(), Machine: string(st)}
		if n.IP().IsValid() {
			ni.IP = n.IP().String()
		}
		if o := objs[n.Name()]; o != nil {
			ni.Status, ni.Version = nodeStatus(o), o.Status.NodeInfo.KubeletVersion
		} else if len(objs) > 0 {
			ni.Status = "NotRegistered"
		}
		out = append(out, ni)
	}
	return out, nil
}

func nodeStatus(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch c.Status {
			case corev1.ConditionTrue:
				return "Ready"
			case corev1.ConditionFalse:
				return "NotReady"
			}
			return "Unknown"
		}
	}
	return "Unknown"
}

// AddNodeOptions tune AddNode.
type AddNodeOptions struct {
	ControlPlane bool
	// CPUs and Memory cap the new node (see spec.Node).
	CPUs, Memory string
	// Wait bounds the whole operation, the wait for another kubeforge on the cluster included
	// (default 3 minutes).
	Wait time.Duration
	// KeepOnFailure keeps a node that failed to join, for debugging.
	KeepOnFailure bool
}

// AddNode makes a node, joins it to the running cluster and returns once it is Ready. Its
// kubelet gets a client certificate of its own (system:node:<name>), its pod CIDR comes from the
// controller-manager; a control plane (HA clusters) joins etcd first and the load balancer
// after. It gets the images loaded into the cluster before. Two AddNodes at once are serialised
// by the cluster's lock, so they pick distinct names.
func (c *Cluster) AddNode(ctx context.Context, o AddNodeOptions) (NodeInfo, error) {
	var info NodeInfo
	wait := o.Wait
	if wait <= 0 {
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	unlock, err := c.lock(ctx, "node add")
	if err != nil {
		return info, err
	}
	defer unlock()
	l, err := c.live(ctx)
	if err != nil {
		return info, err
	}
	if o.ControlPlane && l.lb == nil {
		return info, kferr.Usage("cluster %q has a single control plane and no load balancer in front of it: an HA control plane is chosen when the cluster is made (`kubeforge start --control-planes 3`); add a worker instead (without --control-plane)", c.name)
	}
	if _, err := l.runningControlPlane(ctx, ""); err != nil {
		return info, kferr.Environment(fmt.Sprintf("start it with `kubeforge node start %s --name %s` first", l.controlPlanes()[0].Name(), c.name),
			"cluster %q is not running: no control-plane node runs", c.name)
	}
	if len(l.nodes) >= spec.MaxNodes {
		return info, kferr.Usage("cluster %q has %d nodes, the most kubeforge supports", c.name, len(l.nodes))
	}
	next := 0
	for _, n := range l.nodes {
		next = max(next, spec.NodeIndex(c.name, n.Name())+1)
	}
	k, err := c.kube(0)
	if err != nil {
		return info, err
	}
	if !c.apiUp(ctx, 15*time.Second) {
		return info, kferr.Environment(fmt.Sprintf("check it with `kubeforge status --name %s`", c.name), "cluster %q: its API server does not answer", c.name)
	}
	ns := spec.Node{Name: spec.NodeName(c.name, next), Role: spec.RoleWorker, CPUs: o.CPUs, Memory: o.Memory}
	if _, _, err := ns.Resources(); err != nil {
		return info, kferr.Usage("%v", err)
	}
	if o.ControlPlane {
		ns.Role = spec.RoleControlPlane
	}
	b := &build{p: c.p, spec: c.rec.Spec, dir: c.dir, driver: c.driver, image: c.rec.Image, kube: k,
		endpoint: l.endpoint(), since: time.Now()}
	np := nodePlan{index: next, spec: ns}
	np.Name, np.Role, np.ControlPlane = ns.Name, ns.Role, b.endpoint
	steps := []step{stepJoin(l, np, o.ControlPlane), stepKubelet()}
	if o.ControlPlane {
		steps = append(steps, stepJoinControlPlane(l))
	}
	steps = append(steps, step{run: func(ctx context.Context, b *build) error {
		l.rec.Spec.Nodes = append(l.rec.Spec.Nodes, ns)
		return l.dir.Save(l.rec)
	}})
	if len(l.rec.Images) > 0 {
		// The images loaded into the cluster before: its pods may land on the new node.
		steps = append(steps, step{run: func(ctx context.Context, b *build) error {
			if err := c.p.loadImages(ctx, b.nodes, l.rec.Images); err != nil {
				c.p.log.Warnf("node %s lacks some of the images loaded into the cluster before: %v", ns.Name, err)
			}
			return nil
		}})
	}
	if len(l.rec.Spec.Addons) > 0 {
		// The add-ons' pods may land on the new node: their images, which no registry serves.
		steps = append(steps, step{run: func(ctx context.Context, b *build) error {
			as, err := findAddons(l.rec.Spec.Addons)
			if err != nil {
				return err
			}
			for _, a := range as {
				if err := c.p.addonImages(ctx, b.nodes, a); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	if err := c.p.runSteps(ctx, b, steps, o.KeepOnFailure); err != nil {
		return info, err
	}
	info = NodeInfo{Name: ns.Name, Role: string(ns.Role), IP: b.nodes[0].IP().String(), Machine: string(provision.StateRunning), Status: "Ready", Version: l.rec.Spec.KubernetesVersion}
	return info, nil
}

// stepJoin makes the machine of a node joining a running cluster (a control plane first joins
// etcd, through a running control plane). Undo removes the machine, its etcd member and its
// Node object.
func stepJoin(l *live, np nodePlan, controlPlane bool) step {
	var member provision.Node // the running control plane that changed etcd's membership
	peer := ""
	return step{name: "Node " + np.Name, run: func(ctx context.Context, b *build) error {
		network, err := b.driver.EnsureNetwork(ctx, l.name)
		if err != nil {
			return err
		}
		b.network = network
		if b.auth, err = pki.EnsureAuthorities(l.dir.PKI(), l.name); err != nil {
			return err
		}
		np.Network = network.Subnet
		if np.IP, err = nodeAddr(network, np.index); err != nil {
			return err
		}
		if controlPlane {
			if member, err = l.runningControlPlane(ctx, ""); err != nil {
				return err
			}
			peer = etcdPeerURL(np.IP)
			out, err := provision.Output(ctx, member, contract.NodeBinary, "etcd-member", "add", "--name", np.Name, "--peer-url", peer)
			if err != nil {
				return fmt.Errorf("adding %s to etcd: %w", np.Name, err)
			}
			np.EtcdInitialCluster, np.EtcdClusterState = strings.TrimSpace(out), "existing"
		}
		b.plans = []nodePlan{np}
		return b.makeNodes(ctx, b.plans)
	}, undo: func(ctx context.Context, b *build) error {
		var errs []error
		if member != nil {
			_, err := provision.Output(ctx, member, contract.NodeBinary, "etcd-member", "remove", "--name", np.Name, "--peer-url", peer)
			errs = append(errs, err)
		}
		errs = append(errs, undoMachines(ctx, b))
		errs = append(errs, deleteNodeObject(ctx, b.kube.cs, np.Name))
		return errors.Join(errs...)
	}}
}

// stepJoinControlPlane waits for a joining control plane's etcd member, labels it, adds it to
// the load balancer's backends and waits for its static pods.
func stepJoinControlPlane(l *live) step {
	return step{name: "Control plane", run: func(ctx context.Context, b *build) error {
		node := b.nodes[0]
		// The kubelet reached the API through the load balancer; the new etcd member joins a
		// few seconds later.
		if err := waitEtcdMember(ctx, node, l.name); err != nil {
			return err
		}
		ips := []netip.Addr{node.IP()}
		for _, n := range l.controlPlanes() {
			ips = append(ips, n.IP())
		}
		if err := l.updateLoadBalancer(ctx, ips); err != nil {
			return err
		}
		if err := ready.PodsRunning(ctx, b.kube.cs, metav1.NamespaceSystem, controlPlanePods(node.Name())...); err != nil {
			return b.waitError(ctx, err, "the control-plane pods of "+node.Name())
		}
		return nil
	}}
}

// DeleteNodeOptions tune DeleteNode.
type DeleteNodeOptions struct {
	// Force skips draining: the node's pods are deleted with it.
	Force bool
	// DrainTimeout bounds the drain (default 2 minutes).
	DrainTimeout time.Duration
}

// DeleteNode drains a node (unless Force or it is not running), takes a control plane out of
// etcd and the load balancer, then removes its machine and its Node object. The last control
// plane cannot be deleted: that is deleting the cluster.
func (c *Cluster) DeleteNode(ctx context.Context, node string, o DeleteNodeOptions) error {
	l, n, unlock, err := c.lockNode(ctx, "node delete", node)
	if err != nil {
		return err
	}
	defer unlock()
	isCP := n.Role() == string(spec.RoleControlPlane)
	if isCP && len(l.controlPlanes()) <= 1 {
		return kferr.Usage("%s is the last control-plane node of cluster %q: deleting it would end the cluster; to do that, run `kubeforge delete --name %s`", node, c.name, c.name)
	}
	st, err := n.State(ctx)
	if err != nil {
		return err
	}
	k, err := c.kube(0)
	if err != nil {
		return err
	}
	apiUp := c.apiUp(ctx, 15*time.Second)
	if !o.Force && st == provision.StateRunning && apiUp {
		timeout := o.DrainTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		step := c.p.log.Step("Draining " + node)
		if err := step.Done(drainNode(ctx, k.cs, node, timeout)); err != nil {
			return kferr.WithHint(fmt.Errorf("draining node %s: %w", node, err), kferr.Code(err),
				fmt.Sprintf("fix what blocks the drain (a PodDisruptionBudget?), or delete without draining: `kubeforge node delete %s --force`", node))
		}
	}
	step := c.p.log.Step("Deleting node " + node)
	err = func() error {
		if isCP {
			// Out of etcd first (through another control plane), and out of the load balancer.
			other, err := l.runningControlPlane(ctx, node)
			if err != nil {
				return err
			}
			if _, err := provision.Output(ctx, other, contract.NodeBinary, "etcd-member", "remove", "--name", node, "--peer-url", etcdPeerURL(n.IP())); err != nil {
				return fmt.Errorf("removing %s from etcd: %w", node, err)
			}
			var ips []netip.Addr
			for _, cp := range l.controlPlanes() {
				if cp.Name() != node {
					ips = append(ips, cp.IP())
				}
			}
			if err := l.updateLoadBalancer(ctx, ips); err != nil {
				return err
			}
		}
		// The machine first: a running kubelet would register its Node again.
		if err := c.driver.DeleteNode(ctx, c.name, node); err != nil {
			return err
		}
		l.rec.Spec.Nodes = slices.DeleteFunc(l.rec.Spec.Nodes, func(sn spec.Node) bool { return sn.Name == node })
		if err := l.dir.Save(l.rec); err != nil {
			return err
		}
		if apiUp {
			return deleteNodeObject(ctx, k.cs, node)
		}
		c.p.log.Warnf("the API server does not answer: the Node object %s stays until `kubectl delete node %s`", node, node)
		return nil
	}()
	return step.Done(err)
}

// deleteNodeObject deletes the Node, retrying for up to 30 s (an API server behind the load
// balancer may be going away at the same time).
func deleteNodeObject(ctx context.Context, cs kubernetes.Interface, node string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = cs.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
		return last == nil || apierrors.IsNotFound(last), nil
	})
	if err != nil {
		return fmt.Errorf("deleting Node %s from the API: %w", node, errors.Join(last, err))
	}
	return nil
}

// drainNode cordons the node and evicts its pods as `kubectl drain --ignore-daemonsets
// --delete-emptydir-data` does.
func drainNode(ctx context.Context, cs kubernetes.Interface, node string, timeout time.Duration) error {
	h := &drain.Helper{
		Ctx:                 ctx,
		Client:              cs,
		Force:               true, // pods without a controller are deleted too (they would die with the node)
		GracePeriodSeconds:  -1,
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true,
		Timeout:             timeout,
		Out:                 io.Discard,
		ErrOut:              io.Discard,
	}
	obj, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := drain.RunCordonOrUncordon(h, obj, true); err != nil {
		return fmt.Errorf("cordoning: %w", err)
	}
	return drain.RunNodeDrain(h, node)
}

// StopNode stops a node's machine. Its Node goes NotReady once the controller-manager's grace
// period passes, and its pods are evicted after the cluster's pod eviction timeout.
func (c *Cluster) StopNode(ctx context.Context, node string) error {
	l, n, unlock, err := c.lockNode(ctx, "node stop", node)
	if err != nil {
		return err
	}
	defer unlock()
	if n.Role() == string(spec.RoleControlPlane) && len(l.controlPlanes()) == 1 {
		c.p.log.Warnf("%s is the control-plane node: the cluster's API stops with it until `kubeforge node start %s`", node, node)
	}
	step := c.p.log.Step("Stopping node " + node)
	return step.Done(n.Stop(ctx))
}

// StartNode starts a stopped node and, when the API server answers, waits for it to be Ready.
func (c *Cluster) StartNode(ctx context.Context, node string, wait time.Duration) error {
	if wait <= 0 {
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l, n, unlock, err := c.lockNode(ctx, "node start", node)
	if err != nil {
		return err
	}
	defer unlock()
	started := time.Now()
	step := c.p.log.Step("Starting node " + node)
	if err := step.Done(n.Start(ctx)); err != nil {
		return err
	}
	k, err := c.kube(0)
	if err != nil {
		return err
	}
	b := &build{p: c.p, spec: c.rec.Spec, nodes: []provision.Node{n}}
	step = c.p.log.Step("Waiting for node " + node + " to be Ready")
	return step.Done(func() error {
		if n.Role() == string(spec.RoleControlPlane) {
			if err := k.up(ctx, 0, pollInterval(c.rec.Spec)); err != nil {
				return b.waitError(ctx, err, "the API server")
			}
		} else if !c.apiUp(ctx, 15*time.Second) {
			return kferr.Environment("start the control-plane node first", "the cluster's API server does not answer, so node %s cannot join", node)
		}
		if err := ready.NodesSince(ctx, k.cs, started, node); err != nil {
			return b.waitError(ctx, err, "node "+node)
		}
		if n.Role() == string(spec.RoleControlPlane) && l.lb != nil {
			// The other control planes answer for it meanwhile.
			return waitEtcdMember(ctx, n, c.name)
		}
		return nil
	}())
}

// runningControlPlane returns a running control-plane node other than except.
func (l *live) runningControlPlane(ctx context.Context, except string) (provision.Node, error) {
	for _, n := range l.controlPlanes() {
		if n.Name() == except {
			continue
		}
		if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
			return n, nil
		}
	}
	return nil, kferr.Environment("start a control-plane node with `kubeforge node start NAME`", "cluster %q has no other running control-plane node", l.name)
}

func etcdPeerURL(ip netip.Addr) string { return "https://" + netip.AddrPortFrom(ip, 2380).String() }

// updateLoadBalancer points the load balancer (HA clusters) at the control planes at ips; it
// picks up its new config within a second.
func (l *live) updateLoadBalancer(ctx context.Context, ips []netip.Addr) error {
	if l.lb == nil {
		return nil
	}
	files, err := bootstrap.LoadBalancerFiles(ips)
	if err != nil {
		return err
	}
	tarball, err := files.Tar()
	if err != nil {
		return err
	}
	if err := l.lb.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
		return fmt.Errorf("updating the load balancer's backends: %w", err)
	}
	return nil
}

// waitEtcdMember waits until the etcd member of control plane n has joined: its local member
// answers the member list, and it is named in it (a member is named once it started).
func waitEtcdMember(ctx context.Context, n provision.Node, cluster string) error {
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := provision.Output(ctx, n, contract.NodeBinary, "etcd-member", "list")
		return err == nil && strings.Contains(","+strings.TrimSpace(out), ","+n.Name()+"="), nil
	})
	if err != nil {
		return kferr.Timeout(fmt.Sprintf("look at the node with `kubeforge ssh %s --name %s` (logs in /var/log/pods)", n.Name(), cluster),
			"timed out waiting for the etcd member of %s to join", n.Name())
	}
	return nil
}

// lock takes the cluster's lock for op (see state.Dir.Lock) and reads the record again: the
// holder it waited for may have changed it (a node added).
func (c *Cluster) lock(ctx context.Context, op string) (func(), error) {
	unlock, err := c.p.lock(ctx, c.dir, op)
	if err != nil {
		return nil, err
	}
	if rec, ok, err := c.dir.Load(); err == nil {
		c.rec, c.hasRec = rec, ok
	}
	return unlock, nil
}
