package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// DriverName is the VM driver's name as users type it (--driver kvm).
const DriverName = "kvm"

// PoolName and PoolPath are the storage pool kubeforge keeps its volumes in: the node images'
// disks and kernels (shared by clusters, like Docker's images) and each node's disk and seed.
const (
	PoolName = "kubeforge"
	PoolPath = "/var/lib/libvirt/images/kubeforge"
)

// Defaults of a node VM with no cpus/memory given.
const (
	DefaultVCPUs     = 2
	DefaultMemoryMiB = 2048
)

// Options configure the driver.
type Options struct {
	// URI is the libvirt daemon's (default DefaultURI).
	URI string
	// Accel is AccelKVM or AccelTCG; empty means KVM, which Ping checks the host has.
	Accel string
	// KeysDir returns the directory of a cluster's SSH keys (kept with its other state).
	KeysDir func(cluster string) string
	Log     *ui.Logger
}

// Driver is the libvirt VM driver: each node is a domain booting the VM node image's kernel with
// its disk (a copy-on-write volume over the image's), a seed disk carrying its first-boot files,
// on a NAT network of the cluster's own. The host reaches nodes at their addresses there, over
// SSH with keys made for the cluster. It is safe for concurrent use.
type Driver struct {
	opts Options
	uri  *url.URL

	mu   sync.Mutex
	conn *golibvirt.Libvirt
	// imageMu serializes uploading the image volumes.
	imageMu sync.Mutex
	keys    map[string]*Keys
	// made are the pool volumes of nodes (disks, seeds) this driver created: the only ones
	// DeleteNode removes when their domain is gone (volumes carry no labels: without the domain
	// nothing says whose they are).
	made map[string]bool
}

var _ provision.Driver = (*Driver)(nil)

// New returns a driver for opts; it connects when first used.
func New(opts Options) (*Driver, error) {
	if opts.URI == "" {
		opts.URI = DefaultURI
	}
	u, err := ParseURI(opts.URI)
	if err != nil {
		return nil, err
	}
	switch opts.Accel {
	case "", AccelKVM, AccelTCG:
	default:
		return nil, kferr.Usage("--accel %q is not one of %s (hardware virtualization) or %s (software emulation, slow)", opts.Accel, AccelKVM, AccelTCG)
	}
	if opts.Log == nil {
		opts.Log = ui.Discard()
	}
	if opts.KeysDir == nil {
		return nil, fmt.Errorf("libvirt driver: no KeysDir")
	}
	return &Driver{opts: opts, uri: u, keys: map[string]*Keys{}, made: map[string]bool{}}, nil
}

// Name returns "kvm".
func (d *Driver) Name() string { return DriverName }

// URI is the libvirt URI the driver uses.
func (d *Driver) URI() string { return d.opts.URI }

// Accel is the acceleration domains are made with.
func (d *Driver) Accel() string {
	if d.opts.Accel == "" {
		return AccelKVM
	}
	return d.opts.Accel
}

// sshTimeout bounds a connection to a node's SSH server: dial and handshake. A CI run saw a
// handshake with a busy emulated node (control plane, kubelet and a pod on it) take over 10 s;
// 16 s per `kubeforge ssh` was usual there.
func (d *Driver) sshTimeout() time.Duration {
	if d.Accel() == AccelTCG {
		return 2 * time.Minute
	}
	return 15 * time.Second
}

// DirectAccess: the host reaches VM nodes at their addresses on the cluster network.
func (d *Driver) DirectAccess() bool { return true }

// Close disconnects from libvirt.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		err := d.conn.Disconnect()
		d.conn = nil
		return err
	}
	return nil
}

// lv returns the connection, connecting first (again, after it broke).
func (d *Driver) lv(ctx context.Context) (*golibvirt.Libvirt, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		select {
		case <-d.conn.Disconnected():
			d.conn = nil
		default:
			return d.conn, nil
		}
	}
	c, err := Connect(ctx, d.opts.URI)
	if err != nil {
		return nil, err
	}
	d.conn = c
	return c, nil
}

// Ping connects and checks that the hypervisor can run the domains: qemu is installed and, unless
// software emulation was asked for, KVM is available.
func (d *Driver) Ping(ctx context.Context) error {
	l, err := d.lv(ctx)
	if err != nil {
		return err
	}
	capsXML, err := l.ConnectGetCapabilities()
	if err != nil {
		return fmt.Errorf("reading libvirt's capabilities at %s: %w", redacted(d.uri), err)
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(capsXML); err != nil {
		return fmt.Errorf("parsing libvirt's capabilities: %w", err)
	}
	hasArch, hasKVM := false, false
	for _, g := range caps.Guests {
		if g.Arch.Name != "x86_64" {
			continue
		}
		hasArch = true
		for _, dom := range g.Arch.Domains {
			if dom.Type == "kvm" {
				hasKVM = true
			}
		}
	}
	if !hasArch {
		return kferr.Environment(fixFor(d.uri, "install qemu on the hypervisor: apt-get install -y qemu-system-x86, then restart libvirtd"),
			"libvirt at %s cannot run x86_64 machines: qemu-system-x86 is not installed", redacted(d.uri))
	}
	if d.Accel() == AccelKVM && (!hasKVM || (isLocal(d.uri) && !kvmUsable())) {
		return kferr.Environment("enable hardware virtualization (VT-x/AMD-V in the firmware, the kvm_intel or kvm_amd module, access to /dev/kvm), or pass --accel tcg to use qemu's software emulation (much slower)",
			"the hypervisor at %s has no hardware virtualization (KVM, /dev/kvm)", redacted(d.uri))
	}
	return nil
}

func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// HostCapacity is zero: every VM is sized on its own.
func (d *Driver) HostCapacity(context.Context) (provision.Capacity, error) {
	return provision.Capacity{}, nil
}

// NetworkName is a cluster's libvirt network.
func NetworkName(cluster string) string { return "kubeforge-" + cluster }

// bridgeName is the network's bridge on the hypervisor (at most 15 characters).
func bridgeName(cluster string) string {
	h := sha256.Sum256([]byte(cluster))
	return "kf-" + hex.EncodeToString(h[:])[:10]
}

// SubnetCandidates are the subnets a VM cluster network may get: 192.168.<50..248 step 9>.0/24,
// between the Docker driver's.
func SubnetCandidates() []netip.Prefix {
	var out []netip.Prefix
	for o := 50; o <= 248; o += 9 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(o), 0}), 24))
	}
	return out
}

// EnsureNetwork returns the cluster's network, defining and starting it when needed.
func (d *Driver) EnsureNetwork(ctx context.Context, cluster string) (provision.Network, error) {
	l, err := d.lv(ctx)
	if err != nil {
		return provision.Network{}, err
	}
	name := NetworkName(cluster)
	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if err != nil {
		return provision.Network{}, fmt.Errorf("listing libvirt networks: %w", err)
	}
	var taken []netip.Prefix
	for _, n := range nets {
		x, err := l.NetworkGetXMLDesc(n, 0)
		if err != nil {
			continue
		}
		var nx libvirtxml.Network
		if nx.Unmarshal(x) != nil {
			continue
		}
		for _, ip := range nx.IPs {
			a, err := netip.ParseAddr(ip.Address)
			if err != nil || !a.Is4() {
				continue
			}
			bits := int(ip.Prefix)
			if bits == 0 && ip.Netmask != "" {
				m := net.IPMask(net.ParseIP(ip.Netmask).To4())
				bits, _ = m.Size()
			}
			p := netip.PrefixFrom(a, bits).Masked()
			if n.Name == name {
				if err := d.startNetwork(l, n); err != nil {
					return provision.Network{}, err
				}
				return provision.Network{Name: name, Subnet: p, Gateway: a}, nil
			}
			taken = append(taken, p)
		}
	}
	if isLocal(d.uri) {
		if hp, err := provision.HostPrefixes(); err == nil {
			taken = append(taken, hp...)
		}
	}
	var subnet netip.Prefix
	for _, c := range SubnetCandidates() {
		if !overlaps(c, taken) {
			subnet = c
			break
		}
	}
	if !subnet.IsValid() {
		return provision.Network{}, kferr.Environment("delete clusters you no longer need (`kubeforge delete --all`) or unused libvirt networks (`virsh net-list --all`)",
			"no free 192.168.x.0/24 subnet for cluster %s's network", cluster)
	}
	gw := subnet.Addr().Next()
	x, err := NetworkXML(NetworkSpec{Name: name, Labels: Labels{Cluster: cluster}, Subnet: subnet, Gateway: gw, Bridge: bridgeName(cluster)})
	if err != nil {
		return provision.Network{}, err
	}
	n, err := l.NetworkDefineXML(x)
	if err != nil {
		return provision.Network{}, fmt.Errorf("defining network %s: %w", name, err)
	}
	if err := d.startNetwork(l, n); err != nil {
		_ = l.NetworkUndefine(n) // made by this call: leave nothing
		return provision.Network{}, err
	}
	return provision.Network{Name: name, Subnet: subnet, Gateway: gw, Created: true}, nil
}

func overlaps(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if t.IsValid() && p.Overlaps(t) {
			return true
		}
	}
	return false
}

func (d *Driver) startNetwork(l *golibvirt.Libvirt, n golibvirt.Network) error {
	active, err := l.NetworkIsActive(n)
	if err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if active == 1 {
		return nil
	}
	if err := l.NetworkCreate(n); err != nil {
		hint := "look at libvirtd's log"
		if strings.Contains(err.Error(), "dnsmasq") {
			hint = "install dnsmasq on the hypervisor: apt-get install -y dnsmasq-base"
		}
		return kferr.Environment(hint, "starting network %s: %v", n.Name, err)
	}
	_ = l.NetworkSetAutostart(n, 1)
	return nil
}

// DeleteNetwork removes the cluster's network and SSH keys; a missing network is not an error, a
// network of that name without the cluster's label is (it is not removed).
func (d *Driver) DeleteNetwork(ctx context.Context, cluster string) error {
	l, err := d.lv(ctx)
	if err != nil {
		return err
	}
	if err := provision.CheckClusterLabel(cluster); err != nil {
		return kferr.Usage("delete network: %v", err)
	}
	n, err := l.NetworkLookupByName(NetworkName(cluster))
	if err == nil {
		// The label, not the name, says whose it is.
		if ok, err := d.owned(l, n, cluster); err != nil {
			return err
		} else if !ok {
			return kferr.Environment(fmt.Sprintf("if you do not need it, remove it yourself: virsh net-destroy %s; virsh net-undefine %s", n.Name, n.Name),
				"delete network %s: not made by kubeforge for cluster %s (no such label in its metadata); not removing it", n.Name, cluster)
		}
		if active, _ := l.NetworkIsActive(n); active == 1 {
			if err := l.NetworkDestroy(n); err != nil && !notFound(err) {
				return fmt.Errorf("stopping network %s: %w", n.Name, err)
			}
		}
		if err := l.NetworkUndefine(n); err != nil && !notFound(err) {
			return fmt.Errorf("removing network %s: %w", n.Name, err)
		}
	} else if !notFound(err) {
		return fmt.Errorf("looking up network %s: %w", NetworkName(cluster), err)
	}
	d.mu.Lock()
	delete(d.keys, cluster)
	d.mu.Unlock()
	return os.RemoveAll(d.opts.KeysDir(cluster))
}

// owned says whether the network carries kubeforge's labels for cluster.
func (d *Driver) owned(l *golibvirt.Libvirt, n golibvirt.Network, cluster string) (bool, error) {
	x, err := l.NetworkGetXMLDesc(n, 0)
	if err != nil {
		return false, fmt.Errorf("reading network %s: %w", n.Name, err)
	}
	var nx libvirtxml.Network
	if err := nx.Unmarshal(x); err != nil || nx.Metadata == nil {
		return false, nil
	}
	lab, ok := ParseLabels(nx.Metadata.XML)
	return ok && lab.Cluster == cluster, nil
}

// domainInfo is a kubeforge domain as read from libvirt.
type domainInfo struct {
	dom    golibvirt.Domain
	labels Labels
	disks  []string // paths of its disks
}

// domains lists kubeforge's domains (all clusters when cluster is empty), in name order.
func (d *Driver) domains(ctx context.Context, cluster string) ([]domainInfo, error) {
	l, err := d.lv(ctx)
	if err != nil {
		return nil, err
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("listing libvirt domains: %w", err)
	}
	var out []domainInfo
	for _, dom := range doms {
		di, ok, err := d.describe(l, dom)
		if err != nil {
			if notFound(err) {
				continue // removed meanwhile
			}
			return nil, err
		}
		if ok && (cluster == "" || di.labels.Cluster == cluster) {
			out = append(out, di)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dom.Name < out[j].dom.Name })
	return out, nil
}

func (d *Driver) describe(l *golibvirt.Libvirt, dom golibvirt.Domain) (domainInfo, bool, error) {
	x, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return domainInfo{}, false, err
	}
	var dx libvirtxml.Domain
	if err := dx.Unmarshal(x); err != nil || dx.Metadata == nil {
		return domainInfo{}, false, nil
	}
	lab, ok := ParseLabels(dx.Metadata.XML)
	if !ok {
		return domainInfo{}, false, nil
	}
	if err := checkDomainLabels(lab, dom.Name); err != nil {
		d.opts.Log.Debugf("libvirt: skipping domain %s: %v", dom.Name, err)
		return domainInfo{}, false, nil
	}
	di := domainInfo{dom: dom, labels: lab}
	if dx.Devices != nil {
		for _, disk := range dx.Devices.Disks {
			if disk.Source != nil && disk.Source.File != nil {
				di.disks = append(di.disks, disk.Source.File.File)
			}
		}
	}
	return di, true, nil
}

// checkDomainLabels checks the labels of the domain name as a kubeforge node's: they become
// paths (the cluster's state) and names.
func checkDomainLabels(lab Labels, name string) error {
	if err := provision.CheckNodeLabel(lab.Cluster, lab.Node); err != nil {
		return err
	}
	if lab.Node != name {
		return fmt.Errorf("its node label %q is not its name", lab.Node)
	}
	return nil
}

// Nodes lists the cluster's node VMs, in name order; domains whose labels are not those of a
// node of the cluster are skipped.
func (d *Driver) Nodes(ctx context.Context, cluster string) ([]provision.Node, error) {
	if err := provision.CheckClusterLabel(cluster); err != nil {
		return nil, kferr.Usage("list nodes: %v", err)
	}
	doms, err := d.domains(ctx, cluster)
	if err != nil {
		return nil, err
	}
	out := make([]provision.Node, 0, len(doms))
	for _, di := range doms {
		n, err := d.nodeFor(di.labels)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Clusters lists the clusters with domains or networks here; names that are not valid cluster
// names are skipped.
func (d *Driver) Clusters(ctx context.Context) ([]string, error) {
	doms, err := d.domains(ctx, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, di := range doms {
		seen[di.labels.Cluster] = true
	}
	l, err := d.lv(ctx)
	if err != nil {
		return nil, err
	}
	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if err != nil {
		return nil, fmt.Errorf("listing libvirt networks: %w", err)
	}
	for _, n := range nets {
		c, ok := strings.CutPrefix(n.Name, "kubeforge-")
		if !ok {
			continue
		}
		if err := provision.CheckClusterLabel(c); err != nil {
			d.opts.Log.Debugf("libvirt: skipping network %s: %v", n.Name, err)
			continue
		}
		if ok, err := d.owned(l, n, c); err == nil && ok {
			seen[c] = true
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

func (d *Driver) clusterKeys(cluster string) (*Keys, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k, ok := d.keys[cluster]; ok {
		return k, nil
	}
	k, err := LoadOrCreateKeys(d.opts.KeysDir(cluster))
	if err != nil {
		return nil, fmt.Errorf("SSH keys of cluster %s: %w", cluster, err)
	}
	d.keys[cluster] = k
	return k, nil
}

func (d *Driver) nodeFor(lab Labels) (*Node, error) {
	keys, err := d.clusterKeys(lab.Cluster)
	if err != nil {
		return nil, err
	}
	ip, _ := netip.ParseAddr(lab.IP)
	n := &Node{d: d, name: lab.Node, cluster: lab.Cluster, role: lab.Role, ip: ip}
	var dialer net.Dialer
	n.ssh = &sshConn{node: lab.Node, addr: net.JoinHostPort(lab.IP, "22"), keys: keys, dial: dialer.DialContext, timeout: d.sshTimeout()}
	return n, nil
}

// volume names in the pool.
func nodeDiskName(node string) string { return node + ".qcow2" }
func nodeSeedName(node string) string { return node + "-seed.tar" }
func imageVolumeNames(key string) (disk, kernel, initrd, done string) {
	p := "kubeforge-node-" + key
	return p + ".qcow2", p + ".vmlinuz", p + ".initrd", p + ".complete"
}

// ConsolePath is where a node's serial console (kernel and supervisor output) is written on the
// hypervisor.
func ConsolePath(node string) string {
	return "/var/log/libvirt/qemu/kubeforge-" + node + "-console.log"
}

// CreateNode defines the node's domain (not started) and its disk; the seed disk is written when
// it starts.
func (d *Driver) CreateNode(ctx context.Context, cfg provision.NodeConfig) (provision.Node, error) {
	if err := provision.CheckNodeLabel(cfg.Cluster, cfg.Name); err != nil {
		return nil, kferr.Usage("create node %s: %v", cfg.Name, err)
	}
	if len(cfg.Mounts) > 0 {
		return nil, kferr.Usage("node %s: host mounts are not supported by the %s driver (VMs do not share the host's files); remove the mounts", cfg.Name, DriverName)
	}
	if len(cfg.Ports) > 0 {
		return nil, kferr.Usage("node %s: --port is not supported by the %s driver: reach NodePorts at the node's address (`kubeforge status`)", cfg.Name, DriverName)
	}
	im, err := vmimage.Load(cfg.Image)
	if err != nil {
		return nil, err
	}
	l, err := d.lv(ctx)
	if err != nil {
		return nil, err
	}
	if dom, err := l.DomainLookupByName(cfg.Name); err == nil {
		owner := "it is not a kubeforge node"
		if di, ok, _ := d.describe(l, dom); ok {
			owner = fmt.Sprintf("node %s of cluster %s", di.labels.Node, di.labels.Cluster)
		}
		return nil, kferr.Environment("choose another cluster name (node names are <cluster>, <cluster>-mNN), or delete what holds that name",
			"create node %s: a libvirt domain with that name already exists (%s)", cfg.Name, owner)
	} else if !notFound(err) {
		return nil, fmt.Errorf("create node %s: looking up domain: %w", cfg.Name, err)
	}
	pool, err := d.ensurePool(l)
	if err != nil {
		return nil, err
	}
	// Volumes of that name without a domain: an earlier node's, or another cluster's. Volumes
	// carry no labels, so they are neither reused nor removed (DeleteNode leaves them too).
	for _, v := range []string{nodeDiskName(cfg.Name), nodeSeedName(cfg.Name)} {
		if _, err := l.StorageVolLookupByName(pool, v); err == nil {
			return nil, kferr.Environment(fmt.Sprintf("if you do not need it, remove it: virsh vol-delete --pool %s %s; or choose another cluster name", PoolName, v),
				"create node %s: volume %s is already in pool %s, with no domain of that name (left by an earlier node?); not using it, not removing it", cfg.Name, v, PoolName)
		} else if !notFound(err) {
			return nil, fmt.Errorf("create node %s: looking up volume %s: %w", cfg.Name, v, err)
		}
	}
	vols, err := d.ensureImageVolumes(ctx, l, pool, im)
	if err != nil {
		return nil, err
	}
	lab := Labels{Cluster: cfg.Cluster, Node: cfg.Name, Role: cfg.Role, IP: cfg.IP.String()}
	n, err := d.nodeFor(lab)
	if err != nil {
		return nil, err
	}
	diskXML, err := (&libvirtxml.StorageVolume{
		Name:     nodeDiskName(cfg.Name),
		Capacity: &libvirtxml.StorageVolumeSize{Value: vmimage.DiskSize, Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{Path: vols.disk,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}).Marshal()
	if err != nil {
		return nil, err
	}
	disk, err := l.StorageVolCreateXML(pool, diskXML, 0)
	if err != nil {
		return nil, fmt.Errorf("creating node %s's disk: %w", cfg.Name, err)
	}
	d.madeVolume(nodeDiskName(cfg.Name))
	diskPath, err := l.StorageVolGetPath(disk)
	if err != nil {
		return nil, err
	}
	vcpus := uint(DefaultVCPUs)
	if cfg.MilliCPUs > 0 {
		vcpus = uint((cfg.MilliCPUs + 999) / 1000)
	}
	mem := uint(DefaultMemoryMiB)
	if cfg.MemoryBytes > 0 {
		mem = uint(cfg.MemoryBytes >> 20)
	}
	domXML, err := DomainXML(DomainSpec{
		Name: cfg.Name, Labels: lab, VCPUs: vcpus, MemoryMiB: mem, Accel: d.Accel(),
		Kernel: vols.kernel, Initrd: vols.initrd, Cmdline: cmdline(d.Accel()),
		Disk: diskPath, Seed: path.Join(path.Dir(diskPath), nodeSeedName(cfg.Name)),
		Network: NetworkName(cfg.Cluster), MAC: macFor(cfg.Cluster, cfg.Name), Console: ConsolePath(cfg.Name),
	})
	if err != nil {
		return nil, err
	}
	if _, err := l.DomainDefineXML(domXML); err != nil {
		return nil, fmt.Errorf("defining the domain of node %s: %w", cfg.Name, err)
	}
	netJSON, err := vmNetworkFile(cfg.Name, cfg.IP, cfg.Network)
	if err != nil {
		return nil, err
	}
	n.pending = []seedFile{
		{path: strings.TrimPrefix(contract.VMNetworkPath, "/"), mode: 0o644, data: netJSON},
		{path: "etc/ssh/ssh_host_ed25519_key", mode: 0o600, data: n.ssh.keys.hostPrivatePEM},
		{path: "root/.ssh/authorized_keys", mode: 0o600, data: n.ssh.keys.AuthorizedKey()},
	}
	n.hasPending = true
	return n, nil
}

// vmNetworkFile is the node's contract.VMNetworkPath: its host name and static address on the
// cluster network, the network's gateway as default route (and name server).
func vmNetworkFile(name string, ip netip.Addr, net provision.Network) ([]byte, error) {
	b, err := json.Marshal(contract.VMNetwork{
		Hostname:  name,
		Interface: "eth0",
		Address:   fmt.Sprintf("%s/%d", ip, net.Subnet.Bits()),
		Gateway:   net.Gateway.String(),
	})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// KernelCmdline boots a node: its disk as root, the supervisor as init, the console on the
// serial port, classic interface names (eth0).
const KernelCmdline = "root=/dev/vda rw console=ttyS0 net.ifnames=0 init=/usr/local/bin/kubeforge-init kubeforge.vm=1"

// cmdline is the kernel command line for accel: under emulation, without the CPU vulnerability
// mitigations (page-table switches on every system call are costly to emulate, and an emulated
// CPU has no such side channels to close).
func cmdline(accel string) string {
	if accel == AccelTCG {
		return KernelCmdline + " mitigations=off"
	}
	return KernelCmdline
}

// macFor is a stable locally administered MAC for a node (qemu's 52:54:00 prefix).
func macFor(cluster, node string) string {
	h := sha256.Sum256([]byte(cluster + "/" + node))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// madeVolume records that this driver created the pool volume name (see Driver.made).
func (d *Driver) madeVolume(name string) {
	d.mu.Lock()
	d.made[name] = true
	d.mu.Unlock()
}

func (d *Driver) isMade(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.made[name]
}

// DeleteNode stops and removes the node name of cluster: its domain and its volumes. A missing
// node is not an error. A domain by that name that is not this cluster's node is not touched:
// that is an error, and nothing is removed. The node's volumes (disk, seed) are removed when its
// domain used them, or when this driver made them; others by those names are left, with an
// error (libvirt volumes carry no labels: nothing else says whose they are).
func (d *Driver) DeleteNode(ctx context.Context, cluster, name string) error {
	if err := provision.CheckNodeLabel(cluster, name); err != nil {
		return kferr.Usage("delete node %s of cluster %s: %v", name, cluster, err)
	}
	l, err := d.lv(ctx)
	if err != nil {
		return err
	}
	owned := map[string]bool{} // volume paths the node's domain used
	dom, err := l.DomainLookupByName(name)
	if err == nil {
		di, ok, err := d.describe(l, dom)
		switch {
		case err != nil && !notFound(err):
			return err
		case err == nil && !ok:
			return kferr.Environment("nothing to do for this cluster: that domain is not one of its nodes",
				"delete node %s of cluster %s: domain %s was not made by kubeforge; not removing it", name, cluster, name)
		case err == nil && (di.labels.Cluster != cluster || di.labels.Node != name):
			return kferr.Environment("nothing to do for this cluster: that domain is not one of its nodes",
				"delete node %s of cluster %s: domain %s belongs to cluster %q (node %q), not to cluster %s; not removing it",
				name, cluster, name, di.labels.Cluster, di.labels.Node, cluster)
		}
		for _, p := range di.disks {
			owned[p] = true
		}
		if state, _, err := l.DomainGetState(dom, 0); err == nil && golibvirt.DomainState(state) != golibvirt.DomainShutoff {
			if err := l.DomainDestroy(dom); err != nil && !notFound(err) {
				return fmt.Errorf("stopping node %s: %w", name, err)
			}
		}
		if err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineNvram); err != nil && !notFound(err) {
			return fmt.Errorf("removing node %s: %w", name, err)
		}
	} else if !notFound(err) {
		return fmt.Errorf("looking up node %s: %w", name, err)
	}
	pool, err := l.StoragePoolLookupByName(PoolName)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range []string{nodeDiskName(name), nodeSeedName(name)} {
		vol, err := l.StorageVolLookupByName(pool, v)
		if notFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("looking up volume %s: %w", v, err)
		}
		path, err := l.StorageVolGetPath(vol)
		if err != nil && !notFound(err) {
			return fmt.Errorf("volume %s: %w", v, err)
		}
		if !owned[path] && !d.isMade(v) {
			errs = append(errs, kferr.Environment(fmt.Sprintf("if you do not need it, remove it: virsh vol-delete --pool %s %s", PoolName, v),
				"delete node %s of cluster %s: volume %s was neither used by that node's domain nor made by this command; not removing it", name, cluster, v))
			continue
		}
		if err := deleteVolume(l, pool, v); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

func deleteVolume(l *golibvirt.Libvirt, pool golibvirt.StoragePool, name string) error {
	v, err := l.StorageVolLookupByName(pool, name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up volume %s: %w", name, err)
	}
	if err := l.StorageVolDelete(v, 0); err != nil && !notFound(err) {
		return fmt.Errorf("removing volume %s: %w", name, err)
	}
	return nil
}

// Volumes lists the names of the volumes in kubeforge's pool (for tests and `image prune`).
func (d *Driver) Volumes(ctx context.Context) ([]string, error) {
	l, err := d.lv(ctx)
	if err != nil {
		return nil, err
	}
	_, vols, err := poolVolumes(l)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	sort.Strings(out)
	return out, nil
}
