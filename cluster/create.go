package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/bootstrap/rbacseed"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// KeepOnFailure keeps what a failed create made, for debugging.
	KeepOnFailure bool
}

// CreateResult says what Create did.
type CreateResult struct {
	// AlreadyRunning is set when the cluster existed and was running: nothing was changed.
	AlreadyRunning bool
	// Resumed is set when the cluster existed, stopped, and was started again.
	Resumed    bool
	Kubeconfig string // the user's kubeconfig the context was merged into
	Context    string
	APIServer  string
}

// step is one action of the create flow; undo (optional) reverts it when a later step fails.
type step struct {
	name string
	run  func(ctx context.Context) error
	undo func(ctx context.Context) error
}

// run executes steps in order, showing each with its duration. When one fails, the undos of the
// steps that ran (including the failed one, which may have done part of its work) run in reverse,
// unless keep is set.
func (p *Provider) run(ctx context.Context, steps []step, keep bool) error {
	var done []step
	for _, s := range steps {
		done = append(done, s)
		var err error
		if s.name != "" {
			st := p.log().Step(s.name)
			err = st.Done(s.run(ctx))
		} else {
			err = s.run(ctx)
		}
		if err == nil {
			continue
		}
		// A step cut short by the deadline (a Docker call, a copy) failed for lack of time.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && kferr.Code(err) != kferr.ExitTimeout {
			err = kferr.Timeout("retry with a longer --wait, or with --keep-on-failure to look at what was made",
				"timed out waiting for step %q to finish: %v", s.name, err)
		}
		if keep {
			p.log().Warnf("keeping what was created (--keep-on-failure); remove it with `kubeforge delete`")
			return err
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		for i := len(done) - 1; i >= 0; i-- {
			if done[i].undo == nil {
				continue
			}
			if uerr := done[i].undo(uctx); uerr != nil {
				p.log().Warnf("cleaning up after the failure: %v", uerr)
			}
		}
		return err
	}
	return nil
}

// Create makes the cluster c and returns when it is usable: node Ready, CoreDNS serving, the
// default ServiceAccount present, the context merged into the user's kubeconfig. A cluster that
// is already running is left alone (AlreadyRunning).
func (p *Provider) Create(ctx context.Context, c spec.Cluster, o CreateOptions) (CreateResult, error) {
	res := CreateResult{Kubeconfig: p.userKubeconfig(), Context: c.Name}
	if err := c.Validate(); err != nil {
		return res, err
	}
	if err := p.Driver.Ping(ctx); err != nil {
		return res, err
	}
	dirs, err := p.dirs(c.Name)
	if err != nil {
		return res, err
	}
	existing, err := p.Driver.Nodes(ctx, c.Name)
	if err != nil {
		return res, err
	}
	if len(existing) > 0 {
		st, err := p.Status(ctx, c.Name)
		if err != nil {
			return res, err
		}
		if rec, err := dirs.load(); err != nil || !rec.Complete {
			return res, kferr.Environment(fmt.Sprintf("delete it with `kubeforge delete --name %s` and start again", c.Name),
				"cluster %q was not completely created (the remains of a failed or interrupted start)", c.Name)
		}
		if st.State == StateRunning {
			res.AlreadyRunning, res.APIServer = true, st.APIServer
			return res, nil
		}
		// Stopped (or partly): start its machines again and wait until it is usable.
		res.Resumed = true
		return res, p.resume(ctx, c.Name, c.Wait, &res)
	}
	if c.Wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Wait)
		defer cancel()
	}

	ha := c.ControlPlanes() > 1
	cp := c.Nodes[0]
	var (
		image    string
		network  provision.Network
		auth     *pki.Authorities
		node     provision.Node // the control plane
		port     = c.APIServerPort
		apiHost  string // empty: 127.0.0.1 (published port)
		nodeInfo contract.ImageInfo
		cs       *kubernetes.Clientset
		restCfg  *rest.Config
		plans    []nodePlan
		endpoint netip.Addr // where nodes reach the API server: the control plane, or the load balancer (HA)
		nodes    []provision.Node
	)
	lbName := c.Name + "-lb"
	names := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		names[i] = n.Name
	}
	nodesStep := "Node " + cp.Name
	if len(names) > 1 {
		nodesStep = fmt.Sprintf("Nodes %s (%d, in parallel)", strings.Join(names, ", "), len(names))
	}
	steps := []step{
		{name: "Node image", run: func(ctx context.Context) error {
			image, err = p.Image(ctx, c)
			return err
		}},
		{name: "Network", run: func(ctx context.Context) error {
			if network, err = p.Driver.EnsureNetwork(ctx, c.Name); err != nil {
				return err
			}
			return checkSubnets(c, network)
		}, undo: func(ctx context.Context) error { return p.Driver.DeleteNetwork(ctx, c.Name) }},
		{name: "Certificates", run: func(ctx context.Context) error {
			auth, err = pki.EnsureAuthorities(dirs.PKI(), c.Name)
			return err
		}, undo: func(context.Context) error { return removeAll(dirs.Root) }},
	}
	if ha {
		steps = append(steps, step{name: "Load balancer", run: func(ctx context.Context) error {
			if port == 0 {
				if port, err = freePort(); err != nil {
					return err
				}
			}
			var cpIPs []netip.Addr
			for i, n := range c.Nodes {
				if n.Role == spec.RoleControlPlane {
					ip, err := nodeAddr(network, i)
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
			lb, err := p.Driver.CreateNode(ctx, provision.NodeConfig{
				Cluster: c.Name, Name: lbName, Role: provision.RoleLoadBalancer, Image: image,
				Network: network, IP: network.LoadBalancerIP(), APIServerHostPort: port,
			})
			if err != nil {
				return err
			}
			if err := lb.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
				return err
			}
			return lb.Start(ctx)
		}, undo: func(ctx context.Context) error { return p.Driver.DeleteNode(ctx, c.Name, lbName) }})
	}
	steps = append(steps, []step{
		{name: nodesStep, run: func(ctx context.Context) error {
			if port == 0 {
				if port, err = freePort(); err != nil {
					return err
				}
			}
			if endpoint, err = nodeAddr(network, 0); err != nil {
				return err
			}
			var members []string
			for i, n := range c.Nodes {
				if n.Role == spec.RoleControlPlane {
					ip, err := nodeAddr(network, i)
					if err != nil {
						return err
					}
					members = append(members, bootstrap.EtcdMember(n.Name, ip))
				}
			}
			if ha {
				endpoint = network.LoadBalancerIP()
			}
			if provision.HasDirectAccess(p.Driver) {
				apiHost, port = endpoint.String(), bootstrap.APIServerPort
			}
			for i, n := range c.Nodes {
				np := nodePlan{index: i, spec: n, controlPlane: endpoint}
				if ha && n.Role == spec.RoleControlPlane {
					np.etcdInitialCluster = strings.Join(members, ",")
				}
				if np.ip, err = nodeAddr(network, i); err != nil {
					return err
				}
				cidr, err := nodePodCIDR(c.PodSubnet, i)
				if err != nil {
					return err
				}
				np.podCIDR = netip.MustParsePrefix(cidr)
				if i == 0 {
					if !ha {
						np.apiPort = port
					}
					for _, pm := range c.Ports {
						np.ports = append(np.ports, provision.PortMapping{HostPort: pm.HostPort, NodePort: pm.NodePort})
					}
				}
				plans = append(plans, np)
			}
			created, err := p.createNodes(ctx, c, auth, image, network, plans)
			if err != nil {
				return err
			}
			node, nodes = created[0], created
			info, err := node.ReadFile(ctx, contract.ImageInfoPath)
			if err != nil {
				return fmt.Errorf("reading the node image's %s: %w", contract.ImageInfoPath, err)
			}
			if err := json.Unmarshal(info, &nodeInfo); err != nil {
				return fmt.Errorf("parsing %s: %w", contract.ImageInfoPath, err)
			}
			return p.writeClientConfigs(c, dirs, auth, apiHost, port, image)
		}, undo: func(ctx context.Context) error {
			var errs []error
			for _, n := range names {
				errs = append(errs, p.Driver.DeleteNode(ctx, c.Name, n))
			}
			return errors.Join(errs...)
		}},
		{name: "Control plane", run: func(ctx context.Context) error {
			restCfg, err = clientcmd.BuildConfigFromFlags("", dirs.SuperAdmin())
			if err != nil {
				return err
			}
			restCfg.QPS, restCfg.Burst = 50, 100
			if cs, err = kubernetes.NewForConfig(restCfg); err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(restCfg)
			if err != nil {
				return err
			}
			objs, err := p.addonObjects(c, nodeInfo, endpoint)
			if err != nil {
				return err
			}
			// The add-ons go in as soon as the API server serves, while it still makes its RBAC
			// roles (the super-admin needs none): when the controller-manager starts, at /readyz,
			// its ServiceAccounts and CoreDNS's Deployment are there already. First the system
			// PriorityClasses, which the kubelet's mirror pods of the static pods need.
			objs = append(append(addons.SystemPriorityClasses(), addons.ControllerServiceAccounts()...), objs...)
			g, gctx := errgroup.WithContext(ctx)
			applyCtx, stopApplying := context.WithCancel(gctx)
			defer stopApplying()
			g.Go(func() error {
				if err := addons.ApplyUntil(applyCtx, dyn, objs, pollInterval(c)); err != nil {
					return fmt.Errorf("applying the add-ons: %w", err)
				}
				return nil
			})
			// The RBAC bootstrap policy too, many at once: the API server's own hook waits a
			// second before its first pass, then makes the ~150 objects one by one; made before
			// then, its pass only reads them, and /readyz, which the scheduler and the
			// controller-manager wait for (node/startorder), comes ~0.5 s sooner. Best
			// effort: the hook makes whatever this does not, by /readyz at the latest, when this
			// stops. Feature gates change the policy, so a cluster that sets them is left to the
			// hook alone.
			seedCtx, stopSeeding := context.WithCancel(gctx)
			defer stopSeeding()
			if len(c.FeatureGates) == 0 {
				g.Go(func() error {
					start := time.Now()
					err := rbacseed.Create(seedCtx, cs, rbacseed.Bootstrap(), pollInterval(c))
					switch {
					case err == nil:
						p.log().Debugf("RBAC bootstrap policy made in %s", time.Since(start).Round(time.Millisecond))
					case seedCtx.Err() == nil:
						p.log().Warnf("the API server will make its RBAC roles itself: %v", err)
					}
					return nil
				})
			}
			g.Go(func() error {
				if err := ready.APIServerEvery(gctx, cs, pollInterval(c)); err != nil {
					return p.waitError(gctx, err, node, "the API server")
				}
				stopSeeding()
				// A ready API server that still refuses an add-on will not take it later.
				time.AfterFunc(addonGrace, stopApplying)
				return nil
			})
			return g.Wait()
		}},
		{name: "Kubelet", run: func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			for _, np := range plans {
				g.Go(func() error {
					n, err := ready.NodeRegistered(gctx, cs, np.spec.Name)
					if err != nil {
						return p.waitError(gctx, err, node, "node "+np.spec.Name+" to register")
					}
					return assignPodCIDR(gctx, cs, n, np.podCIDR.String())
				})
			}
			if err := g.Wait(); err != nil {
				return err
			}
			for _, n := range c.ControlPlaneNames() {
				if err := labelControlPlane(ctx, cs, n); err != nil {
					return err
				}
			}
			if err := ready.Nodes(ctx, cs, names...); err != nil {
				return p.waitError(ctx, err, node, "nodes "+strings.Join(names, ", "))
			}
			return nil
		}},
		{name: "DNS", run: func(ctx context.Context) error {
			if err := ready.ServiceEndpoints(ctx, cs, metav1.NamespaceSystem, "kube-dns"); err != nil {
				return p.waitError(ctx, err, node, "CoreDNS")
			}
			if err := dnsProgrammed(ctx, cs, nodes); err != nil {
				return p.waitError(ctx, err, node, "cluster DNS on every node")
			}
			return nil
		}},
		{name: "Ready", run: func(ctx context.Context) error {
			if err := ready.ServiceAccount(ctx, cs, metav1.NamespaceDefault, "default"); err != nil {
				return p.waitError(ctx, err, node, "the default ServiceAccount")
			}
			if err := ready.PodsRunning(ctx, cs, metav1.NamespaceSystem, controlPlanePods(c.ControlPlaneNames()...)...); err != nil {
				return p.waitError(ctx, err, node, "the control-plane pods")
			}
			kc, err := readFile(dirs.Kubeconfig())
			if err != nil {
				return err
			}
			if err := MergeKubeconfig(res.Kubeconfig, kc, c.Name); err != nil {
				return fmt.Errorf("merging context %s into %s: %w", c.Name, res.Kubeconfig, err)
			}
			rec, err := dirs.load()
			if err != nil {
				return err
			}
			rec.Complete = true
			return dirs.save(rec)
		}, undo: func(context.Context) error { return RemoveFromKubeconfig(res.Kubeconfig, c.Name) }},
	}...)
	if err := p.run(ctx, steps, o.KeepOnFailure); err != nil {
		return res, err
	}
	res.APIServer = apiServerURL(apiHost, port)
	return res, nil
}

// pollInterval is how often start asks the API server while it starts: on an emulated machine
// every request costs the API server CPU it is short of (and its start takes minutes anyway).
func pollInterval(c spec.Cluster) time.Duration {
	if c.Emulated() {
		return time.Second
	}
	return ready.APIServerPoll
}

// addonGrace bounds the add-ons' apply once the API server is ready (under emulation a request
// can take seconds).
const addonGrace = 2 * time.Minute

// nodePlan is a node to create.
type nodePlan struct {
	index        int // i of spec.NodeName(cluster, i); the node's address is the network's NodeIP(i)
	spec         spec.Node
	ip           netip.Addr
	controlPlane netip.Addr // where its kubelet reaches the API server
	// podCIDR, when valid, is written into the node's CNI config up front and assigned to its
	// Node as soon as it registers (cluster creation, before the controller-manager's IPAM runs).
	podCIDR netip.Prefix
	apiPort int // host port of its API server (the first control plane), 0 for none
	ports   []provision.PortMapping
	// etcdInitialCluster (control planes of an HA cluster) lists every etcd member;
	// etcdClusterState is "existing" for a member joining a running cluster.
	etcdInitialCluster, etcdClusterState string
}

// createNodes creates and starts the nodes of plans in parallel; on failure the caller removes
// them. The returned nodes are in the order of plans.
func (p *Provider) createNodes(ctx context.Context, c spec.Cluster, auth *pki.Authorities, image string, network provision.Network, plans []nodePlan) ([]provision.Node, error) {
	out := make([]provision.Node, len(plans))
	g, gctx := errgroup.WithContext(ctx)
	for i, np := range plans {
		g.Go(func() error {
			n, err := p.createNode(gctx, c, auth, image, network, np)
			out[i] = n
			return err
		})
	}
	return out, g.Wait()
}

// createNode renders a node's files, creates its machine, copies the files in and starts it.
func (p *Provider) createNode(ctx context.Context, c spec.Cluster, auth *pki.Authorities, image string, network provision.Network, np nodePlan) (provision.Node, error) {
	bn := bootstrap.Node{Name: np.spec.Name, Role: np.spec.Role, IP: np.ip, ControlPlane: np.controlPlane, PodCIDR: np.podCIDR,
		EtcdInitialCluster: np.etcdInitialCluster, EtcdClusterState: np.etcdClusterState, Network: network.Subnet}
	milliCPUs, memBytes, reserved, err := p.nodeCaps(ctx, np.spec)
	if err != nil {
		return nil, err
	}
	bn.SystemReserved = reserved
	if np.spec.Role == spec.RoleControlPlane && c.HasWorkers() {
		bn.Taints = []string{bootstrap.ControlPlaneTaint}
	}
	files, err := bootstrap.NodeFiles(c, bn, auth)
	if err != nil {
		return nil, err
	}
	tarball, err := files.Tar()
	if err != nil {
		return nil, err
	}
	node, err := p.Driver.CreateNode(ctx, provision.NodeConfig{
		Cluster: c.Name, Name: np.spec.Name, Role: string(np.spec.Role), Image: image,
		Network: network, IP: np.ip, APIServerHostPort: np.apiPort, Ports: np.ports,
		MilliCPUs: milliCPUs, MemoryBytes: memBytes, Mounts: machineMounts(np.spec.Mounts),
	})
	if err != nil {
		return nil, err
	}
	if err := node.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
		return node, err
	}
	return node, node.Start(ctx)
}

// machineMounts are a node's host mounts as the driver takes them.
func machineMounts(ms []spec.Mount) []provision.Mount {
	var out []provision.Mount
	for _, m := range ms {
		out = append(out, provision.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	return out
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

// nodeCaps turns a node's cpus/memory caps into the machine's limits and, when the machine sees
// the host's size (container nodes), the kubelet's system reservation that brings its allocatable
// down to the caps.
func (p *Provider) nodeCaps(ctx context.Context, n spec.Node) (milliCPUs, memBytes int64, reserved map[string]string, err error) {
	cpus, mem, err := n.Resources()
	if err != nil {
		return 0, 0, nil, kferr.Usage("%v", err)
	}
	if cpus.IsZero() && mem.IsZero() {
		return 0, 0, nil, nil
	}
	host, err := p.Driver.HostCapacity(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	reserved = map[string]string{}
	if !cpus.IsZero() {
		milliCPUs = cpus.MilliValue()
		if host.MilliCPUs > 0 {
			if milliCPUs > host.MilliCPUs {
				return 0, 0, nil, kferr.Usage("node %s: %s CPUs is more than the host's %d: use --cpus %d or less", n.Name, n.CPUs, host.MilliCPUs/1000, host.MilliCPUs/1000)
			}
			if d := host.MilliCPUs - milliCPUs; d > 0 {
				reserved["cpu"] = fmt.Sprintf("%dm", d)
			}
		}
	}
	if !mem.IsZero() {
		memBytes = mem.Value()
		if host.MemoryBytes > 0 {
			if memBytes > host.MemoryBytes {
				return 0, 0, nil, kferr.Usage("node %s: memory %s is more than the host's %d MiB", n.Name, n.Memory, host.MemoryBytes>>20)
			}
			if d := host.MemoryBytes - memBytes; d > 0 {
				reserved["memory"] = fmt.Sprintf("%d", d)
			}
		}
	}
	if len(reserved) == 0 {
		reserved = nil
	}
	return milliCPUs, memBytes, reserved, nil
}

// writeClientConfigs writes the cluster's record and the kubeconfigs the host uses: the user's
// (admin) and kubeforge's own (super-admin, for bootstrapping before RBAC exists).
func (p *Provider) writeClientConfigs(c spec.Cluster, dirs Dirs, auth *pki.Authorities, host string, port int, image string) error {
	server := apiServerURL(host, port)
	admin, err := auth.KubeconfigFor(server, c.Name, pki.Admin)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(dirs.Kubeconfig(), admin, 0o600); err != nil {
		return err
	}
	super, err := auth.KubeconfigFor(server, c.Name, pki.SuperAdmin)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(dirs.SuperAdmin(), super, 0o600); err != nil {
		return err
	}
	return dirs.save(Record{Spec: c, Image: image, APIServerHost: host, APIServerPort: port, Created: time.Now().UTC()})
}

func (p *Provider) addonObjects(c spec.Cluster, info contract.ImageInfo, endpoint netip.Addr) ([]runtime.Object, error) {
	dnsIP, err := c.ServiceIP(10)
	if err != nil {
		return nil, err
	}
	corednsImage := info.Images["coredns"]
	if corednsImage == "" {
		return nil, fmt.Errorf("the node image's %s names no coredns image", contract.ImageInfoPath)
	}
	return addons.Objects(addons.Config{
		KubernetesVersion:    c.KubernetesVersion,
		ControlPlaneEndpoint: netip.AddrPortFrom(endpoint, bootstrap.APIServerPort).String(),
		PodSubnet:            c.PodSubnet,
		DNSDomain:            c.DNSDomain,
		DNSServiceIP:         dnsIP,
		CoreDNSImage:         corednsImage,
		CoreDNSReplicas:      1,
		FeatureGates:         c.FeatureGates,
	})
}

// nodePodCIDR is the pod CIDR of the i-th node: the i-th /NodeCIDRMaskSize of the pod subnet.
func nodePodCIDR(podSubnet string, i int) (string, error) {
	p, err := netip.ParsePrefix(podSubnet)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("pod subnet %q is not an IPv4 CIDR", podSubnet)
	}
	bits := controlplane.NodeCIDRMaskSize
	if p.Bits() > bits || i < 0 || i >= 1<<(bits-p.Bits()) {
		return "", fmt.Errorf("pod subnet %s has no /%d for node %d", podSubnet, bits, i)
	}
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) + uint32(i)<<(32-bits)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(a), bits).String(), nil
}

// assignPodCIDR gives a freshly registered node its pod CIDR at once, so that its network (and
// so the node's Ready condition) does not wait for the controller-manager to win its lease and
// start its IPAM controller, which then finds the CIDR taken and keeps it. Node i always gets
// the i-th range, so a node keeps its pods' addresses over restarts.
func assignPodCIDR(ctx context.Context, cs kubernetes.Interface, n *corev1.Node, cidr string) error {
	if n.Spec.PodCIDR != "" {
		return nil
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, cidr, cidr)
	_, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: addons.FieldManager})
	if err != nil {
		// The controller-manager may have been quicker; its choice stands.
		if cur, gerr := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); gerr == nil && cur.Spec.PodCIDR != "" {
			return nil
		}
		return fmt.Errorf("assigning pod CIDR %s to node %s: %w", cidr, n.Name, err)
	}
	return nil
}

// labelControlPlane marks the node as kubeadm does (the kubelet may not label itself with a
// node-role).
func labelControlPlane(ctx context.Context, cs kubernetes.Interface, name string) error {
	patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"","node.kubernetes.io/exclude-from-external-load-balancers":""}}}`)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: addons.FieldManager}); err != nil {
		return fmt.Errorf("labelling node %s: %w", name, err)
	}
	return nil
}

// waitError turns a failed wait into an error that says what did not happen, with the node's
// last supervisor output and the hint to look further.
func (p *Provider) waitError(ctx context.Context, err error, node provision.Node, what string) error {
	if !ready.IsTimeout(err) && ctx.Err() == nil {
		return err
	}
	tail := nodeTail(node)
	hint := fmt.Sprintf("look at the node with `kubeforge ssh --name %s` (logs in /var/log/kubeforge), or retry with --keep-on-failure and a longer --wait", node.Name())
	return kferr.Timeout(hint, "timed out waiting for %s: %v%s", what, err, tail)
}

func nodeTail(node provision.Node) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := node.Logs(ctx, &buf, false); err != nil || buf.Len() == 0 {
		return ""
	}
	b := buf.Bytes()
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "\nlast output of node " + node.Name() + ":\n" + string(b)
}
