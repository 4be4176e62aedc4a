// Package bootstrap turns a cluster spec into what its nodes need: certificates, kubeconfigs,
// static pod manifests, the kubelet's and containerd's configuration and the supervisor's
// services, rendered as files without touching a node (subpackages: pki, addons, ready).
package bootstrap

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"sort"
	"strings"
	"time"

	"kubeforge.dev/kubeforge/bootstrap/containerd"
	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/bootstrap/kubeletconfig"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/cniconf"
	"kubeforge.dev/kubeforge/contract/services"
	"kubeforge.dev/kubeforge/internal/spec"
)

// APIServerPort is the API server's port inside the cluster network.
const APIServerPort = 6443

// ServiceNodeNet is the oneshot that prepares the node's network before the kubelet (`netctl
// boot`: the pods' resolv.conf and DNS forwarding, the Service CIDR guard).
const ServiceNodeNet = "node-net"

// Node is one node to render files for.
type Node struct {
	Name         string
	Role         spec.Role
	IP           netip.Addr
	ControlPlane netip.Addr // address of the (first) control plane, for kubeconfigs
	// PodCIDR, when valid, is the pod range the node is given as soon as it registers: its CNI
	// config is written up front, so the runtime's network is ready when the kubelet starts.
	PodCIDR netip.Prefix
	// Taints the kubelet registers the node with (key[=value]:effect).
	Taints []string
	// SystemReserved is passed to the kubelet (kubeletconfig.Options).
	SystemReserved map[string]string
	// EtcdInitialCluster and EtcdClusterState (control planes): etcd's --initial-cluster and
	// --initial-cluster-state; empty means a one-member cluster.
	EtcdInitialCluster, EtcdClusterState string
	// Network is the nodes' network (kept out of the proxy with the cluster's own ranges).
	Network netip.Prefix
	// Registry, when valid, is the local registry's address on the nodes' network: with the
	// cluster's RegistryPort set, containerd gets its hosts.toml mirrors.
	Registry netip.Addr
}

// RegistryAlias is the local registry's name on the clusters' networks, as pods may name its
// images (kubeforge-registry:5000/app:dev), and RegistryPort its port there (provision/docker's
// RegistryName and RegistryPort).
const (
	RegistryAlias = "kubeforge-registry:5000"
	RegistryPort  = 5000
)

// RegistryFiles are the containerd mirror files (hosts.toml) of the local registry at addr on the
// nodes' network, published on the host's localhost:hostPort: images named localhost:<hostPort>/...
// (what the host pushes) and kubeforge-registry:5000/... are pulled from it over plain HTTP.
func RegistryFiles(hostPort int, addr netip.Addr) (Files, error) {
	var f Files
	hosts, err := containerd.RegistryHosts("", containerd.RegistryMirror{
		Addr:     netip.AddrPortFrom(addr, RegistryPort),
		HostName: fmt.Sprintf("localhost:%d", hostPort),
		Alias:    RegistryAlias,
	})
	if err != nil {
		return f, err
	}
	for p, b := range hosts {
		f.add(p, b, 0o644)
	}
	return f, nil
}

// NoProxy is the runtime's NO_PROXY: the user's, plus what must never go through a proxy: the
// node, its network, the pod and Service ranges and the cluster's names.
func NoProxy(c spec.Cluster, n Node) string {
	var out []string
	seen := map[string]bool{}
	add := func(v string) {
		if v = strings.TrimSpace(v); v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, v := range strings.Split(c.Proxy.NoProxy, ",") {
		add(v)
	}
	add("localhost")
	add("127.0.0.1")
	if n.IP.IsValid() {
		add(n.IP.String())
	}
	if n.Network.IsValid() {
		add(n.Network.Masked().String())
	}
	add(c.PodSubnet)
	add(c.ServiceSubnet)
	add(".svc")
	add("." + c.DNSDomain)
	add(c.Name)
	return strings.Join(out, ",")
}

// EtcdMember is "name=https://ip:2380", one member of etcd's --initial-cluster.
func EtcdMember(name string, ip netip.Addr) string {
	return name + "=https://" + netip.AddrPortFrom(ip, 2380).String()
}

// ControlPlaneTaint keeps ordinary pods off control-plane nodes when the cluster has workers, as
// kubeadm does.
const ControlPlaneTaint = "node-role.kubernetes.io/control-plane:NoSchedule"

// ControlPlaneEndpoint is host:port where nodes reach the API server.
func (n Node) ControlPlaneEndpoint() string {
	return netip.AddrPortFrom(n.ControlPlane, APIServerPort).String()
}

// Files are a node's files, path (absolute) to content, all mode 0644 unless in Modes.
type Files struct {
	Data  map[string][]byte
	Modes map[string]int64
}

func (f *Files) add(p string, b []byte, mode int64) {
	if f.Data == nil {
		f.Data, f.Modes = map[string][]byte{}, map[string]int64{}
	}
	f.Data[p] = b
	f.Modes[p] = mode
}

// Tar returns the files as a tar stream rooted at /, directories included.
func (f Files) Tar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(f.Data))
	for n := range f.Data {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	now := time.Now()
	for _, n := range names {
		var parents []string
		for d := path.Dir(n); d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i][1:] + "/", Mode: 0o755, ModTime: now}); err != nil {
				return nil, err
			}
		}
		b := f.Data[n]
		mode, ok := f.Modes[n]
		if !ok {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n[1:], Mode: mode, Size: int64(len(b)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// NodeFiles renders every file a node needs before its supervisor starts.
func NodeFiles(c spec.Cluster, n Node, auth *pki.Authorities) (Files, error) {
	var f Files
	dnsIP, err := c.ServiceIP(10)
	if err != nil {
		return f, err
	}
	server := "https://" + n.ControlPlaneEndpoint()
	isCP := n.Role == spec.RoleControlPlane
	// An emulated CPU (VMs under qemu's TCG) is what is short there: no GC traded for memory,
	// gentler probes.
	slow := c.Emulated()
	gcEnv := map[string]string{contract.SteadyGCEnv: controlplane.SteadyGCPercent}
	if slow {
		gcEnv = nil
	}

	// Certificates.
	var certs pki.Files
	if isCP {
		certs, err = auth.ControlPlaneFiles(pki.Node{
			ClusterName: c.Name, NodeName: n.Name, NodeIP: n.IP,
			ServiceSubnet: c.ServiceSubnet, PodSubnet: c.PodSubnet, DNSDomain: c.DNSDomain,
			ControlPlaneEndpoint: n.ControlPlaneEndpoint(),
		})
		if err != nil {
			return f, err
		}
	} else {
		certs = auth.NodeFiles()
	}
	for p, b := range certs {
		mode := int64(0o644)
		if path.Ext(p) == ".key" {
			mode = 0o600
		}
		f.add("/"+p, b, mode)
	}

	// Kubeconfigs.
	kcs := map[string]pki.Identity{"kubelet.conf": pki.KubeletIdentity(n.Name)}
	if isCP {
		local := "https://" + netip.AddrPortFrom(n.IP, APIServerPort).String()
		for name, id := range map[string]pki.Identity{"controller-manager.conf": pki.ControllerManager, "scheduler.conf": pki.Scheduler} {
			b, err := auth.KubeconfigFor(local, c.Name, id)
			if err != nil {
				return f, err
			}
			f.add("/etc/kubernetes/"+name, b, 0o600)
		}
		kcs["admin.conf"] = pki.Admin
		kcs["super-admin.conf"] = pki.SuperAdmin
	}
	for name, id := range kcs {
		b, err := auth.KubeconfigFor(server, c.Name, id)
		if err != nil {
			return f, err
		}
		f.add("/etc/kubernetes/"+name, b, 0o600)
	}

	// Static pods.
	if isCP {
		ms, err := controlplane.Manifests(controlplane.Config{
			ClusterName: c.Name, KubernetesVersion: c.KubernetesVersion, NodeName: n.Name, NodeIP: n.IP,
			PodSubnet: c.PodSubnet, ServiceSubnet: c.ServiceSubnet, DNSDomain: c.DNSDomain,
			ExtraArgs:      ControlPlaneArgs(c),
			InitialCluster: n.EtcdInitialCluster, EtcdClusterState: n.EtcdClusterState,
			SlowMachine: slow,
		})
		if err != nil {
			return f, err
		}
		for name, b := range ms {
			f.add(path.Join(contract.ManifestsDir, name), b, 0o644)
		}
		policy, err := controlplane.AuditPolicy()
		if err != nil {
			return f, err
		}
		f.add(contract.AuditPolicyPath, policy, 0o644)
	}

	// Kubelet and container runtime.
	servingCert, servingKey, err := auth.KubeletServing(n.Name, n.IP.AsSlice())
	if err != nil {
		return f, err
	}
	f.add(kubeletconfig.ServingCertPath, servingCert, 0o644)
	f.add(kubeletconfig.ServingKeyPath, servingKey, 0o600)
	kc, err := kubeletconfig.Render(kubeletconfig.Options{ClusterDNS: dnsIP, ClusterDomain: c.DNSDomain, ResolvConf: contract.PodResolvConf, Emulated: slow,
		SystemReserved: n.SystemReserved, FeatureGates: c.FeatureGates, ServingCert: true})
	if err != nil {
		return f, err
	}
	f.add(kubeletconfig.ConfigPath, kc, 0o644)
	rt := containerd.Options{}
	if c.Proxy.HTTPProxy != "" || c.Proxy.HTTPSProxy != "" {
		rt.HTTPProxy, rt.HTTPSProxy, rt.NoProxy = c.Proxy.HTTPProxy, c.Proxy.HTTPSProxy, NoProxy(c, n)
	}
	ctd, err := containerd.ContainerdConfig(rt)
	if err != nil {
		return f, err
	}
	f.add(contract.ContainerdConfigPath, ctd, 0o644)
	if c.RegistryPort > 0 && n.Registry.IsValid() {
		reg, err := RegistryFiles(c.RegistryPort, n.Registry)
		if err != nil {
			return f, err
		}
		for p, b := range reg.Data {
			f.add(p, b, 0o644)
		}
	}
	if n.PodCIDR.IsValid() {
		cni, err := cniconf.Render(n.PodCIDR, 0)
		if err != nil {
			return f, err
		}
		f.add(path.Join(cniconf.DefaultConfDir, cniconf.ConfFileName), cni, 0o644)
	}

	// Supervisor services: containerd, preloaded images, kubelet, network controller.
	svcs := containerd.Services(rt)
	if !slow {
		// containerd (upstream, not the node binary) gets the components' steady GC target from
		// its start: it allocates little while starting. Its shims set their own (40).
		for i := range svcs {
			if svcs[i].Name == containerd.ServiceContainerd {
				env := maps.Clone(svcs[i].Env)
				if env == nil {
					env = map[string]string{}
				}
				env["GOGC"] = controlplane.SteadyGCPercent
				svcs[i].Env = env
			}
		}
	}
	svcs = append(svcs,
		services.Service{
			Name:    ServiceNodeNet,
			Path:    contract.NodeBinary,
			Args:    []string{"netctl", "boot", "--node-ip=" + n.IP.String(), "--service-cidr=" + c.ServiceSubnet},
			Oneshot: true,
		},
		services.Service{
			Name:  "kubelet",
			Path:  contract.NodeBinary,
			Args:  kubeletconfig.Args(n.Name, n.IP, nil, n.Taints, c.ExtraArgs[spec.ComponentKubelet]),
			Env:   gcEnv,
			After: []string{containerd.ServiceContainerd, containerd.ServiceImportImages, ServiceNodeNet},
		},
		services.Service{
			Name: "netctl",
			Path: contract.NodeBinary,
			Args: []string{"netctl", "--kubeconfig=" + kubeletconfig.KubeconfigPath, "--node-name=" + n.Name,
				"--cluster-cidr=" + c.PodSubnet},
			Env:   gcEnv,
			After: []string{"kubelet"},
		},
	)
	if runsNodeLoadBalancers(c, n) {
		// LoadBalancer Services of a VM cluster get the nodes' addresses (node/nodelb), from
		// the cloud provider in node-address mode, talking to the local API server.
		local := "https://" + netip.AddrPortFrom(n.IP, APIServerPort).String()
		kc, err := auth.Kubeconfig(local, c.Name, contract.CloudUser, nil)
		if err != nil {
			return f, err
		}
		f.add(contract.CloudKubeconfigPath, kc, 0o600)
		svcs = append(svcs, services.Service{
			Name: "cloud-provider", Path: contract.NodeBinary,
			Args: []string{"cloud-provider", "-node-addresses", "-cluster", c.Name, "-kubeconfig", contract.CloudKubeconfigPath},
			Env:  gcEnv,
		})
	}
	sc := services.Config{Services: svcs}
	if slow {
		// An emulated CPU is starved while the control plane starts (the API server's start
		// hooks fail after 30 s and it restarts): its pods come before the node's agents.
		sc.NodeCPUWeight = EmulatedNodeCPUWeight
	}
	sb, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return f, fmt.Errorf("rendering the node's services: %w", err)
	}
	f.add(contract.ServicesPath, sb, 0o644)
	return f, nil
}

// EmulatedNodeCPUWeight is the cgroup cpu.weight of an emulated node's own processes (kubelet,
// containerd and its shims, the node's services): a quarter of the pods' 79 on 2 CPUs, so the
// API server and etcd get most of a starved CPU.
const EmulatedNodeCPUWeight = 20

// runsNodeLoadBalancers says whether node n of cluster c runs the cloud provider that gives
// LoadBalancer Services the nodes' addresses: the first control plane of a VM cluster (Docker
// clusters have a cloud-provider machine of their own). One instance, as upstream's service
// controller has no leader election here.
func runsNodeLoadBalancers(c spec.Cluster, n Node) bool {
	return c.Driver == spec.DriverKVM && n.Role == spec.RoleControlPlane && n.Name == spec.NodeName(c.Name, 0)
}

// ControlPlaneArgs are the flags the control-plane components get on top of their defaults: the
// pod eviction timeout's, then the spec's extra args (which win), and its feature gates.
func ControlPlaneArgs(c spec.Cluster) map[string]map[string]string {
	out := map[string]map[string]string{}
	set := func(component, flag, value string) {
		if out[component] == nil {
			out[component] = map[string]string{}
		}
		out[component][flag] = value
	}
	for component, args := range controlplane.EvictionArgs(c.PodEvictionTimeout) {
		for k, v := range args {
			set(component, k, v)
		}
	}
	gates := c.FeatureGatesFlag()
	for _, component := range []string{spec.ComponentAPIServer, spec.ComponentControllerManager, spec.ComponentScheduler} {
		for k, v := range c.ExtraArgs[component] {
			set(component, k, v)
		}
		if gates != "" {
			set(component, "feature-gates", gates)
		}
	}
	return out
}

// LoadBalancerFiles are the files of an HA cluster's load-balancer machine: its supervisor runs
// only `kubeforge-init lb` over the control planes' API servers.
func LoadBalancerFiles(controlPlanes []netip.Addr) (Files, error) {
	var f Files
	c := contract.LBConfig{Listen: fmt.Sprintf(":%d", APIServerPort), HealthPath: "/readyz"}
	for _, ip := range controlPlanes {
		c.Backends = append(c.Backends, netip.AddrPortFrom(ip, APIServerPort).String())
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return f, err
	}
	f.add(contract.LBConfigPath, b, 0o644)
	svcs := services.Config{Services: []services.Service{{
		Name: "lb", Path: contract.InitPath, Args: []string{"lb", "-config", contract.LBConfigPath},
	}}}
	sb, err := json.MarshalIndent(svcs, "", "  ")
	if err != nil {
		return f, err
	}
	f.add(contract.ServicesPath, sb, 0o644)
	return f, nil
}

// CloudProvider is what the cluster's cloud-provider machine (LoadBalancer Services on Docker)
// is made for.
type CloudProvider struct {
	Cluster string
	Network string     // the cluster's Docker network
	Image   string     // the node image, which the Services' load balancers run too
	Server  netip.Addr // where it reaches the API server: the control plane or the HA load balancer
}

// CloudProviderFiles renders the cloud-provider machine's files: its kubeconfig (user
// contract.CloudUser, bound by addons.RBAC) and its supervisor's one service, `kubeforge-node
// cloud-provider` (node/cloud).
func CloudProviderFiles(c CloudProvider, auth *pki.Authorities) (Files, error) {
	var f Files
	kc, err := auth.Kubeconfig("https://"+netip.AddrPortFrom(c.Server, APIServerPort).String(), c.Cluster, contract.CloudUser, nil)
	if err != nil {
		return f, err
	}
	f.add(contract.CloudKubeconfigPath, kc, 0o600)
	svcs := services.Config{Services: []services.Service{{
		Name: "cloud-provider", Path: contract.NodeBinary,
		Args: []string{"cloud-provider", "-cluster", c.Cluster, "-network", c.Network, "-image", c.Image,
			"-kubeconfig", contract.CloudKubeconfigPath},
		Env: map[string]string{contract.SteadyGCEnv: controlplane.SteadyGCPercent},
	}}}
	sb, err := json.MarshalIndent(svcs, "", "  ")
	if err != nil {
		return f, err
	}
	f.add(contract.ServicesPath, sb, 0o644)
	return f, nil
}
