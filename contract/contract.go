// Package contract is what the host and a node agree on: where things live inside a node, the
// names the two sides use for them, and (in its subpackages) the formats of the files the host
// writes for the node: services.json (services), the CNI config (cniconf), a VM image's
// description (vmimage). Host-side and node-side packages both import it; it imports only the
// standard library (and internal leaf helpers), so it never pulls either side into the other's
// binary.
package contract

// Binaries in a node image.
const (
	// InitPath is the node's PID 1 (cmd/kubeforge-init).
	InitPath = "/usr/local/bin/kubeforge-init"
	// NodeBinary is the multi-call node binary (cmd/kubeforge-node); the static pods run it
	// through a read-only hostPath of /usr.
	NodeBinary = "/usr/local/bin/kubeforge-node"
)

// The supervisor's files.
const (
	// ServicesPath is where the host writes the node's services (contract/services) before the
	// node starts.
	ServicesPath = "/etc/kubeforge/services.json"
	// StatusPath is where the supervisor publishes the state of its services.
	StatusPath = "/run/kubeforge/status.json"
	// LogDir holds one append-only log file per service, <name>.log.
	LogDir = "/var/log/kubeforge"
	// SupervisorLogName is the name of the supervisor's own log file in LogDir (.log).
	SupervisorLogName = "kubeforge-init"
	// StateDir is where oneshot services keep their done markers (on the node's /var volume, so
	// they survive a restart of the node).
	StateDir = "/var/lib/kubeforge"
)

// VMNetworkPath is a VM node's network configuration (VMNetwork, JSON): the libvirt driver
// (provision/libvirt) writes it into the node's seed disk, the supervisor (node/supervisor)
// configures the VM's network from it at boot.
const VMNetworkPath = "/etc/kubeforge/vm-network.json"

// VMNetwork is a VM node's static network configuration (VMNetworkPath).
type VMNetwork struct {
	Hostname  string   `json:"hostname"`
	Interface string   `json:"interface"` // default eth0
	Address   string   `json:"address"`   // CIDR, e.g. 192.168.130.2/24
	Gateway   string   `json:"gateway"`
	DNS       []string `json:"dns,omitempty"`
}

// Kubernetes files, as kubeadm lays them out.
const (
	// ManifestsDir holds the control plane's static pod manifests.
	ManifestsDir = "/etc/kubernetes/manifests"
	// PKIDir holds the node's certificates.
	PKIDir = "/etc/kubernetes/pki"
	// EtcdPKIDir holds etcd's certificates in a control-plane node.
	EtcdPKIDir = PKIDir + "/etcd"
	// EtcdCAFile is etcd's CA certificate: etcd, the API server and `kubeforge-node
	// etcd-member` (node/etcdmember) trust it.
	EtcdCAFile = EtcdPKIDir + "/ca.crt"
	// EtcdClientCertFile and EtcdClientKeyFile are kubeadm's etcd health-check client
	// credentials, which `kubeforge-node etcd-member` talks to the local etcd with.
	EtcdClientCertFile = EtcdPKIDir + "/healthcheck-client.crt"
	EtcdClientKeyFile  = EtcdPKIDir + "/healthcheck-client.key"
	// PodResolvConf is the resolv.conf pods with dnsPolicy Default get, written at boot by
	// `kubeforge-node netctl boot` (loopback name servers replaced by the node IP).
	PodResolvConf = "/etc/kubeforge/resolv.conf"
	// AuditPolicyPath is the API server's audit policy in a control-plane node, and AuditLogDir
	// the directory of its audit log, AuditLogPath (JSON lines, rotated by the API server), which
	// `kubeforge trace` follows.
	AuditPolicyPath = "/etc/kubernetes/audit-policy.yaml"
	// AdminKubeconfig is a control-plane node's admin kubeconfig (kubeadm's admin.conf), with
	// which `kubeforge-node verbosity` (node/verbosity) talks to the node's components.
	AdminKubeconfig = "/etc/kubernetes/admin.conf"
	AuditLogDir     = "/var/log/kubernetes/audit"
	AuditLogPath    = AuditLogDir + "/audit.log"
)

// The node image's preloaded images.
const (
	// ImagesDir holds the node image's preloaded image archives (*.tar): those the kubelet needs
	// before it can start the control plane (pause, the components image) in BootImagesSubdir,
	// the others (add-ons: CoreDNS) directly in it.
	ImagesDir = "/kubeforge/images"
	// BootImagesSubdir is the subdirectory of ImagesDir with the archives the kubelet waits for.
	BootImagesSubdir = "boot"
	// ImageInfoPath describes the node image (its Kubernetes version, preloaded image names) as
	// JSON; the host reads it from a created node.
	ImageInfoPath = "/etc/kubeforge/image-info.json"
)

// Containerd.
const (
	// ContainerdConfigPath is containerd's config in the node.
	ContainerdConfigPath = "/etc/containerd/config.toml"
	// ContainerdSocket is containerd's gRPC socket, also the kubelet's container runtime endpoint
	// ("unix://" + ContainerdSocket).
	ContainerdSocket = "/run/containerd/containerd.sock"
)

// Other node-side programs.
const (
	// LBConfigPath is where the load-balancer machine of an HA cluster keeps its config (LBConfig).
	LBConfigPath = "/etc/kubeforge/lb.json"
	// LocalVolumesRoot is the directory on every node under which the default StorageClass's
	// volumes live (node/localpv).
	LocalVolumesRoot = "/var/lib/kubeforge/volumes"
	// LocalVolumeProvisioner is the provisioner name of the default StorageClass (node/localpv).
	LocalVolumeProvisioner = "kubeforge.dev/local-path"
	// SteadyGCEnv tells a component of the node binary the GC percentage (GOGC) to switch to once
	// it has started: upstream's 100 suits the allocation burst of starting; a cluster on a laptop
	// then idles, where a smaller heap headroom saves memory for little CPU. Set on every
	// component the node binary runs (static pods, kube-proxy, the kubelet...).
	SteadyGCEnv = "KUBEFORGE_STEADY_GOGC"
	// StartWaitEnv is how long (a Go duration) a control-plane component of the node binary
	// waits at most for what it needs (node/startorder) before it runs anyway; 30 s when unset.
	// Emulated nodes set it longer: their API server takes minutes to be ready, and a
	// controller-manager that starts before gives up on it and restarts.
	StartWaitEnv = "KUBEFORGE_START_WAIT"
)

// LBConfig is the load balancer's config file (LBConfigPath), written by the host, read by
// `kubeforge-init lb` (node/lb).
type LBConfig struct {
	// Listen is the address to accept connections on, e.g. ":6443".
	Listen string `json:"listen"`
	// Backends are host:port of the API servers.
	Backends []string `json:"backends"`
	// HealthPath, when set, makes a backend healthy only while GET https://backend<HealthPath>
	// answers 200 (e.g. "/readyz": an API server that listens but is not ready yet gets no
	// connections unless no backend is ready); otherwise a TCP connect is the check.
	HealthPath string `json:"healthPath,omitempty"`
}

// SnapshotStatus is what `kubeforge-node etcd-snapshot save|status|restore` prints (JSON) about a
// snapshot, for the host to read.
type SnapshotStatus struct {
	Version   string `json:"version,omitempty"` // etcd version that wrote it (save only)
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKeys"`
	Bytes     int64  `json:"bytes"`
}

// ImageInfo is the node image's description (ImageInfoPath), written when the image is built.
type ImageInfo struct {
	KubernetesVersion string            `json:"kubernetesVersion"`
	ContainerdVersion string            `json:"containerdVersion"`
	CrictlVersion     string            `json:"crictlVersion"`
	CoreDNSVersion    string            `json:"coreDNSVersion"`
	Rootfs            string            `json:"rootfs"`
	Images            map[string]string `json:"images"` // role -> image reference, all preloaded
	Preload           []string          `json:"preload"`
}

// LoadBalancer Services on Docker clusters: the cluster's cloud-provider machine (node/cloud, `kubeforge-node
// cloud-provider` run by the supervisor of a machine made from the node image) makes one service load-balancer
// machine per Service (node/svclb). Both carry the labels every kubeforge machine does
// (dev.kubeforge.cluster, .node, .role) so that stop, start and delete find them.
const (
	// CloudKubeconfigPath is the cloud provider's kubeconfig in its machine.
	CloudKubeconfigPath = "/etc/kubeforge/cloud.conf"
	// CloudUser is the user (certificate common name) the cloud provider talks to the API as.
	CloudUser = "kubeforge:cloud-provider"
	// RoleCloudProvider is the cloud provider's machine's role label.
	RoleCloudProvider = "cloud-provider"
	// RoleServiceLB is the role label of a Service's load-balancer machine.
	RoleServiceLB = "service-lb"
	// LabelService is a service load-balancer machine's Service, <namespace>/<name>.
	LabelService = "dev.kubeforge.service"
	// LabelServiceConfig is a hash of what a service load-balancer machine was made for (ports,
	// nodes): the cloud provider makes it again when that changes.
	LabelServiceConfig = "dev.kubeforge.service-config"
	// LabelServiceHostPorts is the Service's AnnotationHostPorts a service load-balancer machine
	// was made for: once it equals the Service's, the machine publishes what was asked.
	LabelServiceHostPorts = "dev.kubeforge.service-host-ports"
	// LabelServiceLBFinal is "false" on a service load-balancer machine that is about to be made
	// again with the host ports Docker picked for it pinned (so a stop/start keeps them), "true"
	// once it stays.
	LabelServiceLBFinal = "dev.kubeforge.service-lb-final"
	// AnnotationHostPorts on a LoadBalancer Service asks for the host ports (127.0.0.1) its
	// ports are published on, as "PORT=HOSTPORT,..." (e.g. "80=8080,443=8443"); the others are
	// published on their own number. A host port that is not free is replaced by one Docker picks.
	AnnotationHostPorts = "kubeforge.dev/host-ports"
	// DockerSocket is where the cloud provider's machine finds the Docker daemon's socket.
	DockerSocket = "/run/kubeforge-docker.sock"
)

// CloudProviderName is the machine of cluster's cloud provider.
func CloudProviderName(cluster string) string { return cluster + "-cloud" }

// Labels every kubeforge machine, network and volume carries (provision re-exports them).
const (
	LabelCluster = "dev.kubeforge.cluster"
	LabelNode    = "dev.kubeforge.node"
	LabelRole    = "dev.kubeforge.role"
)
