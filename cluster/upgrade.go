package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubectl/pkg/drain"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
	"kubeforge.dev/kubeforge/provision"
)

// UpgradeOptions tune Upgrade.
type UpgradeOptions struct {
	// Wait bounds the whole upgrade (default 30 minutes).
	Wait time.Duration
	// DrainTimeout bounds each worker's drain (default 2 minutes).
	DrainTimeout time.Duration
}

// UpgradeResult says what Upgrade did.
type UpgradeResult struct {
	From, To string
	// Upgraded names the nodes moved to To; the others were there already.
	Upgraded []string
}

// Upgrade moves the cluster to Kubernetes version (a full version or a minor), one minor at a
// time as upstream's version-skew policy asks: each control plane in turn (an HA cluster keeps
// answering through its load balancer), then each worker drained, moved and uncordoned, then the
// add-ons. A node moves by having its machine made anew from the new node image over its kept
// data (etcd, the kubelet's state, loaded images, volumes): objects and data stay. A node already
// at the version is left alone, so an upgrade that failed half-way is finished by running it
// again; the cluster stays usable meanwhile (its nodes are within the skew policy).
func (c *Cluster) Upgrade(ctx context.Context, version string, o UpgradeOptions) (UpgradeResult, error) {
	res := UpgradeResult{From: c.rec.Spec.KubernetesVersion}
	target, err := versions.Resolve(version)
	if err != nil {
		return res, kferr.Usage("--kubernetes-version: %v", err)
	}
	res.To = target.Kubernetes
	if o.Wait <= 0 {
		o.Wait = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	unlock, err := c.lock(ctx, "upgrade")
	if err != nil {
		return res, err
	}
	defer unlock()
	l, err := c.live(ctx)
	if err != nil {
		return res, err
	}
	from := c.rec.Spec.KubernetesVersion
	res.From = from
	if err := checkUpgrade(c.name, from, target); err != nil {
		return res, err
	}
	rp, ok := c.driver.(provision.Replacer)
	if !ok {
		return res, kferr.Usage("upgrading a cluster on the %s driver is not supported yet: make a new cluster with `kubeforge start --kubernetes-version %s`", c.driver.Name(), target.Kubernetes)
	}
	for _, n := range append(slices.Clone(l.nodes), l.lbMachines()...) {
		if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
			return res, kferr.Environment(fmt.Sprintf("start it first: `kubeforge start --name %s`", c.name),
				"cluster %q is not running (machine %s is %s): an upgrade moves a running cluster", c.name, n.Name(), st)
		}
	}
	k, err := c.kube(0)
	if err != nil {
		return res, err
	}
	if !c.apiUp(ctx, 15*time.Second) {
		return res, kferr.Environment(fmt.Sprintf("check it with `kubeforge status --name %s`", c.name), "cluster %q: its API server does not answer", c.name)
	}
	next := c.rec.Spec
	next.KubernetesVersion = target.Kubernetes
	next.Image = "" // the new release's node image, built from this kubeforge's binaries
	b := &build{p: c.p, spec: next, dir: c.dir, driver: c.driver, kube: k, endpoint: l.endpoint(), nodes: l.nodes}
	steps := []step{stepImage(), {name: "Certificates", run: func(ctx context.Context, b *build) error {
		b.auth, err = pki.EnsureAuthorities(c.dir.PKI(), c.name)
		if err != nil {
			return err
		}
		b.network, err = c.driver.EnsureNetwork(ctx, c.name)
		return err
	}}}
	// Control planes first, in order, then the workers.
	cps, workers := l.controlPlanes(), slices.DeleteFunc(slices.Clone(l.nodes), func(n provision.Node) bool {
		return n.Role() == string(spec.RoleControlPlane)
	})
	for _, n := range append(cps, workers...) {
		steps = append(steps, stepUpgradeNode(l, rp, n, o, &res))
	}
	if hasCloudProvider(next.Driver) {
		steps = append(steps, stepUpgradeCloudProvider())
	}
	steps = append(steps, stepUpgradeAddons(), step{name: "Record", run: func(_ context.Context, b *build) error {
		c.rec.Spec.KubernetesVersion, c.rec.Image = target.Kubernetes, b.image
		return c.dir.Save(c.rec)
	}})
	if err := c.p.runSteps(ctx, b, steps, false); err != nil {
		return res, kferr.WithHint(fmt.Errorf("upgrading cluster %s to %s: %w", c.name, target.Kubernetes, err), kferr.Code(err),
			fmt.Sprintf("the cluster still works, its nodes on %s or %s (`kubeforge status --name %s`); fix the cause, then run the same upgrade again: the nodes already moved are left alone", from, target.Kubernetes, c.name))
	}
	return res, nil
}

// lbMachines is the load balancer as a list (empty without one).
func (l *live) lbMachines() []provision.Node {
	if l.lb == nil {
		return nil
	}
	return []provision.Node{l.lb}
}

// checkUpgrade allows from -> to when to is the same minor (a newer patch) or the next one.
func checkUpgrade(cluster, from string, to versions.Release) error {
	fm, tm := minorOf(from), minorOf(to.Kubernetes)
	switch {
	case fm < 0 || tm < 0:
		return kferr.Usage("cannot compare Kubernetes %s with %s", from, to.Kubernetes)
	case from == to.Kubernetes:
		return kferr.Usage("cluster %q runs Kubernetes %s already", cluster, from)
	case utilversion.MustParseGeneric(to.Kubernetes).LessThan(utilversion.MustParseGeneric(from)):
		return kferr.Usage("cluster %q runs Kubernetes %s: going back to %s is not supported (upstream supports no downgrade); make a new cluster with `kubeforge start --kubernetes-version %s`", cluster, from, to.Kubernetes, to.Minor())
	case tm > fm+1:
		var step string
		for _, r := range versions.All() {
			if minorOf(r.Kubernetes) == fm+1 {
				step = r.Kubernetes
			}
		}
		return kferr.Usage("cluster %q runs Kubernetes %s: upgrades go one minor at a time (upstream's version-skew policy); upgrade to %s first, then to %s", cluster, from, step, to.Kubernetes)
	}
	return nil
}

// minorOf is v's minor version, -1 when v is not a version.
func minorOf(v string) int {
	pv, err := utilversion.ParseGeneric(v)
	if err != nil {
		return -1
	}
	return int(pv.Minor())
}

// upgradeNodeWait bounds the move of one node (its drain included); a Docker node takes seconds.
const upgradeNodeWait = 5 * time.Minute

// stepUpgradeNode moves one node to the new release, unless its kubelet reports it already: a
// worker is drained first and uncordoned after; its machine is made anew from the new node image
// over its kept data, with its files rendered for the new release (same PKI, same address).
func stepUpgradeNode(l *live, rp provision.Replacer, n provision.Node, o UpgradeOptions, res *UpgradeResult) step {
	isCP := n.Role() == string(spec.RoleControlPlane)
	return step{name: "Node " + n.Name(), run: func(ctx context.Context, b *build) error {
		// One node that does not come back must not use up the whole upgrade's wait: it stops
		// with the others still serving, and says so.
		ctx, cancel := context.WithTimeout(ctx, upgradeNodeWait)
		defer cancel()
		cs := b.kube.cs
		obj, err := cs.CoreV1().Nodes().Get(ctx, n.Name(), metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading Node %s: %w", n.Name(), err)
		}
		if obj.Status.NodeInfo.KubeletVersion == b.spec.KubernetesVersion {
			b.p.log.Debugf("node %s runs %s already", n.Name(), b.spec.KubernetesVersion)
			return nil
		}
		if !isCP {
			timeout := o.DrainTimeout
			if timeout <= 0 {
				timeout = 2 * time.Minute
			}
			if err := drainNode(ctx, cs, n.Name(), timeout); err != nil {
				return kferr.WithHint(fmt.Errorf("draining node %s: %w", n.Name(), err), kferr.Code(err),
					"fix what blocks the drain (a PodDisruptionBudget?), then run the upgrade again")
			}
		}
		files, cfg, err := l.nodeFilesFor(ctx, b, n, obj)
		if err != nil {
			return err
		}
		tarball, err := files.Tar()
		if err != nil {
			return err
		}
		started := time.Now()
		nn, err := rp.ReplaceNode(ctx, cfg)
		if err != nil {
			return err
		}
		if err := nn.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
			return err
		}
		if err := nn.Start(ctx); err != nil {
			return err
		}
		wb := &build{p: b.p, spec: b.spec, nodes: []provision.Node{nn}}
		if isCP {
			if err := b.kube.up(ctx, 0, pollInterval(b.spec)); err != nil {
				return wb.waitError(ctx, err, "the API server")
			}
		}
		if err := ready.NodesSince(ctx, cs, started, n.Name()); err != nil {
			return wb.waitError(ctx, err, "node "+n.Name())
		}
		if err := kubeletVersion(ctx, b, n.Name()); err != nil {
			return err
		}
		if isCP {
			if l.lb != nil {
				if err := waitEtcdMember(ctx, nn, l.name); err != nil {
					return err
				}
			}
			if err := ready.PodsRunning(ctx, cs, metav1.NamespaceSystem, controlPlanePods(n.Name())...); err != nil {
				return wb.waitError(ctx, err, "the control-plane pods of "+n.Name())
			}
		} else if err := uncordon(ctx, b, n.Name()); err != nil {
			return err
		}
		res.Upgraded = append(res.Upgraded, n.Name())
		return nil
	}}
}

// kubeletVersion waits until node name's kubelet reports the build's version.
func kubeletVersion(ctx context.Context, b *build, name string) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		obj, err := b.kube.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = obj.Status.NodeInfo.KubeletVersion
		return last == b.spec.KubernetesVersion, nil
	})
	if err != nil {
		return fmt.Errorf("node %s reports kubelet %s, not %s", name, last, b.spec.KubernetesVersion)
	}
	return nil
}

func uncordon(ctx context.Context, b *build, name string) error {
	obj, err := b.kube.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	h := &drain.Helper{Ctx: ctx, Client: b.kube.cs}
	if err := drain.RunCordonOrUncordon(h, obj, false); err != nil {
		return fmt.Errorf("uncordoning %s: %w", name, err)
	}
	return nil
}

// nodeFilesFor renders node n's files for the build's release, and its machine's config, as
// they were made (address, published ports, caps, mounts, pod CIDR, etcd membership).
func (l *live) nodeFilesFor(ctx context.Context, b *build, n provision.Node, obj *corev1.Node) (bootstrap.Files, provision.NodeConfig, error) {
	var sn spec.Node
	for _, x := range l.rec.Spec.Nodes {
		if x.Name == n.Name() {
			sn = x
		}
	}
	if sn.Name == "" {
		sn = spec.Node{Name: n.Name(), Role: spec.Role(n.Role())}
	}
	c := b.spec
	bn := bootstrap.Node{Name: n.Name(), Role: sn.Role, IP: n.IP(), ControlPlane: b.endpoint, Network: b.network.Subnet}
	if c.RegistryPort > 0 {
		bn.Registry = b.network.RegistryIP()
	}
	if p, err := netip.ParsePrefix(obj.Spec.PodCIDR); err == nil {
		bn.PodCIDR = p
	}
	if sn.Role == spec.RoleControlPlane && c.HasWorkers() {
		bn.Taints = []string{bootstrap.ControlPlaneTaint}
	}
	if sn.Role == spec.RoleControlPlane && l.lb != nil {
		var members []string
		for _, cp := range l.controlPlanes() {
			members = append(members, bootstrap.EtcdMember(cp.Name(), cp.IP()))
		}
		bn.EtcdInitialCluster, bn.EtcdClusterState = strings.Join(members, ","), "existing"
	}
	milliCPUs, memBytes, reserved, err := b.p.nodeCaps(ctx, b.driver, sn)
	if err != nil {
		return bootstrap.Files{}, provision.NodeConfig{}, err
	}
	bn.SystemReserved = reserved
	files, err := bootstrap.NodeFiles(c, bn, b.auth)
	if err != nil {
		return bootstrap.Files{}, provision.NodeConfig{}, err
	}
	cfg := provision.NodeConfig{Cluster: l.name, Name: n.Name(), Role: n.Role(), Image: b.image, Network: b.network, IP: n.IP(),
		APIServerHostPort: n.APIServerHostPort(), MilliCPUs: milliCPUs, MemoryBytes: memBytes, Mounts: machineMounts(sn.Mounts)}
	if spec.NodeIndex(l.name, n.Name()) == 0 {
		for _, pm := range c.Ports {
			cfg.Ports = append(cfg.Ports, provision.PortMapping{HostPort: pm.HostPort, NodePort: pm.NodePort})
		}
	}
	return files, cfg, nil
}

// stepUpgradeAddons applies the add-ons of the new release (kube-proxy runs its components
// image) once every node has it.
func stepUpgradeAddons() step {
	return step{name: "Add-ons", run: func(ctx context.Context, b *build) error {
		// The machines were made anew: ask the driver for them again.
		nodes, err := b.driver.Nodes(ctx, b.spec.Name)
		if err != nil {
			return err
		}
		var cp provision.Node
		for _, n := range nodes {
			if n.Role() == string(spec.RoleControlPlane) && cp == nil {
				cp = n
			}
		}
		if cp == nil {
			return fmt.Errorf("cluster %s has no control plane", b.spec.Name)
		}
		raw, err := cp.ReadFile(ctx, contract.ImageInfoPath)
		if err != nil {
			return fmt.Errorf("reading the node image's %s: %w", contract.ImageInfoPath, err)
		}
		if err := json.Unmarshal(raw, &b.info); err != nil {
			return fmt.Errorf("parsing %s: %w", contract.ImageInfoPath, err)
		}
		objs, err := addonObjects(b.spec, b.info, b.endpoint)
		if err != nil {
			return err
		}
		dyn, err := b.kube.dynamic()
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, addonGrace)
		defer cancel()
		return addons.ApplyUntil(actx, dyn, objs, pollInterval(b.spec))
	}}
}

// stepUpgradeCloudProvider makes the cloud-provider machine anew from the new node image. It
// makes the Services' load-balancer machines again from that image (their configuration hash
// holds the image), keeping their addresses and host ports.
func stepUpgradeCloudProvider() step {
	return step{name: "Cloud provider", run: func(ctx context.Context, b *build) error {
		name := contract.CloudProviderName(b.spec.Name)
		nodes, err := b.driver.Nodes(ctx, b.spec.Name)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Name() == name {
				if err := b.driver.DeleteNode(ctx, b.spec.Name, name); err != nil {
					return fmt.Errorf("removing the old cloud-provider machine: %w", err)
				}
			}
		}
		return b.makeCloudProvider(ctx)
	}}
}
