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

	"kubeforge.dev/kubeforge/contract"
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

// socketPath is the daemon's socket on the daemon's host: that of DOCKER_HOST when it is a unix
// socket, else Docker's default (a remote daemon listens there too).
func (d *Driver) socketPath() string {
	if p, ok := strings.CutPrefix(d.cli.DaemonHost(), "unix://"); ok {
		return p
	}
	return "/var/run/docker.sock"
}

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
	// Docker also matches IDs and ID prefixes: only a container by that very name is in the way.
	if c, err := d.cli.ContainerInspect(ctx, cfg.Name); err == nil && strings.TrimPrefix(c.Name, "/") == cfg.Name {
		return nil, nameTaken(cfg, c)
	} else if err != nil && !cerrdefs.IsNotFound(err) {
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
	volLabels := volumeLabels(cfg.Cluster, cfg.Name)
	madeVolume, err := d.newVolume(ctx, cfg, volName, volLabels)
	if err != nil {
		return nil, err
	}
	// A volume this create made is its own: a failed create removes it (an in-use volume
	// stays); a replaced machine's data, found there, stays whatever happens.
	cleanup := func() {
		if madeVolume {
			if err := d.cli.VolumeRemove(context.WithoutCancel(ctx), volName, false); err != nil && !cerrdefs.IsNotFound(err) {
				d.log.Warnf("volume %s may be left (remove it with `kubeforge delete --name %s`): %v", volName, cfg.Cluster, err)
			}
		}
	}

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
		SecurityOpt:   SecurityOpt,
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
		// Should the volume be gone by now, Docker makes it again: with the node's labels, so
		// that delete finds it.
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: volName, Target: "/var",
			VolumeOptions: &mount.VolumeOptions{Labels: volLabels}}},
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
	if cfg.Role == provision.RoleCloudProvider {
		// The cloud provider makes the Services' load balancers: it talks to this daemon.
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: d.socketPath(), Target: contract.DockerSocket})
	}
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
	sctx, cancel := settling(ctx)
	resp, err := d.cli.ContainerCreate(sctx, conf, host, netConf, nil, cfg.Name)
	cancel()
	if err == nil && ctx.Err() != nil { // made, but the create was interrupted meanwhile
		if rerr := d.removeContainer(context.WithoutCancel(ctx), resp.ID); rerr != nil {
			d.log.Warnf("removing container %s, made as the create was interrupted: %v", cfg.Name, rerr)
		}
		err = ctx.Err()
	}
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

// settleTimeout bounds a Docker call that makes something (see settling).
const settleTimeout = 2 * time.Minute

// settling is the context of a Docker call that makes a container or a volume: it is not cut
// short when ctx ends (Ctrl-C), because the daemon goes on with a request its client has left,
// and what it made then would be known to nobody (a rollback removes only what a create
// returned). The caller checks ctx once the call has returned and removes what it made.
func settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

func validate(cfg provision.NodeConfig) error {
	switch {
	case cfg.Name == "":
		return kferr.Usage("create node: empty name")
	case cfg.Cluster == "":
		return kferr.Usage("create node %s: empty cluster", cfg.Name)
	case provision.CheckNodeLabel(cfg.Cluster, cfg.Name) != nil:
		return kferr.Usage("create node %s: %v", cfg.Name, provision.CheckNodeLabel(cfg.Cluster, cfg.Name))
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

// SecurityOpt are the node containers' security options: what --privileged implies, which
// cannot be used (it fails without CAP_SYS_RESOURCE): no seccomp filter (pod sandboxes join
// session keyrings), no AppArmor profile (hosts with AppArmor, e.g. Ubuntu: docker-default denies
// mounts), no SELinux labelling (hosts with SELinux, e.g. Fedora). Hosts without AppArmor or
// SELinux accept and ignore the last two.
var SecurityOpt = []string{"seccomp=unconfined", "apparmor=unconfined", "label=disable"}

// nameTaken is the error of a create whose container name is taken.
func nameTaken(cfg provision.NodeConfig, c container.InspectResponse) error {
	var l map[string]string
	if c.Config != nil {
		l = c.Config.Labels
	}
	owner := l[provision.LabelCluster]
	switch {
	case l[provision.LabelNode] == "" || provision.CheckClusterLabel(owner) != nil:
		return kferr.Environment("choose another cluster name, or remove that container if you do not need it",
			"create node %s: a container with that name already exists and is not a kubeforge node", cfg.Name)
	case owner != cfg.Cluster:
		return kferr.Environment(fmt.Sprintf("choose another cluster name (node names are <cluster>, <cluster>-mNN): %s is a node of cluster %s", cfg.Name, owner),
			"create node %s: a container with that name already exists: node %s of cluster %s", cfg.Name, l[provision.LabelNode], owner)
	}
	return kferr.Environment(fmt.Sprintf("delete cluster %s (kubeforge delete --name %s), or choose another name", owner, owner),
		"create node %s: a container with that name already exists (a node of cluster %s)", cfg.Name, owner)
}

func volumeLabels(cluster, node string) map[string]string {
	return map[string]string{provision.LabelCluster: cluster, provision.LabelNode: node}
}

// ownedVolume says whether v carries the labels of node of cluster.
func ownedVolume(v volume.Volume, cluster, node string) bool {
	return v.Labels[provision.LabelCluster] == cluster && v.Labels[provision.LabelNode] == node
}

// newVolume creates the node's /var volume, labelled in the call that creates it. A volume of
// that name that is already there is neither reused nor removed (see existingVolume).
func (d *Driver) newVolume(ctx context.Context, cfg provision.NodeConfig, name string, labels map[string]string) (made bool, _ error) {
	v, err := d.cli.VolumeInspect(ctx, name)
	switch {
	case err == nil && cfg.KeepData && ownedVolume(v, cfg.Cluster, cfg.Name):
		return false, nil // the data of the machine this one replaces
	case err == nil:
		return false, d.existingVolume(cfg, v)
	case !cerrdefs.IsNotFound(err):
		return false, fmt.Errorf("create node %s: inspect volume %s: %w", cfg.Name, name, err)
	}
	sctx, cancel := settling(ctx)
	v, err = d.cli.VolumeCreate(sctx, volume.CreateOptions{Name: name, Labels: labels})
	cancel()
	if err != nil {
		return false, fmt.Errorf("create node %s: create volume %s: %w", cfg.Name, name, err)
	}
	if ctx.Err() != nil { // made, but the create was interrupted meanwhile
		if ownedVolume(v, cfg.Cluster, cfg.Name) {
			_ = d.cli.VolumeRemove(context.WithoutCancel(ctx), name, false)
		}
		return false, fmt.Errorf("create node %s: %w", cfg.Name, ctx.Err())
	}
	// Docker answers a create of a volume that exists (made since it was inspected) with that
	// volume and its own labels.
	if !ownedVolume(v, cfg.Cluster, cfg.Name) {
		return false, d.existingVolume(cfg, v)
	}
	return true, nil
}

// existingVolume is the error of a create that finds the node's volume name taken, by v. A volume
// of this very node (an earlier node by that name whose container was removed) is not reused: its
// etcd, kubelet and containerd state belong to the old node and its certificates. Nor is it
// removed, by this create or by this driver's rollback of it (DeleteNode, DeleteNetwork): it may
// hold data the user wants. Anything else by that name is not kubeforge's to touch.
func (d *Driver) existingVolume(cfg provision.NodeConfig, v volume.Volume) error {
	if ownedVolume(v, cfg.Cluster, cfg.Name) {
		d.keptMu.Lock()
		d.kept[v.Name] = true
		d.keptMu.Unlock()
		return kferr.Environment(
			fmt.Sprintf("if cluster %s is not in use, `kubeforge delete --name %s` removes it with the rest of the cluster; else remove the volume alone: docker volume rm %s", cfg.Cluster, cfg.Cluster, v.Name),
			"create node %s: volume %s of an earlier node %s of cluster %s is still there (its container was removed); not reusing it (its state belongs to the old node), not removing it (it may hold data you want)",
			cfg.Name, v.Name, cfg.Name, cfg.Cluster)
	}
	owner := "it has no kubeforge labels"
	if c, n := v.Labels[provision.LabelCluster], v.Labels[provision.LabelNode]; c != "" || n != "" {
		owner = fmt.Sprintf("its labels name node %q of cluster %q", n, c)
	}
	return kferr.Environment(fmt.Sprintf("choose another cluster name; or, if you do not need that volume, remove it yourself: docker volume rm %s", v.Name),
		"create node %s: volume %s already exists and is not this node's (%s); kubeforge does not use or remove it", cfg.Name, v.Name, owner)
}

// isKept says whether this driver refused to reuse the volume name (see existingVolume).
func (d *Driver) isKept(name string) bool {
	d.keptMu.Lock()
	defer d.keptMu.Unlock()
	return d.kept[name]
}

// checkNodeLabels checks the labels of the container name as a kubeforge node's.
func checkNodeLabels(labels map[string]string, name string) error {
	node := labels[provision.LabelNode]
	if err := provision.CheckNodeLabel(labels[provision.LabelCluster], node); err != nil {
		return err
	}
	if node != name {
		return fmt.Errorf("its node label %q is not its name", node)
	}
	return nil
}

// Nodes lists the node containers of a cluster, stopped ones included, in name order. Containers
// whose labels are not those of a node of the cluster (see provision.CheckNodeLabel) are skipped.
func (d *Driver) Nodes(ctx context.Context, cluster string) ([]provision.Node, error) {
	if err := provision.CheckClusterLabel(cluster); err != nil {
		return nil, kferr.Usage("list nodes: %v", err)
	}
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", provision.LabelCluster+"="+cluster))})
	if err != nil {
		return nil, fmt.Errorf("list nodes of cluster %s: %w", cluster, err)
	}
	nodes := make([]*Node, 0, len(cs))
	for _, c := range cs {
		if err := checkNodeLabels(c.Labels, containerName(c.Names)); err != nil {
			d.log.Debugf("docker: skipping container %s (%.12s) of cluster %s: %v", containerName(c.Names), c.ID, cluster, err)
			continue
		}
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

// Clusters lists the clusters that have containers, networks or volumes, in name order. Objects
// whose cluster label is not a valid cluster name are skipped.
func (d *Driver) Clusters(ctx context.Context) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", provision.LabelCluster))
	seen := map[string]bool{}
	add := func(kind, name string, labels map[string]string) {
		c := labels[provision.LabelCluster]
		if err := provision.CheckClusterLabel(c); err != nil {
			d.log.Debugf("docker: skipping %s %s: %v", kind, name, err)
			return
		}
		seen[c] = true
	}
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, c := range cs {
		add("container", containerName(c.Names), c.Labels)
	}
	nets, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, n := range nets {
		add("network", n.Name, n.Labels)
	}
	vols, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, v := range vols.Volumes {
		add("volume", v.Name, v.Labels)
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// DeleteNode removes the node container name of cluster (killing it if running) and its /var
// volume, also when the container is gone. A missing node is not an error. A container by that
// name that is not this cluster's node is not touched: that is an error, and nothing is removed;
// so is a volume by that name that is not this node's (its own container is removed first). A
// volume CreateNode refused to reuse is left by this driver (see existingVolume).
func (d *Driver) DeleteNode(ctx context.Context, cluster, name string) error {
	if err := provision.CheckNodeLabel(cluster, name); err != nil {
		return kferr.Usage("delete node %s of cluster %s: %v", name, cluster, err)
	}
	var id string
	c, err := d.cli.ContainerInspect(ctx, name)
	switch {
	case err == nil && strings.TrimPrefix(c.Name, "/") == name:
		var l map[string]string
		if c.Config != nil {
			l = c.Config.Labels
		}
		if l[provision.LabelCluster] != cluster || l[provision.LabelNode] != name {
			what := "is not a kubeforge node"
			if owner := l[provision.LabelCluster]; l[provision.LabelNode] != "" && owner != "" {
				what = fmt.Sprintf("belongs to cluster %q (node %q), not to cluster %s", owner, l[provision.LabelNode], cluster)
			}
			return kferr.Environment("nothing to do for this cluster: that container is not one of its nodes",
				"delete node %s of cluster %s: container %s %s; not removing it", name, cluster, name, what)
		}
		id = c.ID
	case err == nil: // an ID prefix matched, not a name
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	if id != "" {
		if err := d.removeContainer(ctx, id); err != nil {
			return fmt.Errorf("delete node %s: %w", name, err)
		}
	}
	vol := VolumeName(name)
	v, err := d.cli.VolumeInspect(ctx, vol)
	switch {
	case cerrdefs.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("delete node %s: inspect volume %s: %w", name, vol, err)
	case !ownedVolume(v, cluster, name):
		return kferr.Environment(fmt.Sprintf("if you do not need that volume, remove it yourself: docker volume rm %s", vol),
			"delete node %s of cluster %s: volume %s is not this node's (labels %s=%q, %s=%q); not removing it",
			name, cluster, vol, provision.LabelCluster, v.Labels[provision.LabelCluster], provision.LabelNode, v.Labels[provision.LabelNode])
	case d.isKept(vol):
		d.log.Debugf("docker: keeping volume %s: it was there before this command", vol)
		return nil
	}
	if err := d.cli.VolumeRemove(ctx, vol, false); err != nil && !cerrdefs.IsNotFound(err) {
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

// PublishedPorts is provision.Publisher: the host ports Docker gave the container's ports.
func (n *Node) PublishedPorts(ctx context.Context) (map[string]int, error) {
	c, err := n.d.cli.ContainerInspect(ctx, n.id)
	if err != nil {
		return nil, fmt.Errorf("inspecting %s: %w", n.name, err)
	}
	out := map[string]int{}
	if c.NetworkSettings != nil {
		for p, bs := range c.NetworkSettings.Ports {
			for _, b := range bs {
				if hp, err := strconv.Atoi(b.HostPort); err == nil && hp != 0 {
					out[string(p)] = hp
				}
			}
		}
	}
	return out, nil
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

// removeContainer removes a container (forced, with its anonymous volumes). A removal already in
// progress (another kubeforge, or one that quit at its second Ctrl-C, asked first: Docker goes on
// without it) is waited for, bounded by ctx and a minute.
func (d *Driver) removeContainer(ctx context.Context, id string) error {
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	if !cerrdefs.IsConflict(err) && !strings.Contains(err.Error(), "already in progress") {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if _, ierr := d.cli.ContainerInspect(wctx, id); cerrdefs.IsNotFound(ierr) {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%w (still being removed a minute later)", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ReplaceNode removes the container of node cfg.Name (it must be this cluster's) and makes it
// anew from cfg (a new image, say) over the same /var volume: etcd, the kubelet's state, the
// images and the node-local volumes stay. The new container is not started.
func (d *Driver) ReplaceNode(ctx context.Context, cfg provision.NodeConfig) (provision.Node, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	c, err := d.cli.ContainerInspect(ctx, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("replace node %s: %w", cfg.Name, err)
	}
	if l := c.Config.Labels; l[provision.LabelCluster] != cfg.Cluster || l[provision.LabelNode] != cfg.Name {
		return nil, kferr.Environment("nothing to do for this cluster: that container is not one of its nodes",
			"replace node %s of cluster %s: container %s is not that node; not touching it", cfg.Name, cfg.Cluster, cfg.Name)
	}
	if err := d.cli.ContainerStop(ctx, c.ID, container.StopOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("replace node %s: stopping it: %w", cfg.Name, err)
	}
	// Removing the container, not its named volume (RemoveVolumes removes anonymous ones only).
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("replace node %s: removing its container: %w", cfg.Name, err)
	}
	cfg.KeepData = true
	return d.CreateNode(ctx, cfg)
}
