// Package cloud is kubeforge's cloud provider for clusters on Docker: it gives every Service of
// type LoadBalancer an address on the cluster's network, answering from the host, and a port on
// the host's 127.0.0.1 (so it works where container addresses are not routable: Docker Desktop,
// a remote daemon). It runs in the cluster's cloud-provider machine (cmd/kubeforge-cloud, started
// by that machine's supervisor) with the Docker daemon's socket, and it is upstream's service
// controller (k8s.io/cloud-provider/controllers/service: finalizers, status, events, node sync)
// over a cloudprovider.Interface whose LoadBalancer makes, for each Service, one small container
// from the node image: its address is the Service's external IP, its ports are published on
// 127.0.0.1, and it forwards each port to the port's NodePort on the nodes (node/svclb), where
// kube-proxy takes over. No host daemon, no second terminal, no sudo.
package cloud

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/node/nodelb"
)

// LoadBalancers implements cloudprovider.LoadBalancer with one container per Service.
type LoadBalancers struct {
	Cluster string
	Network string // the cluster's Docker network
	Image   string // the node image the containers run (kubeforge-init svclb)
	Docker  *client.Client
	Nodes   corelisters.NodeLister

	// mu serializes the changes: two Services made at once must not pick the same address.
	mu sync.Mutex
}

// name is the machine of svc.
func (l *LoadBalancers) name(svc *v1.Service) string {
	return contract.ServiceLBName(l.Cluster, svc.Namespace, svc.Name, string(svc.UID))
}

// GetLoadBalancerName is the Service's machine name.
func (l *LoadBalancers) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return l.name(svc)
}

// GetLoadBalancer reports whether svc's machine exists, with its address.
func (l *LoadBalancers) GetLoadBalancer(ctx context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	c, ok, err := l.inspect(ctx, l.name(svc))
	if err != nil || !ok {
		return nil, false, err
	}
	ip := containerIP(c, l.Network)
	if !ip.IsValid() {
		return nil, true, nil
	}
	return status(ip), true, nil
}

// EnsureLoadBalancer makes svc's machine, or makes it again when its ports or nodes changed
// (keeping its address and host ports), and returns its address.
func (l *LoadBalancers) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ports, err := servicePorts(svc)
	if err != nil {
		return nil, err
	}
	ips, err := l.nodeIPs(nodes)
	if err != nil {
		return nil, err
	}
	asked, err := AskedHostPorts(svc)
	if err != nil {
		return nil, err
	}
	name := l.name(svc)
	hash := configHash(l.Image, ports, ips, asked)
	c, ok, err := l.inspect(ctx, name)
	if err != nil {
		return nil, err
	}
	var keepIP netip.Addr
	keepPorts := map[string]string{}
	if ok {
		ip := containerIP(c, l.Network)
		if c.Config.Labels[contract.LabelServiceConfig] == hash && ip.IsValid() {
			if c.State != nil && c.State.Running {
				return status(ip), nil
			}
			err := l.Docker.ContainerStart(ctx, c.ID, container.StartOptions{})
			if err == nil {
				return status(ip), nil
			}
			// Its address or a host port was taken meanwhile: make it anew below.
			klog.InfoS("the load balancer does not start; making it again", "service", klog.KObj(svc), "machine", name, "err", err)
			ip = netip.Addr{}
		}
		keepIP = ip
		keepPorts = hostPorts(c)
		if err := l.remove(ctx, name); err != nil {
			return nil, err
		}
	}
	if !keepIP.IsValid() {
		if keepIP, err = l.freeIP(ctx); err != nil {
			return nil, err
		}
	}
	klog.InfoS("making the load balancer", "service", klog.KObj(svc), "machine", name, "ip", keepIP, "ports", fmt.Sprint(ports), "nodes", fmt.Sprint(ips))
	want := wantedHostPorts(ports, asked, keepPorts)
	for {
		err := l.create(ctx, svc, name, hash, keepIP, ports, ips, want, !slices.Contains(slices.Collect(maps.Values(want)), ""))
		if err == nil {
			break
		}
		// A host port is taken (another cluster's Service, a program of the user's) or
		// refused (rootless Docker and ports below 1024): Docker picks a free one for that
		// port only, the others keep theirs.
		np, ok := refusedPort(err, want)
		if !ok {
			return nil, err
		}
		klog.InfoS("a host port is not free; publishing that port on one Docker picks", "service", klog.KObj(svc), "port", np, "err", err)
		want[np] = ""
	}
	if slices.Contains(slices.Collect(maps.Values(want)), "") {
		l.pin(ctx, svc, name, hash, keepIP, ports, ips, want)
	}
	return status(keepIP), nil
}

// pin makes the machine called name again with the host ports Docker picked for it written
// down: Docker picks anew each time a container starts, and the ports must survive a stop and
// start of the cluster. If they cannot be had again (taken in between), the machine stays as it
// is.
func (l *LoadBalancers) pin(ctx context.Context, svc *v1.Service, name, hash string, ip netip.Addr, ports []svcPort, nodes []netip.Addr, want map[string]string) {
	c, ok, err := l.inspect(ctx, name)
	if err != nil || !ok {
		return
	}
	given := hostPorts(c)
	for _, p := range ports {
		if given[fmt.Sprintf("%d/%s", p.port, p.proto)] == "" {
			return // not all published yet: leave it
		}
	}
	if err := l.remove(ctx, name); err != nil {
		klog.ErrorS(err, "pinning the load balancer's host ports", "service", klog.KObj(svc), "machine", name)
		return
	}
	if err := l.create(ctx, svc, name, hash, ip, ports, nodes, given, true); err != nil {
		klog.InfoS("the host ports Docker picked were taken meanwhile; publishing on new ones", "service", klog.KObj(svc), "err", err)
		if err := l.create(ctx, svc, name, hash, ip, ports, nodes, want, true); err != nil {
			klog.ErrorS(err, "making the load balancer again", "service", klog.KObj(svc), "machine", name)
		}
	}
}

// AskedHostPorts parses svc's host-ports annotation (contract.AnnotationHostPorts): host port by Service port number.
func AskedHostPorts(svc *v1.Service) (map[int]int, error) {
	out := map[int]int{}
	v := strings.TrimSpace(svc.Annotations[contract.AnnotationHostPorts])
	if v == "" {
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, hp, ok := strings.Cut(strings.TrimSpace(kv), "=")
		port, perr := strconv.Atoi(strings.TrimSpace(k))
		host, herr := strconv.Atoi(strings.TrimSpace(hp))
		if !ok || perr != nil || herr != nil || port < 1 || port > 65535 || host < 1 || host > 65535 {
			return nil, fmt.Errorf("annotation %s=%q: want PORT=HOSTPORT pairs separated by commas, e.g. \"80=8080,443=8443\"", contract.AnnotationHostPorts, v)
		}
		out[port] = host
	}
	return out, nil
}

// wantedHostPorts are the host ports to ask Docker for, by "PORT/proto": those the annotation
// asks for, else those the machine had (keep), else the Service's own port number.
func wantedHostPorts(ports []svcPort, asked map[int]int, keep map[string]string) map[string]string {
	out := map[string]string{}
	for _, p := range ports {
		np := fmt.Sprintf("%d/%s", p.port, p.proto)
		switch hp, ok := asked[p.port]; {
		case ok:
			out[np] = strconv.Itoa(hp)
		case keep[np] != "":
			out[np] = keep[np]
		default:
			out[np] = strconv.Itoa(p.port)
		}
	}
	return out
}

// hostPortInError finds the 127.0.0.1 host port Docker names in a publishing error.
var hostPortInError = regexp.MustCompile(`(?:127\.0\.0\.1:|exposed port |privileged port )(\d+)`)

// refusedPort returns the entry of want (by "PORT/proto") whose host port Docker could not
// publish, when err says so; ok is false for any other error, or when that port is already one
// Docker picks.
func refusedPort(err error, want map[string]string) (string, bool) {
	s := err.Error()
	if !strings.Contains(s, "port is already allocated") && !strings.Contains(s, "address already in use") &&
		!strings.Contains(s, "cannot expose privileged port") && !strings.Contains(s, "permission denied") {
		return "", false
	}
	m := hostPortInError.FindStringSubmatch(s)
	for _, np := range slices.Sorted(maps.Keys(want)) {
		hp := want[np]
		if hp == "" {
			continue
		}
		if m == nil || m[1] == hp {
			return np, true // with no port named, the ports go one by one
		}
	}
	return "", false
}

// UpdateLoadBalancer follows a change of the nodes.
func (l *LoadBalancers) UpdateLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) error {
	_, err := l.EnsureLoadBalancer(ctx, cluster, svc, nodes)
	return err
}

// EnsureLoadBalancerDeleted removes svc's machine.
func (l *LoadBalancers) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.remove(ctx, l.name(svc))
}

// create makes and starts the machine, publishing its ports on the host ports of hostPorts (by
// "PORT/proto"; "" lets Docker pick one).
// create makes the machine; final says it stays (it is not about to be made again to pin the
// host ports Docker picks).
func (l *LoadBalancers) create(ctx context.Context, svc *v1.Service, name, hash string, ip netip.Addr, ports []svcPort, nodes []netip.Addr, hostPorts map[string]string, final bool) error {
	args := []string{"svclb"}
	exposed, bindings := nat.PortSet{}, nat.PortMap{}
	for _, p := range ports {
		args = append(args, "-port", fmt.Sprintf("%s/%d/%d", p.proto, p.port, p.nodePort))
		np := nat.Port(fmt.Sprintf("%d/%s", p.port, p.proto))
		exposed[np] = struct{}{}
		bindings[np] = []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: hostPorts[string(np)]}}
	}
	for _, n := range nodes {
		args = append(args, "-node", n.String())
	}
	no := false
	conf := &container.Config{
		Hostname:     name,
		Image:        l.Image,
		Entrypoint:   []string{contract.InitPath},
		Cmd:          args,
		ExposedPorts: exposed,
		Labels: map[string]string{
			contract.LabelCluster:          l.Cluster,
			contract.LabelNode:             name,
			contract.LabelRole:             contract.RoleServiceLB,
			contract.LabelService:          svc.Namespace + "/" + svc.Name,
			contract.LabelServiceConfig:    hash,
			contract.LabelServiceHostPorts: svc.Annotations[contract.AnnotationHostPorts],
			contract.LabelServiceLBFinal:   strconv.FormatBool(final),
		},
	}
	host := &container.HostConfig{
		NetworkMode:   container.NetworkMode(l.Network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		PortBindings:  bindings,
		Init:          &no,
	}
	netConf := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		l.Network: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip.String()}},
	}}
	resp, err := l.Docker.ContainerCreate(ctx, conf, host, netConf, nil, name)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := l.Docker.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		// Not left half made: the next try makes it anew.
		if rerr := l.Docker.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); rerr != nil {
			klog.ErrorS(rerr, "removing a load balancer that did not start", "machine", name)
		}
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// inspect returns the machine called name when it is this cluster's service load balancer.
func (l *LoadBalancers) inspect(ctx context.Context, name string) (container.InspectResponse, bool, error) {
	c, err := l.Docker.ContainerInspect(ctx, name)
	switch {
	case cerrdefs.IsNotFound(err):
		return c, false, nil
	case err != nil:
		return c, false, fmt.Errorf("inspect %s: %w", name, err)
	case strings.TrimPrefix(c.Name, "/") != name:
		return c, false, nil // an ID prefix matched
	case c.Config == nil || c.Config.Labels[contract.LabelCluster] != l.Cluster || c.Config.Labels[contract.LabelRole] != contract.RoleServiceLB:
		return c, false, fmt.Errorf("container %s is not a load balancer of cluster %s; not touching it", name, l.Cluster)
	}
	return c, true, nil
}

func (l *LoadBalancers) remove(ctx context.Context, name string) error {
	_, ok, err := l.inspect(ctx, name)
	if err != nil || !ok {
		return err
	}
	if err := l.Docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// nodeIPs are the InternalIPs of the nodes the service controller chose; with none (a single
// node: control planes carry node.kubernetes.io/exclude-from-external-load-balancers, as
// kubeadm's do), those of every node, as each runs kube-proxy.
func (l *LoadBalancers) nodeIPs(nodes []*v1.Node) ([]netip.Addr, error) {
	if len(nodes) == 0 && l.Nodes != nil {
		all, err := l.Nodes.List(labels.Everything())
		if err != nil {
			return nil, err
		}
		nodes = all
	}
	ips := nodelb.InternalIPs(nodes)
	if len(ips) == 0 {
		return nil, errors.New("no node has an InternalIP yet")
	}
	return ips, nil
}

// freeIP is the highest address of the network's upper half that no container has (see pickIP):
// the nodes take addresses from the bottom.
func (l *LoadBalancers) freeIP(ctx context.Context) (netip.Addr, error) {
	n, err := l.Docker.NetworkInspect(ctx, l.Network, network.InspectOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inspect network %s: %w", l.Network, err)
	}
	var subnet netip.Prefix
	for _, c := range n.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			subnet = p.Masked()
		}
	}
	if !subnet.IsValid() || subnet.Bits() > 28 {
		return netip.Addr{}, fmt.Errorf("network %s has no IPv4 subnet of 16 addresses or more", l.Network)
	}
	used := map[netip.Addr]bool{}
	for _, c := range n.Containers {
		if p, err := netip.ParsePrefix(c.IPv4Address); err == nil {
			used[p.Addr()] = true
		}
	}
	// Stopped machines keep their fixed addresses but are not on the network now.
	cs, err := l.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", contract.LabelCluster+"="+l.Cluster))})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list the machines of cluster %s: %w", l.Cluster, err)
	}
	for _, c := range cs {
		if c.NetworkSettings == nil {
			continue
		}
		if ep := c.NetworkSettings.Networks[l.Network]; ep != nil && ep.IPAMConfig != nil {
			if a, err := netip.ParseAddr(ep.IPAMConfig.IPv4Address); err == nil {
				used[a] = true
			}
		}
	}
	return pickIP(subnet, used)
}

// pickIP returns the highest address of subnet's upper half not in used, below the broadcast,
// the HA load balancer's, the cloud provider's and the local registry's (provision.Network's
// LoadBalancerIP, CloudProviderIP and RegistryIP), which are kept free even while their machines
// are stopped or not connected.
func pickIP(subnet netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	base := subnet.Addr().As4()
	b := binary.BigEndian.Uint32(base[:])
	size := uint32(1) << (32 - subnet.Bits())
	for v := b + size - 5; v >= b+size/2; v-- {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], v)
		ip := netip.AddrFrom4(a)
		if !used[ip] {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left for a load balancer in %s (%d LoadBalancer Services at most)", subnet, size/2-4)
}

type svcPort struct {
	proto    string
	port     int
	nodePort int
}

func (p svcPort) String() string { return fmt.Sprintf("%d/%s->%d", p.port, p.proto, p.nodePort) }

// servicePorts are svc's ports as the load balancer forwards them.
func servicePorts(svc *v1.Service) ([]svcPort, error) {
	var out []svcPort
	for _, p := range svc.Spec.Ports {
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("port %d: kubeforge's load balancers forward TCP and UDP, not %s", p.Port, p.Protocol)
		}
		if p.NodePort == 0 {
			return nil, fmt.Errorf("port %d has no node port: kubeforge's load balancers forward to node ports (leave spec.allocateLoadBalancerNodePorts unset or true)", p.Port)
		}
		out = append(out, svcPort{proto: proto, port: int(p.Port), nodePort: int(p.NodePort)})
	}
	if len(out) == 0 {
		return nil, errors.New("the Service has no ports")
	}
	return out, nil
}

// configHash identifies what a machine forwards.
func configHash(image string, ports []svcPort, nodes []netip.Addr, asked map[int]int) string {
	h := sha256.New()
	fmt.Fprintln(h, image)
	for _, p := range ports {
		fmt.Fprintln(h, p)
		if hp, ok := asked[p.port]; ok {
			fmt.Fprintln(h, "host", hp)
		}
	}
	for _, n := range nodes {
		fmt.Fprintln(h, n)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func status(ip netip.Addr) *v1.LoadBalancerStatus {
	vip := v1.LoadBalancerIPModeVIP
	return &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: ip.String(), IPMode: &vip}}}
}

// containerIP is c's address on network (its fixed one, also while stopped).
func containerIP(c container.InspectResponse, netName string) netip.Addr {
	if c.NetworkSettings == nil {
		return netip.Addr{}
	}
	ep := c.NetworkSettings.Networks[netName]
	if ep == nil {
		return netip.Addr{}
	}
	if ep.IPAMConfig != nil {
		if a, err := netip.ParseAddr(ep.IPAMConfig.IPv4Address); err == nil {
			return a
		}
	}
	a, _ := netip.ParseAddr(ep.IPAddress)
	return a
}

// hostPorts are the host ports c was given, by "PORT/proto".
func hostPorts(c container.InspectResponse) map[string]string {
	out := map[string]string{}
	add := func(m nat.PortMap) {
		for p, bs := range m {
			for _, b := range bs {
				if b.HostPort != "" && b.HostPort != "0" {
					out[string(p)] = b.HostPort
				}
			}
		}
	}
	if c.HostConfig != nil {
		add(c.HostConfig.PortBindings) // what was asked (a stopped container has only this)
	}
	if c.NetworkSettings != nil {
		add(c.NetworkSettings.Ports) // what Docker gave
	}
	return out
}
