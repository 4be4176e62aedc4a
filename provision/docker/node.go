package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/go-connections/nat"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// APIServerPort is the port the API server listens on inside a node.
const APIServerPort = 6443

// StopTimeout is how long Stop waits for the node's PID 1 to exit after SIGTERM before Docker
// kills it.
var StopTimeout = 10 * time.Second

// VolumeName is the volume holding a node's /var.
func VolumeName(node string) string { return node + "-var" }

// FreePort returns a TCP port that is free on 127.0.0.1 now (another process may take it before
// it is used).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portInUse(port int) error {
	return kferr.Environment("choose another with --api-port or free it",
		"port 127.0.0.1:%d is already in use: choose another with --api-port or free it", port)
}

// checkPort fails when port is taken on 127.0.0.1 or claimed by another kubeforge node (which may
// be stopped, so that nothing listens on it yet).
func (d *Driver) checkPort(ctx context.Context, port int) error {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", provision.LabelAPIPort+"="+strconv.Itoa(port)))})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs {
		return kferr.Environment("choose another with --api-port or free it",
			"port 127.0.0.1:%d is already in use by node %s of cluster %s: choose another with --api-port or free it",
			port, containerName(c.Names), c.Labels[provision.LabelCluster])
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return portInUse(port)
	}
	l.Close()
	return nil
}

// CreateNode creates (does not start) the node container cfg.Name with its /var volume
// <name>-var, on cfg.Network with the fixed address cfg.IP.
func (d *Driver) CreateNode(ctx context.Context, cfg provision.NodeConfig) (provision.Node, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if _, err := d.cli.ContainerInspect(ctx, cfg.Name); err == nil {
		return nil, kferr.Environment("delete the cluster it belongs to, or choose another name",
			"create node %s: a container with that name already exists", cfg.Name)
	} else if !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("create node %s: %w", cfg.Name, err)
	}
	if cfg.APIServerHostPort != 0 {
		if err := d.checkPort(ctx, cfg.APIServerHostPort); err != nil {
			return nil, err
		}
	}
	for _, pm := range cfg.Ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pm.HostPort)))
		if err != nil {
			hint := fmt.Sprintf("choose another host port in --port %d:%d, or free it", pm.HostPort, pm.NodePort)
			return nil, kferr.Environment(hint, "port 127.0.0.1:%d is already in use: %s", pm.HostPort, hint)
		}
		l.Close()
	}

	labels := map[string]string{
		provision.LabelCluster: cfg.Cluster,
		provision.LabelNode:    cfg.Name,
		provision.LabelRole:    cfg.Role,
	}
	if cfg.APIServerHostPort != 0 {
		labels[provision.LabelAPIPort] = strconv.Itoa(cfg.APIServerHostPort)
	}

	volName := VolumeName(cfg.Name)
	if err := d.freshVolume(ctx, cfg, volName); err != nil {
		return nil, err
	}
	cleanup := func() { _ = d.cli.VolumeRemove(context.WithoutCancel(ctx), volName, true) }

	no := false
	conf := &container.Config{
		Hostname: cfg.Name,
		Image:    cfg.Image,
		Labels:   labels,
	}
	host := &container.HostConfig{
		NetworkMode:   container.NetworkMode(cfg.Network.Name),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		CapAdd:        []string{"ALL"},
		CapDrop:       []string{"SYS_RESOURCE"},
		SecurityOpt:   []string{"seccomp=unconfined"},
		CgroupnsMode:  container.CgroupnsModePrivate,
		Tmpfs:         map[string]string{"/run": "", "/tmp": ""},
		Init:          &no,
		Resources: container.Resources{
			Devices: []container.DeviceMapping{{
				PathOnHost: "/dev/kmsg", PathInContainer: "/dev/kmsg", CgroupPermissions: "rwm",
			}},
			// Every device, as --privileged would allow: privileged pods (kube-proxy, CSI and
			// CNI plugins) have runc allow "a *:* rwm" in their own device cgroup, which a
			// child cgroup may only do when the node's allows it.
			DeviceCgroupRules: []string{"a *:* rwm"},
		},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: volName, Target: "/var"}},
	}
	if cfg.MilliCPUs > 0 {
		host.Resources.NanoCPUs = cfg.MilliCPUs * 1e6
	}
	if cfg.MemoryBytes > 0 {
		host.Resources.Memory = cfg.MemoryBytes
		host.Resources.MemorySwap = cfg.MemoryBytes // no swap on top
	}
	if fi, err := os.Stat("/lib/modules"); err == nil && fi.IsDir() {
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: "/lib/modules", Target: "/lib/modules", ReadOnly: true})
	}
	host.Mounts = append(host.Mounts, bindMounts(cfg.Mounts)...)
	publish := func(nodePort, hostPort int) {
		if conf.ExposedPorts == nil {
			conf.ExposedPorts, host.PortBindings = nat.PortSet{}, nat.PortMap{}
		}
		port := nat.Port(fmt.Sprintf("%d/tcp", nodePort))
		conf.ExposedPorts[port] = struct{}{}
		host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: "127.0.0.1", HostPort: strconv.Itoa(hostPort)})
	}
	if p := cfg.APIServerHostPort; p != 0 {
		publish(APIServerPort, p)
	}
	for _, pm := range cfg.Ports {
		publish(pm.NodePort, pm.HostPort)
	}
	netConf := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		cfg.Network.Name: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: cfg.IP.String()}},
	}}
	resp, err := d.cli.ContainerCreate(ctx, conf, host, netConf, nil, cfg.Name)
	if err != nil {
		cleanup()
		if cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "image") {
			return nil, kferr.Environment("build or load the node image first",
				"create node %s: image %s is not in Docker: %w", cfg.Name, cfg.Image, err)
		}
		return nil, fmt.Errorf("create node %s: %w", cfg.Name, err)
	}
	return &Node{d: d, id: resp.ID, name: cfg.Name, role: cfg.Role, cluster: cfg.Cluster,
		ip: cfg.IP, apiPort: cfg.APIServerHostPort}, nil
}

func validate(cfg provision.NodeConfig) error {
	switch {
	case cfg.Name == "":
		return kferr.Usage("create node: empty name")
	case cfg.Cluster == "":
		return kferr.Usage("create node %s: empty cluster", cfg.Name)
	case cfg.Image == "":
		return kferr.Usage("create node %s: empty image", cfg.Name)
	case cfg.Network.Name == "":
		return kferr.Usage("create node %s: no network", cfg.Name)
	case !cfg.IP.Is4():
		return kferr.Usage("create node %s: address %v is not IPv4", cfg.Name, cfg.IP)
	case cfg.Network.Subnet.IsValid() && !cfg.Network.Subnet.Contains(cfg.IP):
		return kferr.Usage("create node %s: address %s is not in network %s (%s)", cfg.Name, cfg.IP, cfg.Network.Name, cfg.Network.Subnet)
	case cfg.APIServerHostPort < 0 || cfg.APIServerHostPort > 65535:
		return kferr.Usage("create node %s: bad API server port %d", cfg.Name, cfg.APIServerHostPort)
	}
	for _, m := range cfg.Mounts {
		if !filepath.IsAbs(m.HostPath) || !path.IsAbs(m.ContainerPath) {
			return kferr.Usage("create node %s: mount %s:%s: both paths must be absolute", cfg.Name, m.HostPath, m.ContainerPath)
		}
	}
	return nil
}

// bindMounts are the Docker bind mounts of the node's host mounts. A missing host path is an
// error (Docker's default for --mount), not a directory Docker creates as root.
func bindMounts(ms []provision.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: mount.TypeBind, Source: m.HostPath, Target: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	return out
}

// freshVolume creates the node's /var volume. A volume left by an interrupted create or delete of
// the same node (same labels, and no container: checked by the caller) is replaced.
func (d *Driver) freshVolume(ctx context.Context, cfg provision.NodeConfig, name string) error {
	v, err := d.cli.VolumeInspect(ctx, name)
	switch {
	case err == nil:
		if v.Labels[provision.LabelCluster] != cfg.Cluster || v.Labels[provision.LabelNode] != cfg.Name {
			return kferr.Environment(fmt.Sprintf("remove it (docker volume rm %s) or choose another node name", name),
				"create node %s: volume %s already exists and is not this node's", cfg.Name, name)
		}
		if err := d.cli.VolumeRemove(ctx, name, false); err != nil {
			return fmt.Errorf("create node %s: remove stale volume %s: %w", cfg.Name, name, err)
		}
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("create node %s: inspect volume %s: %w", cfg.Name, name, err)
	}
	_, err = d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: map[string]string{
		provision.LabelCluster: cfg.Cluster,
		provision.LabelNode:    cfg.Name,
	}})
	if err != nil {
		return fmt.Errorf("create node %s: create volume %s: %w", cfg.Name, name, err)
	}
	return nil
}

// Nodes lists the node containers of a cluster, stopped ones included, in name order.
func (d *Driver) Nodes(ctx context.Context, cluster string) ([]provision.Node, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", provision.LabelCluster+"="+cluster))})
	if err != nil {
		return nil, fmt.Errorf("list nodes of cluster %s: %w", cluster, err)
	}
	nodes := make([]*Node, 0, len(cs))
	for _, c := range cs {
		nodes = append(nodes, nodeFromSummary(d, c))
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].name < nodes[j].name })
	out := make([]provision.Node, len(nodes))
	for i, n := range nodes {
		out[i] = n
	}
	return out, nil
}

// Node returns the node container named name.
func (d *Driver) Node(ctx context.Context, name string) (*Node, error) {
	c, err := d.inspectNode(ctx, name)
	if err != nil {
		return nil, err
	}
	return nodeFromInspect(d, c), nil
}

// inspectNode inspects a kubeforge node by name; not-found errors satisfy cerrdefs.IsNotFound.
func (d *Driver) inspectNode(ctx context.Context, name string) (container.InspectResponse, error) {
	c, err := d.cli.ContainerInspect(ctx, name)
	if err != nil {
		return c, fmt.Errorf("node %s: %w", name, err)
	}
	// Docker also matches IDs and ID prefixes: make sure this is the container by that name.
	if strings.TrimPrefix(c.Name, "/") != name {
		return c, fmt.Errorf("node %s: %w", name, notFound{"no such container: " + name})
	}
	if c.Config == nil || c.Config.Labels[provision.LabelNode] != name {
		return c, fmt.Errorf("container %s is not a kubeforge node (no %s label); not touching it", name, provision.LabelNode)
	}
	return c, nil
}

type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }
func (e notFound) NotFound()     {}

// Clusters lists the clusters that have containers, networks or volumes, in name order.
func (d *Driver) Clusters(ctx context.Context) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", provision.LabelCluster))
	seen := map[string]bool{}
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, c := range cs {
		seen[c.Labels[provision.LabelCluster]] = true
	}
	nets, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, n := range nets {
		seen[n.Labels[provision.LabelCluster]] = true
	}
	vols, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, v := range vols.Volumes {
		seen[v.Labels[provision.LabelCluster]] = true
	}
	delete(seen, "")
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// DeleteNode removes the node container (killing it if running) and its /var volume. A missing
// node is not an error; a container by that name that is not a kubeforge node is.
func (d *Driver) DeleteNode(ctx context.Context, name string) error {
	c, err := d.inspectNode(ctx, name)
	switch {
	case err == nil:
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("delete node %s: %w", name, err)
		}
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	vol := VolumeName(name)
	v, err := d.cli.VolumeInspect(ctx, vol)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete node %s: inspect volume %s: %w", name, vol, err)
	}
	if v.Labels[provision.LabelNode] != name {
		return nil // not ours
	}
	if err := d.cli.VolumeRemove(ctx, vol, true); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("delete node %s: remove volume %s: %w", name, vol, err)
	}
	return nil
}

func containerName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}

func nodeFromSummary(d *Driver, c container.Summary) *Node {
	n := &Node{d: d, id: c.ID, name: containerName(c.Names)}
	n.fromLabels(c.Labels)
	if c.NetworkSettings != nil {
		n.ip = endpointIP(c.NetworkSettings.Networks, n.cluster)
	}
	if n.apiPort == 0 {
		for _, p := range c.Ports {
			if p.PrivatePort == APIServerPort && p.Type == "tcp" && p.PublicPort != 0 {
				n.apiPort = int(p.PublicPort)
			}
		}
	}
	return n
}

func nodeFromInspect(d *Driver, c container.InspectResponse) *Node {
	n := &Node{d: d, id: c.ID, name: strings.TrimPrefix(c.Name, "/")}
	if c.Config != nil {
		n.fromLabels(c.Config.Labels)
	}
	if c.NetworkSettings != nil {
		n.ip = endpointIP(c.NetworkSettings.Networks, n.cluster)
	}
	if n.apiPort == 0 && c.HostConfig != nil {
		for _, b := range c.HostConfig.PortBindings[nat.Port(fmt.Sprintf("%d/tcp", APIServerPort))] {
			if p, err := strconv.Atoi(b.HostPort); err == nil && p != 0 {
				n.apiPort = p
			}
		}
	}
	return n
}

func (n *Node) fromLabels(l map[string]string) {
	n.cluster = l[provision.LabelCluster]
	n.role = l[provision.LabelRole]
	if p, err := strconv.Atoi(l[provision.LabelAPIPort]); err == nil {
		n.apiPort = p
	}
}

// endpointIP is the node's fixed address on its cluster network (kept while it is stopped).
func endpointIP(eps map[string]*network.EndpointSettings, cluster string) netip.Addr {
	pick := func(ep *network.EndpointSettings) netip.Addr {
		if ep == nil {
			return netip.Addr{}
		}
		if ep.IPAMConfig != nil {
			if a, err := netip.ParseAddr(ep.IPAMConfig.IPv4Address); err == nil {
				return a
			}
		}
		if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
			return a
		}
		return netip.Addr{}
	}
	if a := pick(eps[NetworkName(cluster)]); a.IsValid() {
		return a
	}
	names := make([]string, 0, len(eps))
	for k := range eps {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if a := pick(eps[k]); a.IsValid() {
			return a
		}
	}
	return netip.Addr{}
}

// Node is a node container.
type Node struct {
	d       *Driver
	id      string
	name    string
	role    string
	cluster string
	ip      netip.Addr
	apiPort int
}

var (
	_ provision.Node      = (*Node)(nil)
	_ provision.Inspector = (*Node)(nil)
)

// Inspect returns `docker inspect` of the node's container, indented.
func (n *Node) Inspect(ctx context.Context) ([]byte, error) {
	_, raw, err := n.d.cli.ContainerInspectWithRaw(ctx, n.id, false)
	if err != nil {
		return nil, fmt.Errorf("inspecting node %s: %w", n.name, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return raw, nil
	}
	return out.Bytes(), nil
}

func (n *Node) Name() string    { return n.name }
func (n *Node) Role() string    { return n.role }
func (n *Node) Cluster() string { return n.cluster }

// ID is the container's ID.
func (n *Node) ID() string { return n.id }

// IP is the node's fixed address on the cluster network.
func (n *Node) IP() netip.Addr { return n.ip }

// APIServerHostPort is the port on 127.0.0.1 the node's API server is published on, 0 if none.
func (n *Node) APIServerHostPort() int { return n.apiPort }

// State returns running, stopped (created or exited), missing, or other (paused, restarting...).
func (n *Node) State(ctx context.Context) (provision.State, error) {
	c, err := n.d.cli.ContainerInspect(ctx, n.id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return provision.StateMissing, nil
		}
		return "", fmt.Errorf("state of node %s: %w", n.name, err)
	}
	if c.State == nil {
		return provision.StateOther, nil
	}
	switch c.State.Status {
	case container.StateRunning:
		return provision.StateRunning, nil
	case container.StateCreated, container.StateExited:
		return provision.StateStopped, nil
	}
	return provision.StateOther, nil
}

// Start starts the node; starting a running node does nothing.
func (n *Node) Start(ctx context.Context) error {
	if err := n.d.cli.ContainerStart(ctx, n.id, container.StartOptions{}); err != nil {
		s := err.Error()
		if strings.Contains(s, "address already in use") || strings.Contains(s, "port is already allocated") {
			return kferr.WithHint(fmt.Errorf("start node %s: a port it publishes on 127.0.0.1 is already in use: %w", n.name, err),
				kferr.ExitEnvironment, "free the port, or delete the cluster and choose other ports (--api-port, --port)")
		}
		return fmt.Errorf("start node %s: %w", n.name, err)
	}
	return nil
}

// Stop stops the node: SIGTERM to its PID 1, SIGKILL after StopTimeout. Stopping a stopped node
// does nothing. A stopped node stays stopped when the Docker daemon restarts.
func (n *Node) Stop(ctx context.Context) error {
	secs := int(StopTimeout / time.Second)
	if err := n.d.cli.ContainerStop(ctx, n.id, container.StopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop node %s: %w", n.name, err)
	}
	return nil
}
