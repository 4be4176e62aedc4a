// Package provision defines the seam between kubeforge and the machines its nodes run on. A
// Driver makes networks and nodes (Docker containers, libvirt VMs); a Node runs commands and
// takes files. Bootstrap and the cluster flow talk only to these interfaces, so every driver
// shares one code path.
package provision

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"kubeforge.dev/kubeforge/contract"
)

// Labels every driver puts on what it creates, so that delete removes exactly what belongs to a
// cluster and nothing else.
const (
	LabelCluster = contract.LabelCluster
	LabelNode    = contract.LabelNode
	LabelRole    = contract.LabelRole
	// LabelAPIPort records the host port the API server is published on (control planes).
	LabelAPIPort = "dev.kubeforge.apiserver-port"
)

// Network is the cluster's own network.
type Network struct {
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Created says that the EnsureNetwork that returned it made it (it did not exist before):
	// only then may the caller's undo remove it.
	Created bool
}

// NodeIP returns the address of the i-th node (i from 0) on the network: the gateway is .1, so
// node 0 is .2, node 1 is .3, and so on. It returns the zero Addr when i is negative or the
// address would leave the subnet or be its broadcast address.
func (n Network) NodeIP(i int) netip.Addr {
	if i < 0 || !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
		return netip.Addr{}
	}
	base := n.Subnet.Masked().Addr().As4()
	v := uint64(binary.BigEndian.Uint32(base[:])) + 2 + uint64(i)
	size := uint64(1) << (32 - n.Subnet.Bits())
	if v >= uint64(binary.BigEndian.Uint32(base[:]))+size-1 { // last address is broadcast
		return netip.Addr{}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b)
}

// LoadBalancerIP is the address of the cluster's API load balancer (HA control planes): the
// subnet's last usable address, far from the nodes'.
func (n Network) LoadBalancerIP() netip.Addr {
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() || n.Subnet.Bits() > 29 {
		return netip.Addr{}
	}
	base := n.Subnet.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(base[:]) + uint32(1)<<(32-n.Subnet.Bits()) - 2
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// CloudProviderIP is the address of the cluster's cloud-provider machine (Docker clusters): the
// one below the load balancer's.
func (n Network) CloudProviderIP() netip.Addr {
	lb := n.LoadBalancerIP()
	if !lb.IsValid() {
		return lb
	}
	return lb.Prev()
}

// RegistryIP is the local registry's address on the cluster's network (Docker clusters, `start
// --registry`): the one below the cloud provider's. The Services' load balancers take the
// addresses below it (node/cloud).
func (n Network) RegistryIP() netip.Addr {
	cp := n.CloudProviderIP()
	if !cp.IsValid() {
		return cp
	}
	return cp.Prev()
}

// RoleLoadBalancer is the role of the API load balancer's machine (HA clusters): it is not a
// Kubernetes node.
const RoleLoadBalancer = "load-balancer"

// IsLoadBalancer says whether n is a cluster's load balancer rather than a Kubernetes node.
func IsLoadBalancer(n Node) bool { return n.Role() == RoleLoadBalancer }

// RoleCloudProvider and RoleServiceLB are the roles of a Docker cluster's cloud-provider machine
// and of its Services' load balancers (node/cloud): machines of the cluster, not Kubernetes nodes.
const (
	RoleCloudProvider = contract.RoleCloudProvider
	RoleServiceLB     = contract.RoleServiceLB
)

// IsService says whether n is the cloud provider or a Service's load balancer.
func IsService(n Node) bool { return n.Role() == RoleCloudProvider || n.Role() == RoleServiceLB }

// NodeConfig is what a driver needs to create a node.
type NodeConfig struct {
	Cluster string
	Name    string
	Role    string
	Image   string
	Network Network
	IP      netip.Addr // fixed address on the cluster network
	// APIServerHostPort, when non-zero, publishes the node's port 6443 on 127.0.0.1:APIServerHostPort.
	APIServerHostPort int
	// Ports publishes more ports of the node on the host's loopback (e.g. NodePorts).
	Ports []PortMapping
	// MilliCPUs and MemoryBytes, when non-zero, cap the machine.
	MilliCPUs   int64
	MemoryBytes int64
	// Mounts are host paths bind-mounted into the machine.
	Mounts []Mount
	// KeepData makes the machine over the data (/var: etcd, kubelet, images, volumes) a machine
	// of that name left behind (Replacer); without it such data is refused, never reused.
	KeepData bool
}

// Mount makes the host's HostPath (absolute; it must exist) visible at ContainerPath (absolute)
// inside the node's machine.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// Capacity is what a node machine sees as its CPUs and memory when it has no cap: for container
// nodes, the host's (the kubelet reads them from /proc); zero when every machine is sized on its
// own (VMs).
type Capacity struct {
	MilliCPUs   int64
	MemoryBytes int64
}

// PortMapping publishes the node's TCP port NodePort on 127.0.0.1:HostPort.
type PortMapping struct {
	HostPort int
	NodePort int
}

// State of a node machine.
type State string

const (
	StateRunning State = "running"
	StateStopped State = "stopped"
	StateMissing State = "missing"
	StateOther   State = "other"
)

// Driver creates and removes the machines of clusters.
type Driver interface {
	// Name is the driver's name as users type it (--driver).
	Name() string
	// Ping checks that the driver's backend answers; its error tells the user how to fix it.
	Ping(ctx context.Context) error
	// EnsureNetwork returns the cluster's network, creating it if needed (then its Created is
	// set). A failed EnsureNetwork leaves no network it made behind.
	EnsureNetwork(ctx context.Context, cluster string) (Network, error)
	// DeleteNetwork removes the cluster's network; a missing network is not an error. A network
	// of that name that does not carry the cluster's label is not removed: that is an error.
	DeleteNetwork(ctx context.Context, cluster string) error
	// CreateNode creates a node machine, not yet started.
	CreateNode(ctx context.Context, cfg NodeConfig) (Node, error)
	// Nodes lists the nodes of a cluster, in name order. Machines whose labels do not pass
	// CheckNodeLabel are skipped.
	Nodes(ctx context.Context, cluster string) ([]Node, error)
	// Clusters lists the names of all clusters this driver has machines or networks for. Labels
	// that do not pass CheckClusterLabel are skipped.
	Clusters(ctx context.Context) ([]string, error)
	// DeleteNode removes the node machine name of cluster and its storage; a missing node is not
	// an error. A machine or storage of that name that does not carry the cluster's (and node's)
	// labels is not touched: that is an error, and nothing is removed.
	DeleteNode(ctx context.Context, cluster, name string) error
	// HostCapacity is what an uncapped node sees (see Capacity).
	HostCapacity(ctx context.Context) (Capacity, error)
}

// Node is one machine of a cluster.
type Node interface {
	Name() string
	Role() string
	// IP is the node's address on the cluster network.
	IP() netip.Addr
	// APIServerHostPort is the host port the API server is published on, 0 if none.
	APIServerHostPort() int
	State(ctx context.Context) (State, error)
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	// Run runs a command in the node. A failure is a *RunError holding the command and its output.
	Run(ctx context.Context, cmd Cmd) error
	// CopyTar unpacks a tar stream at the node's root; works before the node is started.
	CopyTar(ctx context.Context, tar io.Reader) error
	// ReadFile reads a file from the node.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Logs streams the node's console (the supervisor's output).
	Logs(ctx context.Context, w io.Writer, follow bool) error
}

// Inspector is a Node that can describe its machine as the driver sees it (for bug reports).
type Inspector interface {
	// Inspect returns the driver's description of the machine, as JSON.
	Inspect(ctx context.Context) ([]byte, error)
}

// Publisher is a machine whose ports are published on the host (Docker containers).
type Publisher interface {
	// PublishedPorts maps each published port, "PORT/proto" (80/tcp), to its host port on
	// 127.0.0.1.
	PublishedPorts(ctx context.Context) (map[string]int, error)
}

// Cmd is a command to run in a node.
type Cmd struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer // nil: captured into the error on failure only
	Stderr io.Writer
}

// RunError is a command that failed: it keeps the command, its exit code and its output.
type RunError struct {
	Node     string
	Args     []string
	ExitCode int
	Output   string
	Err      error
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("command %q on node %s", strings.Join(e.Args, " "), e.Node)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	} else {
		msg += fmt.Sprintf(" exited %d", e.ExitCode)
	}
	if out := strings.TrimSpace(e.Output); out != "" {
		if len(out) > 4000 {
			out = "..." + out[len(out)-4000:]
		}
		msg += ":\n" + out
	}
	return msg
}

func (e *RunError) Unwrap() error { return e.Err }

// Output runs cmd in node and returns its standard output.
func Output(ctx context.Context, n Node, args ...string) (string, error) {
	var out strings.Builder
	err := n.Run(ctx, Cmd{Args: args, Stdout: &out})
	return out.String(), err
}

// DirectAccess is implemented by drivers whose nodes the host reaches at their addresses on the
// cluster network (VMs on a libvirt network): nothing is published on 127.0.0.1, and the API
// server's address is the control-plane endpoint's.
type DirectAccess interface {
	DirectAccess() bool
}

// HasDirectAccess tells whether d's nodes are reached at their own addresses.
func HasDirectAccess(d Driver) bool {
	da, ok := d.(DirectAccess)
	return ok && da.DirectAccess()
}

// ImagePruner is a Driver that keeps node images of its own (a hypervisor's storage pool) and
// can remove those whose key is not in keep and that no machine uses. It returns what it removed.
type ImagePruner interface {
	PruneImages(ctx context.Context, keep []string) ([]string, error)
}

// Terminal is a Node that offers an interactive login shell with a terminal through a program on
// the host (docker exec -it, ssh -t). TerminalCommand returns its argv, and a cleanup to run
// after it exits; ok is false when that program is not installed.
type Terminal interface {
	TerminalCommand() (argv []string, cleanup func(), ok bool, err error)
}

// Replacer is a Driver that can make a node's machine anew from another image while keeping its
// data (/var: etcd, kubelet state, images, volumes): `kubeforge upgrade`. ReplaceNode removes the
// machine cfg names (its data stays), then makes and returns the new one, not started.
type Replacer interface {
	ReplaceNode(ctx context.Context, cfg NodeConfig) (Node, error)
}
