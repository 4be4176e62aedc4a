// Package spec holds the cluster specification: what the user asked for, validated and defaulted.
// Every other package takes a spec and never reads flags or files itself.
package spec

import (
	"kubeforge.dev/kubeforge/internal/versions"

	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultName is the cluster name used when none is given.
const DefaultName = "kubeforge"

// Role of a node.
type Role string

const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// Cluster is a validated, defaulted cluster specification.
type Cluster struct {
	Name              string `json:"name"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Driver            string `json:"driver"`
	// LibvirtURI and Accel are the VM driver's (--driver kvm): the libvirt daemon and the
	// acceleration (kvm, or tcg for software emulation).
	LibvirtURI    string        `json:"libvirtURI,omitempty"`
	Accel         string        `json:"accel,omitempty"`
	Image         string        `json:"image,omitempty"`
	Nodes         []Node        `json:"nodes"`
	PodSubnet     string        `json:"podSubnet"`
	ServiceSubnet string        `json:"serviceSubnet"`
	DNSDomain     string        `json:"dnsDomain"`
	APIServerPort int           `json:"apiServerPort,omitempty"` // host port on 127.0.0.1; 0 = pick a free one
	Wait          time.Duration `json:"wait,omitempty"`
	// PodEvictionTimeout, when set, is how long after a node stops answering its pods are
	// evicted (and recreated elsewhere); zero keeps upstream's defaults (about 5m50s).
	PodEvictionTimeout time.Duration `json:"podEvictionTimeout,omitempty"`
	// Ports publishes node ports on the host's loopback: 127.0.0.1:HostPort reaches NodePort on
	// the first node.
	Ports []PortMapping `json:"ports,omitempty"`
	// Proxy, when set, reaches the nodes' container runtime (image pulls).
	Proxy Proxy `json:"proxy,omitempty"`
	// ExtraArgs adds flags to a component (one of Components), or overrides kubeforge's own:
	// component to flag name (without --) to value.
	ExtraArgs map[string]map[string]string `json:"extraArgs,omitempty"`
	// FeatureGates are set on every Kubernetes component of Components (--feature-gates, and the
	// kubelet's featureGates).
	FeatureGates map[string]bool `json:"featureGates,omitempty"`
	// Addons are the optional cluster services enabled (`kubeforge addons list` names them).
	Addons []string `json:"addons,omitempty"`
	// Registry asks for the local registry (`start --registry`, registry: in the config file;
	// Docker clusters): made when missing, connected to the cluster's network, every node's
	// containerd mirroring it.
	Registry bool `json:"registry,omitempty"`
	// RegistryPort is the host port (127.0.0.1) of the registry the nodes were wired to; 0 when
	// none. Start, resume and node add wire the nodes to it again.
	RegistryPort int `json:"registryPort,omitempty"`
	// Ingress holds the host ports (127.0.0.1) of the ingress add-on's HTTP and HTTPS entry
	// points (`--ingress-ports`, ingress: in the config file); nil: 80 and 443, when free.
	Ingress *IngressPorts `json:"ingress,omitempty"`
}

// IngressPorts are the host ports of the ingress add-on; 0 is the default (80, 443).
type IngressPorts struct {
	HTTP  int `json:"httpPort,omitempty"`
	HTTPS int `json:"httpsPort,omitempty"`
}

// Ports returns the HTTP and HTTPS host ports, with the defaults filled in (80, 443).
func (p *IngressPorts) Ports() (http, https int) {
	http, https = 80, 443
	if p != nil && p.HTTP != 0 {
		http = p.HTTP
	}
	if p != nil && p.HTTPS != 0 {
		https = p.HTTPS
	}
	return http, https
}

// Components whose flags ExtraArgs may set.
const (
	ComponentAPIServer         = "kube-apiserver"
	ComponentControllerManager = "kube-controller-manager"
	ComponentScheduler         = "kube-scheduler"
	ComponentKubelet           = "kubelet"
)

// Components lists the components ExtraArgs and FeatureGates apply to.
func Components() []string {
	return []string{ComponentAPIServer, ComponentControllerManager, ComponentScheduler, ComponentKubelet}
}

// FeatureGatesFlag is the value of the components' --feature-gates: "A=true,B=false", sorted;
// empty without feature gates.
func (c Cluster) FeatureGatesFlag() string {
	kv := make([]string, 0, len(c.FeatureGates))
	for k, v := range c.FeatureGates {
		kv = append(kv, fmt.Sprintf("%s=%t", k, v))
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// Proxy is the HTTP(S) proxy the nodes' container runtime pulls images through, taken from the
// environment of `kubeforge start` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY or their lower-case forms).
type Proxy struct {
	HTTPProxy  string `json:"httpProxy,omitempty"`
	HTTPSProxy string `json:"httpsProxy,omitempty"`
	NoProxy    string `json:"noProxy,omitempty"`
}

// ProxyFromEnv reads the proxy settings with getenv (os.Getenv), upper case first as curl does.
func ProxyFromEnv(getenv func(string) string) Proxy {
	get := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return getenv(strings.ToLower(name))
	}
	return Proxy{HTTPProxy: get("HTTP_PROXY"), HTTPSProxy: get("HTTPS_PROXY"), NoProxy: get("NO_PROXY")}
}

// PortMapping is a host port published to a node port.
type PortMapping struct {
	HostPort int `json:"hostPort"`
	NodePort int `json:"nodePort"`
}

// Limits of a cluster's shape.
const (
	// MaxControlPlanes bounds --control-planes (etcd members).
	MaxControlPlanes = 7
	// MaxNodes bounds --nodes: each node is a full kubelet and container runtime (~150 MiB), and
	// the pod subnet is cut into one /24 per node.
	MaxNodes = 20
	// MinPodEvictionTimeout is the shortest PodEvictionTimeout: the node controller needs about
	// 16 s (a missed lease renewal and then some) to tell a stopped node from a slow one.
	MinPodEvictionTimeout = 20 * time.Second
	// NodePortMin and NodePortMax are the API server's default NodePort range.
	NodePortMin, NodePortMax = 30000, 32767
)

// Node is one machine of the cluster.
type Node struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// CPUs and Memory, when set, cap the node's machine and are what its Node reports as
	// allocatable (Kubernetes quantities: "1.5", "1500m"; "2Gi").
	CPUs   string `json:"cpus,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Mounts are host directories or files bind-mounted into the node's machine.
	Mounts []Mount `json:"mounts,omitempty"`
}

// Mount makes the host's HostPath visible at ContainerPath inside a node (for hostPath volumes).
type Mount struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// Smallest caps a node can run with.
var (
	MinNodeCPUs   = resource.MustParse("500m")
	MinNodeMemory = resource.MustParse("512Mi")
)

// Resources parses the node's caps; zero quantities mean no cap.
func (n Node) Resources() (cpus, memory resource.Quantity, err error) {
	if cpus, err = ParseCPUs(n.CPUs); err != nil {
		return cpus, memory, fmt.Errorf("node %s: cpus %w", n.Name, err)
	}
	if memory, err = ParseMemory(n.Memory); err != nil {
		return cpus, memory, fmt.Errorf("node %s: memory %w", n.Name, err)
	}
	return cpus, memory, nil
}

// ParseCPUs parses a node's CPU cap; "" is no cap (a zero quantity).
func ParseCPUs(s string) (resource.Quantity, error) {
	return parseCap(s, MinNodeCPUs, "2, 1.5 or 1500m")
}

// ParseMemory parses a node's memory cap; "" is no cap (a zero quantity).
func ParseMemory(s string) (resource.Quantity, error) {
	return parseCap(s, MinNodeMemory, "2Gi or 1536Mi")
}

func parseCap(s string, least resource.Quantity, examples string) (resource.Quantity, error) {
	if s == "" {
		return resource.Quantity{}, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return q, fmt.Errorf("%q is not a quantity (e.g. %s)", s, examples)
	}
	if q.Cmp(least) < 0 {
		return q, fmt.Errorf("%s is less than the %s a node needs", s, least.String())
	}
	return q, nil
}

// Default returns the spec of a one-node cluster with the given name.
func Default(name string) Cluster {
	if name == "" {
		name = DefaultName
	}
	return Cluster{
		Name:              name,
		KubernetesVersion: versions.Default().Kubernetes,
		Driver:            DriverDocker,
		Nodes:             []Node{{Name: NodeName(name, 0), Role: RoleControlPlane}},
		PodSubnet:         "10.244.0.0/16",
		ServiceSubnet:     "10.96.0.0/16",
		DNSDomain:         "cluster.local",
		Wait:              5 * time.Minute,
	}
}

// WithNodes returns c with n nodes: the first controlPlanes of them control planes (at least
// one), the others workers, named by NodeName.
func (c Cluster) WithNodes(n, controlPlanes int) Cluster {
	c.Nodes = make([]Node, 0, n)
	for i := 0; i < n; i++ {
		role := RoleWorker
		if i == 0 || i < controlPlanes {
			role = RoleControlPlane
		}
		c.Nodes = append(c.Nodes, Node{Name: NodeName(c.Name, i), Role: role})
	}
	return c
}

// WithName returns c named name, its nodes renamed to match (NodeName).
func (c Cluster) WithName(name string) Cluster {
	c.Name = name
	c.Nodes = slices.Clone(c.Nodes)
	for i := range c.Nodes {
		c.Nodes[i].Name = NodeName(name, i)
	}
	return c
}

// ControlPlanes counts the control-plane nodes.
func (c Cluster) ControlPlanes() int { return len(c.ControlPlaneNames()) }

// NodeNames names the nodes, in the spec's order.
func (c Cluster) NodeNames() []string {
	out := make([]string, len(c.Nodes))
	for i, node := range c.Nodes {
		out[i] = node.Name
	}
	return out
}

// ControlPlaneNames are the names of the control-plane nodes, in order.
func (c Cluster) ControlPlaneNames() []string {
	var out []string
	for _, node := range c.Nodes {
		if node.Role == RoleControlPlane {
			out = append(out, node.Name)
		}
	}
	return out
}

// HasWorkers says whether some node is a worker (the control planes are then tainted, as
// kubeadm does).
func (c Cluster) HasWorkers() bool {
	for _, n := range c.Nodes {
		if n.Role == RoleWorker {
			return true
		}
	}
	return false
}

// NodeIndex returns i for the node named NodeName(cluster, i), or -1.
func NodeIndex(cluster, node string) int {
	if node == cluster {
		return 0
	}
	var i int
	if _, err := fmt.Sscanf(strings.TrimPrefix(node, cluster+"-m"), "%d", &i); err != nil || i < 2 || NodeName(cluster, i-1) != node {
		return -1
	}
	return i - 1
}

// NodeName is the name of the i-th node (0-based): the cluster name, then <cluster>-m02, -m03...
func NodeName(cluster string, i int) string {
	if i == 0 {
		return cluster
	}
	return fmt.Sprintf("%s-m%02d", cluster, i+1)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks that name can name a cluster: a DNS label short enough to leave room for
// node suffixes.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > 50 || !dnsLabel.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use 1-50 lower-case letters, digits and '-', starting and ending with a letter or digit (a DNS label), e.g. --name dev", name)
	}
	return nil
}

// ServiceIP returns the n-th address of the service subnet (1 = the kubernetes Service,
// 10 = kube-dns).
func (c Cluster) ServiceIP(n int) (netip.Addr, error) {
	p, err := netip.ParsePrefix(c.ServiceSubnet)
	if err != nil {
		return netip.Addr{}, err
	}
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	if !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service subnet %s has no address #%d", c.ServiceSubnet, n)
	}
	return a, nil
}

// Drivers a cluster's nodes can run on.
const (
	DriverDocker = "docker" // containers
	DriverKVM    = "kvm"    // VMs through libvirt
)

// VM accelerations (--accel).
const (
	AccelKVM = "kvm" // hardware virtualization
	AccelTCG = "tcg" // qemu's software emulation: works anywhere, many times slower
)

// Emulated tells whether the nodes' CPUs are emulated (VMs under TCG): components get gentler
// probes, leases and timeouts, and start waits longer.
func (c Cluster) Emulated() bool { return c.Driver == DriverKVM && c.Accel == AccelTCG }

// machineSuffix is what follows a cluster's name in the names of its other machines: workers and
// further control planes (-m02, -m03...) and the HA load balancer (-lb).
var machineSuffix = regexp.MustCompile(`^-(m[0-9]+|lb|cloud|svc-[-a-z0-9]+)$`)

// MachineNamesCollide tells whether clusters a and b would have machines of the same name: they
// are one cluster, or one's name is a machine name of the other ("kf-m02" and "kf", "kf-lb" and
// "kf", "kf-cloud" and "kf", "kf-svc-default-web" and "kf": the cloud provider and a Service's load
// balancer). Two such clusters can never both exist.
func MachineNamesCollide(a, b string) bool {
	return a == b || isMachineOf(a, b) || isMachineOf(b, a)
}

// isMachineOf tells whether name is a name cluster c gives one of its machines other than its
// first.
func isMachineOf(c, name string) bool {
	return strings.HasPrefix(name, c) && machineSuffix.MatchString(name[len(c):])
}

// EmulatedWait is how long a start waits by default for VMs under software emulation (many
// minutes).
const EmulatedWait = 30 * time.Minute
