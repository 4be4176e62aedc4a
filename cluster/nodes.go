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
	"k8s.io/client-go/tools/clientcmd"
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

// live is a cluster that was completely created, with its record and machines.
type live struct {
	name  string
	dirs  Dirs
	rec   Record
	nodes []provision.Node // Kubernetes nodes
	lb    provision.Node   // the API load balancer of an HA cluster, nil otherwise
}

// endpoint is where nodes reach the API server: the load balancer, or the (only) control plane.
func (l *live) endpoint() (netip.Addr, error) {
	if l.lb != nil {
		return l.lb.IP(), nil
	}
	cps := l.controlPlanes()
	if len(cps) == 0 {
		return netip.Addr{}, kferr.Environment(fmt.Sprintf("delete it with `kubeforge delete --name %s`", l.name), "cluster %q has no control-plane node", l.name)
	}
	return cps[0].IP(), nil
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

func (p *Provider) live(ctx context.Context, name string) (*live, error) {
	d, err := p.dirs(name)
	if err != nil {
		return nil, err
	}
	rec, err := d.load()
	if err != nil {
		return nil, kferr.Usage("cluster %q does not exist here: `kubeforge list` shows the clusters, `kubeforge start --name %s` makes it", name, name)
	}
	if !rec.Complete {
		return nil, kferr.Environment(fmt.Sprintf("delete it with `kubeforge delete --name %s` and start again", name),
			"cluster %q was not completely created (the remains of a failed or interrupted start)", name)
	}
	all, err := p.Driver.Nodes(ctx, name)
	if err != nil {
		return nil, err
	}
	l := &live{name: name, dirs: d, rec: rec}
	for _, n := range all {
		if provision.IsLoadBalancer(n) {
			l.lb = n
		} else {
			l.nodes = append(l.nodes, n)
		}
	}
	nodes := l.nodes
	if len(nodes) == 0 {
		return nil, kferr.Environment(fmt.Sprintf("delete it with `kubeforge delete --name %s` and start again", name),
			"cluster %q has no nodes left in %s", name, p.Driver.Name())
	}
	return l, nil
}

// liveNode returns the live cluster name and its node called node.
func (p *Provider) liveNode(ctx context.Context, name, node string) (*live, provision.Node, error) {
	l, err := p.live(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	n, err := l.node(node)
	return l, n, err
}

// client returns a clientset for the cluster (kubeforge's own credentials).
func (l *live) client(timeout time.Duration) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.dirs.SuperAdmin())
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", l.name, err)
	}
	cfg.Timeout = timeout
	cfg.QPS, cfg.Burst = 50, 100
	return kubernetes.NewForConfig(cfg)
}

// NodeList lists the cluster's nodes, with their Kubernetes status when the API server answers.
func (p *Provider) NodeList(ctx context.Context, name string) ([]NodeInfo, error) {
	l, err := p.live(ctx, name)
	if err != nil {
		return nil, err
	}
	objs := map[string]*corev1.Node{}
	if cs, err := l.client(3 * time.Second); err == nil {
		if list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
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
	// Wait bounds the wait for the node to be Ready (default 3 minutes).
	Wait time.Duration
	// KeepOnFailure keeps a node that failed to join, for debugging.
	KeepOnFailure bool
}

// AddNode creates a worker, joins it to the running cluster and returns once it is Ready. Its
// kubelet gets a client certificate of its own (system:node:<name>), and its pod CIDR comes from
// the controller-manager.
func (p *Provider) AddNode(ctx context.Context, name string, o AddNodeOptions) (NodeInfo, error) {
	var info NodeInfo
	l, err := p.live(ctx, name)
	if err != nil {
		return info, err
	}
	if o.ControlPlane && l.lb == nil {
		return info, kferr.Usage("cluster %q has a single control plane and no load balancer in front of it: an HA control plane is chosen when the cluster is made (`kubeforge start --control-planes 3`); add a worker instead (without --control-plane)", name)
	}
	if _, err := l.runningControlPlane(ctx, ""); err != nil {
		cp := "NAME"
		if cps := l.controlPlanes(); len(cps) > 0 {
			cp = cps[0].Name()
		}
		return info, kferr.Environment(fmt.Sprintf("start it with `kubeforge node start %s --name %s` first", cp, name),
			"cluster %q is not running: no control-plane node runs", name)
	}
	if len(l.nodes) >= spec.MaxNodes {
		return info, kferr.Usage("cluster %q has %d nodes, the most kubeforge supports", name, len(l.nodes))
	}
	next := 0
	for _, n := range l.nodes {
		next = max(next, spec.NodeIndex(name, n.Name())+1)
	}
	endpoint, err := l.endpoint()
	if err != nil {
		return info, err
	}
	cs, err := l.client(0)
	if err != nil {
		return info, err
	}
	if !apiAnswers(ctx, l.dirs.SuperAdmin(), 15*time.Second, requestTimeout(l.rec.Spec)) {
		return info, kferr.Environment(fmt.Sprintf("check it with `kubeforge status --name %s`", name), "cluster %q: its API server does not answer", name)
	}
	wait := o.Wait
	if wait <= 0 {
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	ns := spec.Node{Name: spec.NodeName(name, next), Role: spec.RoleWorker, CPUs: o.CPUs, Memory: o.Memory}
	if _, _, err := ns.Resources(); err != nil {
		return info, kferr.Usage("%v", err)
	}
	if o.ControlPlane {
		ns.Role = spec.RoleControlPlane
	}
	var (
		node   provision.Node
		peer   string         // the new etcd member's peer URL (control planes)
		member provision.Node // the running control plane that changes etcd's membership
	)
	steps := []step{
		{name: "Node " + ns.Name, run: func(ctx context.Context) error {
			network, err := p.Driver.EnsureNetwork(ctx, name)
			if err != nil {
				return err
			}
			auth, err := pki.EnsureAuthorities(l.dirs.PKI(), name)
			if err != nil {
				return err
			}
			np := nodePlan{index: next, spec: ns, controlPlane: endpoint}
			if np.ip, err = nodeAddr(network, next); err != nil {
				return err
			}
			if o.ControlPlane {
				if member, err = l.runningControlPlane(ctx, ""); err != nil {
					return err
				}
				peer = etcdPeerURL(np.ip)
				out, err := provision.Output(ctx, member, contract.NodeBinary, "etcd-member", "add", "--name", ns.Name, "--peer-url", peer)
				if err != nil {
					return fmt.Errorf("adding %s to etcd: %w", ns.Name, err)
				}
				np.etcdInitialCluster, np.etcdClusterState = strings.TrimSpace(out), "existing"
			}
			node, err = p.createNode(ctx, l.rec.Spec, auth, l.rec.Image, network, np)
			return err
		}, undo: func(ctx context.Context) error {
			var errs []error
			if member != nil {
				_, err := provision.Output(ctx, member, contract.NodeBinary, "etcd-member", "remove", "--name", ns.Name, "--peer-url", peer)
				errs = append(errs, err)
			}
			return errors.Join(append(errs, p.Driver.DeleteNode(ctx, name, ns.Name), deleteNodeObject(ctx, cs, ns.Name))...)
		}},
		{name: "Kubelet", run: func(ctx context.Context) error {
			if err := ready.Nodes(ctx, cs, ns.Name); err != nil {
				return p.waitError(ctx, err, node, "node "+ns.Name)
			}
			if o.ControlPlane {
				// The kubelet reached the API through the load balancer; the new etcd member
				// joins a few seconds later.
				if err := waitEtcdMember(ctx, node, name); err != nil {
					return err
				}
				if err := labelControlPlane(ctx, cs, ns.Name); err != nil {
					return err
				}
				ips := []netip.Addr{node.IP()}
				for _, n := range l.controlPlanes() {
					ips = append(ips, n.IP())
				}
				if err := p.updateLoadBalancer(ctx, l, ips); err != nil {
					return err
				}
				if err := ready.PodsRunning(ctx, cs, metav1.NamespaceSystem, controlPlanePods(ns.Name)...); err != nil {
					return p.waitError(ctx, err, node, "the control-plane pods of "+ns.Name)
				}
			}
			l.rec.Spec.Nodes = append(l.rec.Spec.Nodes, ns)
			return l.dirs.save(l.rec)
		}},
	}
	if len(l.rec.Images) > 0 && p.Load != nil {
		// The images loaded into the cluster before: its pods may land on the new node.
		steps = append(steps, step{run: func(ctx context.Context) error {
			if err := p.Load(ctx, []provision.Node{node}, l.rec.Images); err != nil {
				p.log().Warnf("node %s lacks some of the images loaded into the cluster before: %v", ns.Name, err)
			}
			return nil
		}})
	}
	if err := p.run(ctx, steps, o.KeepOnFailure); err != nil {
		return info, err
	}
	info = NodeInfo{Name: ns.Name, Role: string(ns.Role), IP: node.IP().String(), Machine: string(provision.StateRunning), Status: "Ready", Version: l.rec.Spec.KubernetesVersion}
	return info, nil
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
func (p *Provider) DeleteNode(ctx context.Context, name, node string, o DeleteNodeOptions) error {
	l, n, err := p.liveNode(ctx, name, node)
	if err != nil {
		return err
	}
	if n.Role() == string(spec.RoleControlPlane) && len(l.controlPlanes()) <= 1 {
		return kferr.Usage("%s is the last control-plane node of cluster %q: deleting it would end the cluster; to do that, run `kubeforge delete --name %s`", node, name, name)
	}
	isCP := n.Role() == string(spec.RoleControlPlane)
	st, err := n.State(ctx)
	if err != nil {
		return err
	}
	cs, err := l.client(0)
	if err != nil {
		return err
	}
	apiUp := apiAnswers(ctx, l.dirs.SuperAdmin(), 15*time.Second, requestTimeout(l.rec.Spec))
	if !o.Force && st == provision.StateRunning && apiUp {
		timeout := o.DrainTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		step := p.log().Step("Draining " + node)
		if err := step.Done(drainNode(ctx, cs, node, timeout)); err != nil {
			return kferr.WithHint(fmt.Errorf("draining node %s: %w", node, err), kferr.Code(err),
				fmt.Sprintf("fix what blocks the drain (a PodDisruptionBudget?), or delete without draining: `kubeforge node delete %s --force`", node))
		}
	}
	step := p.log().Step("Deleting node " + node)
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
			for _, c := range l.controlPlanes() {
				if c.Name() != node {
					ips = append(ips, c.IP())
				}
			}
			if err := p.updateLoadBalancer(ctx, l, ips); err != nil {
				return err
			}
		}
		// The machine first: a running kubelet would register its Node again.
		if err := p.Driver.DeleteNode(ctx, name, node); err != nil {
			return err
		}
		l.rec.Spec.Nodes = slices.DeleteFunc(l.rec.Spec.Nodes, func(sn spec.Node) bool { return sn.Name == node })
		if err := l.dirs.save(l.rec); err != nil {
			return err
		}
		if apiUp {
			return deleteNodeObject(ctx, cs, node)
		}
		p.log().Warnf("the API server does not answer: the Node object %s stays until `kubectl delete node %s`", node, node)
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

// apiAnswers waits up to d for the API server behind kubeconfig to be ready.
func apiAnswers(ctx context.Context, kubeconfig string, d, request time.Duration) bool {
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		return apiReady(ctx, kubeconfig, request), nil
	}) == nil
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
func (p *Provider) StopNode(ctx context.Context, name, node string) error {
	l, n, err := p.liveNode(ctx, name, node)
	if err != nil {
		return err
	}
	if n.Role() == string(spec.RoleControlPlane) && len(l.controlPlanes()) == 1 {
		p.log().Warnf("%s is the control-plane node: the cluster's API stops with it until `kubeforge node start %s`", node, node)
	}
	step := p.log().Step("Stopping node " + node)
	return step.Done(n.Stop(ctx))
}

// StartNode starts a stopped node and, when the API server answers, waits for it to be Ready.
func (p *Provider) StartNode(ctx context.Context, name, node string, wait time.Duration) error {
	l, n, err := p.liveNode(ctx, name, node)
	if err != nil {
		return err
	}
	started := time.Now()
	step := p.log().Step("Starting node " + node)
	if err := step.Done(n.Start(ctx)); err != nil {
		return err
	}
	if wait <= 0 {
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	cs, err := l.client(0)
	if err != nil {
		return err
	}
	step = p.log().Step("Waiting for node " + node + " to be Ready")
	return step.Done(func() error {
		if n.Role() == string(spec.RoleControlPlane) {
			if err := ready.APIServer(ctx, cs); err != nil {
				return p.waitError(ctx, err, n, "the API server")
			}
		} else if !apiAnswers(ctx, l.dirs.SuperAdmin(), 15*time.Second, requestTimeout(l.rec.Spec)) {
			return kferr.Environment("start the control-plane node first", "the cluster's API server does not answer, so node %s cannot join", node)
		}
		if err := ready.NodesSince(ctx, cs, started, node); err != nil {
			return p.waitError(ctx, err, n, "node "+node)
		}
		if n.Role() == string(spec.RoleControlPlane) && l.lb != nil {
			// The other control planes answer for it meanwhile.
			return waitEtcdMember(ctx, n, name)
		}
		return nil
	}())
}

// LoadImages copies images from the host into every running node of the cluster (skipping nodes
// that have them) and remembers them, so that nodes added later get them too.
func (p *Provider) LoadImages(ctx context.Context, name string, refs []string) error {
	if p.Load == nil {
		return fmt.Errorf("the %s driver cannot load images", p.Driver.Name())
	}
	l, err := p.live(ctx, name)
	if err != nil {
		return err
	}
	var running []provision.Node
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
			running = append(running, n)
		} else {
			p.log().Warnf("node %s is not running: it will not have the image(s)", n.Name())
		}
	}
	if len(running) == 0 {
		return kferr.Environment(fmt.Sprintf("start a node with `kubeforge node start NAME --name %s`", name), "cluster %q has no running node", name)
	}
	err = p.Load(ctx, running, refs)
	for _, r := range refs {
		if !slices.Contains(l.rec.Images, r) {
			l.rec.Images = append(l.rec.Images, r)
		}
	}
	if serr := l.dirs.save(l.rec); serr != nil && err == nil {
		err = serr
	}
	return err
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
func (p *Provider) updateLoadBalancer(ctx context.Context, l *live, ips []netip.Addr) error {
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
