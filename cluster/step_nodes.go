package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// nodePlan is a node to make: the one shape a node takes between the spec and the files and
// machine bootstrap and the driver make of it.
type nodePlan struct {
	bootstrap.Node
	index int // i of spec.NodeName(cluster, i); the node's address is the network's NodeIP(i)
	spec  spec.Node
	// apiPort is the host port of its API server (the first control plane), 0 for none.
	apiPort int
	ports   []provision.PortMapping
}

// stepNodes plans every node of c (addresses, pod CIDRs, etcd members), renders their files,
// and makes, fills and starts their machines in parallel; then it writes the kubeconfigs the
// host uses and the cluster's record. Undo removes the machines it made.
func stepNodes(c spec.Cluster) step {
	names := c.NodeNames()
	title := "Node " + names[0]
	if len(names) > 1 {
		title = fmt.Sprintf("Nodes %s (%d, in parallel)", strings.Join(names, ", "), len(names))
	}
	return step{name: title, run: func(ctx context.Context, b *build) error {
		if err := b.planNodes(); err != nil {
			return err
		}
		if err := b.makeNodes(ctx, b.plans); err != nil {
			return err
		}
		raw, err := b.nodes[0].ReadFile(ctx, contract.ImageInfoPath)
		if err != nil {
			return fmt.Errorf("reading the node image's %s: %w", contract.ImageInfoPath, err)
		}
		if err := json.Unmarshal(raw, &b.info); err != nil {
			return fmt.Errorf("parsing %s: %w", contract.ImageInfoPath, err)
		}
		return b.writeClientConfigs()
	}, undo: undoMachines}
}

// planNodes sets the API server's endpoint and port and the plan of every node of the spec.
func (b *build) planNodes() error {
	c := b.spec
	ha := c.ControlPlanes() > 1
	if b.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		b.port = port
	}
	ep, err := nodeAddr(b.network, 0)
	if err != nil {
		return err
	}
	var members []string
	for i, n := range c.Nodes {
		if n.Role == spec.RoleControlPlane {
			ip, err := nodeAddr(b.network, i)
			if err != nil {
				return err
			}
			members = append(members, bootstrap.EtcdMember(n.Name, ip))
		}
	}
	if ha {
		ep = b.network.LoadBalancerIP()
	}
	b.endpoint = ep
	if provision.HasDirectAccess(b.driver) {
		b.apiHost, b.port = ep.String(), bootstrap.APIServerPort
	}
	b.plans = nil
	for i, n := range c.Nodes {
		np := nodePlan{index: i, spec: n}
		np.Name, np.Role, np.ControlPlane, np.Network = n.Name, n.Role, ep, b.network.Subnet
		if ha && n.Role == spec.RoleControlPlane {
			np.EtcdInitialCluster = strings.Join(members, ",")
		}
		if np.IP, err = nodeAddr(b.network, i); err != nil {
			return err
		}
		if np.PodCIDR, err = nodePodCIDR(c.PodSubnet, i); err != nil {
			return err
		}
		if i == 0 {
			if !ha {
				np.apiPort = b.port
			}
			for _, pm := range c.Ports {
				np.ports = append(np.ports, provision.PortMapping{HostPort: pm.HostPort, NodePort: pm.NodePort})
			}
		}
		b.plans = append(b.plans, np)
	}
	return nil
}

// makeNodes makes and starts the machines of plans in parallel, appending them to b.nodes in
// plan order and their names to b.made as each is made.
func (b *build) makeNodes(ctx context.Context, plans []nodePlan) error {
	out := make([]provision.Node, len(plans))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for i, np := range plans {
		safe.Go(g, func() error {
			n, err := b.makeNode(gctx, np, func() {
				mu.Lock()
				b.made = append(b.made, np.Name)
				mu.Unlock()
			})
			out[i] = n
			return err
		})
	}
	err := g.Wait()
	b.nodes = append(b.nodes, out...)
	return err
}

// makeNode renders a node's files, makes its machine (made is called as soon as it exists),
// copies the files in and starts it.
func (b *build) makeNode(ctx context.Context, np nodePlan, made func()) (provision.Node, error) {
	c := b.spec
	milliCPUs, memBytes, reserved, err := b.p.nodeCaps(ctx, b.driver, np.spec)
	if err != nil {
		return nil, err
	}
	bn := np.Node
	bn.SystemReserved = reserved
	if c.RegistryPort > 0 {
		bn.Registry = b.network.RegistryIP()
	}
	if np.spec.Role == spec.RoleControlPlane && c.HasWorkers() {
		bn.Taints = []string{bootstrap.ControlPlaneTaint}
	}
	files, err := bootstrap.NodeFiles(c, bn, b.auth)
	if err != nil {
		return nil, err
	}
	tarball, err := files.Tar()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	node, err := b.driver.CreateNode(ctx, provision.NodeConfig{
		Cluster: c.Name, Name: np.Name, Role: string(np.spec.Role), Image: b.image,
		Network: b.network, IP: np.IP, APIServerHostPort: np.apiPort, Ports: np.ports,
		MilliCPUs: milliCPUs, MemoryBytes: memBytes, Mounts: machineMounts(np.spec.Mounts),
	})
	if err != nil {
		return nil, err
	}
	made()
	t1 := time.Now()
	if err := node.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
		return node, err
	}
	t2 := time.Now()
	if err := node.Start(ctx); err != nil {
		return node, err
	}
	b.p.log.Debugf("node %s: machine made in %s, files copied in %s, started in %s", np.Name,
		t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	return node, nil
}

// machineMounts are a node's host mounts as the driver takes them.
func machineMounts(ms []spec.Mount) []provision.Mount {
	var out []provision.Mount
	for _, m := range ms {
		out = append(out, provision.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	return out
}

// nodeCaps turns a node's cpus/memory caps into the machine's limits and, when the machine sees
// the host's size (container nodes), the kubelet's system reservation that brings its allocatable
// down to the caps.
func (p *Provider) nodeCaps(ctx context.Context, d provision.Driver, n spec.Node) (milliCPUs, memBytes int64, reserved map[string]string, err error) {
	cpus, mem, err := n.Resources()
	if err != nil {
		return 0, 0, nil, kferr.Usage("%v", err)
	}
	if cpus.IsZero() && mem.IsZero() {
		return 0, 0, nil, nil
	}
	host, err := d.HostCapacity(ctx)
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
func (b *build) writeClientConfigs() error {
	server := state.APIServerURL(b.apiHost, b.port)
	for _, kc := range []struct {
		user pki.Identity
		path string
	}{{pki.Admin, b.dir.Kubeconfig()}, {pki.SuperAdmin, b.dir.SuperAdmin()}} {
		raw, err := b.auth.KubeconfigFor(server, b.spec.Name, kc.user)
		if err != nil {
			return err
		}
		if err := state.WriteFile(kc.path, raw); err != nil {
			return err
		}
	}
	b.rec = state.Record{Spec: b.spec, Image: b.image, APIServerHost: b.apiHost, APIServerPort: b.port, Created: time.Now().UTC()}
	return b.dir.Save(b.rec)
}

// nodePodCIDR is the pod CIDR of the i-th node: the i-th /NodeCIDRMaskSize of the pod subnet.
func nodePodCIDR(podSubnet string, i int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(podSubnet)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("pod subnet %q is not an IPv4 CIDR", podSubnet)
	}
	bits := controlplane.NodeCIDRMaskSize
	if p.Bits() > bits || i < 0 || i >= 1<<(bits-p.Bits()) {
		return netip.Prefix{}, fmt.Errorf("pod subnet %s has no /%d for node %d", podSubnet, bits, i)
	}
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) + uint32(i)<<(32-bits)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(a), bits), nil
}

// freePort returns a TCP port free on 127.0.0.1 now; the driver checks it again when publishing.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, kferr.Environment("check the machine's network settings", "finding a free port on 127.0.0.1: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
