// Package controlplane renders the control plane's static pod manifests in kubeadm's layout
// (/etc/kubernetes/manifests/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler}.yaml).
// Each pod runs the real upstream component from the node binary, which the pod reaches through a
// read-only mount of the node's /usr: the components image itself is only a skeleton, so the
// 150 MB binary exists once in the node image instead of once per image.
package controlplane

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/contract"
)

// ComponentsImage is the skeleton image the component pods run in.
func ComponentsImage(kubeVersion string) string {
	return "kubeforge.local/kube-components:" + kubeVersion
}

// Config is what the control-plane manifests depend on.
type Config struct {
	ClusterName       string
	KubernetesVersion string
	NodeName          string
	NodeIP            netip.Addr
	PodSubnet         string
	ServiceSubnet     string
	DNSDomain         string
	// InitialCluster is etcd's --initial-cluster; empty means this node alone.
	InitialCluster string
	// EtcdClusterState is "new" or "existing".
	EtcdClusterState string
	// ExtraArgs per component ("kube-apiserver", ...): flag name (without --) to value; they override.
	ExtraArgs map[string]map[string]string
	// SlowMachine is set for nodes whose CPU is emulated (VMs under qemu's TCG): the kubelet probes
	// the components every 5s instead of every second (each probe is a TLS handshake, costly when
	// emulated) and gives them 10 minutes to start instead of 4.
	SlowMachine bool
}

// Manifests returns the static pod manifests, file name to YAML.
func Manifests(c Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range []*corev1.Pod{etcd(c), apiserver(c), controllerManager(c), scheduler(c)} {
		b, err := yaml.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("rendering %s: %w", p.Name, err)
		}
		name := strings.TrimSuffix(p.Name, "-"+c.NodeName)
		out[name+".yaml"] = b
	}
	return out, nil
}

const pki = contract.PKIDir

func etcd(c Config) *corev1.Pod {
	ip := c.NodeIP.String()
	initial := c.InitialCluster
	if initial == "" {
		initial = fmt.Sprintf("%s=https://%s", c.NodeName, hostPort(ip, 2380))
	}
	state := c.EtcdClusterState
	if state == "" {
		state = "new"
	}
	args := map[string]string{
		"name":                           c.NodeName,
		"data-dir":                       "/var/lib/etcd",
		"advertise-client-urls":          "https://" + hostPort(ip, 2379),
		"listen-client-urls":             "https://127.0.0.1:2379,https://" + hostPort(ip, 2379),
		"listen-peer-urls":               "https://" + hostPort(ip, 2380),
		"initial-advertise-peer-urls":    "https://" + hostPort(ip, 2380),
		"initial-cluster":                initial,
		"initial-cluster-state":          state,
		"listen-metrics-urls":            "http://127.0.0.1:2381",
		"cert-file":                      contract.EtcdPKIDir + "/server.crt",
		"key-file":                       contract.EtcdPKIDir + "/server.key",
		"trusted-ca-file":                contract.EtcdCAFile,
		"client-cert-auth":               "true",
		"peer-cert-file":                 contract.EtcdPKIDir + "/peer.crt",
		"peer-key-file":                  contract.EtcdPKIDir + "/peer.key",
		"peer-trusted-ca-file":           contract.EtcdCAFile,
		"peer-client-cert-auth":          "true",
		"snapshot-count":                 "10000",
		"feature-gates":                  "InitialCorruptCheck=true",
		"watch-progress-notify-interval": "5s",
	}
	if c.SlowMachine {
		// Under emulation every fsync is a journal commit run by an emulated kernel: slow enough
		// that the API server's start-up writes time out. The VM's init syncs at power-off;
		// only a crash of the VM loses the last writes. Ticks are stretched for the same reason.
		args["unsafe-no-fsync"] = "true"
		args["heartbeat-interval"] = "500"
		args["election-timeout"] = "5000"
	}
	p := pod(c, "etcd", args, []mount{
		{"etcd-data", "/var/lib/etcd", corev1.HostPathDirectoryOrCreate, false},
		{"etcd-certs", contract.EtcdPKIDir, corev1.HostPathDirectoryOrCreate, true},
	}, probes{scheme: corev1.URISchemeHTTP, port: 2381, live: "/livez", ready: "/readyz", startup: "/readyz"})
	p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("100Mi")
	return p
}

func apiserver(c Config) *corev1.Pod {
	issuer := "https://kubernetes.default.svc." + c.DNSDomain
	args := map[string]string{
		"advertise-address":                  c.NodeIP.String(),
		"allow-privileged":                   "true",
		"authorization-mode":                 "Node,RBAC",
		"client-ca-file":                     pki + "/ca.crt",
		"enable-admission-plugins":           "NodeRestriction",
		"enable-bootstrap-token-auth":        "true",
		"etcd-cafile":                        contract.EtcdCAFile,
		"etcd-certfile":                      pki + "/apiserver-etcd-client.crt",
		"etcd-keyfile":                       pki + "/apiserver-etcd-client.key",
		"etcd-servers":                       "https://127.0.0.1:2379",
		"kubelet-client-certificate":         pki + "/apiserver-kubelet-client.crt",
		"kubelet-client-key":                 pki + "/apiserver-kubelet-client.key",
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"proxy-client-cert-file":             pki + "/front-proxy-client.crt",
		"proxy-client-key-file":              pki + "/front-proxy-client.key",
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-client-ca-file":       pki + "/front-proxy-ca.crt",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"secure-port":                        "6443",
		"service-account-issuer":             issuer,
		"service-account-key-file":           pki + "/sa.pub",
		"service-account-signing-key-file":   pki + "/sa.key",
		"service-cluster-ip-range":           c.ServiceSubnet,
		"tls-cert-file":                      pki + "/apiserver.crt",
		"tls-private-key-file":               pki + "/apiserver.key",
	}
	if c.SlowMachine {
		// /readyz and /livez ask etcd with 2 s to answer by default: on emulated CPUs a busy
		// moment fails them, and the API server reads as not ready (or gets restarted).
		args["etcd-readycheck-timeout"] = "10s"
		args["etcd-healthcheck-timeout"] = "10s"
	}
	for k, v := range auditArgs() {
		args[k] = v
	}
	p := pod(c, "kube-apiserver", args, []mount{
		{"k8s-certs", pki, corev1.HostPathDirectoryOrCreate, true},
		{"ca-certs", "/etc/ssl/certs", corev1.HostPathDirectoryOrCreate, true},
		{"audit-policy", contract.AuditPolicyPath, corev1.HostPathFile, true},
		{"audit-log", contract.AuditLogDir, corev1.HostPathDirectoryOrCreate, false},
	}, probes{scheme: corev1.URISchemeHTTPS, port: 6443, host: c.NodeIP.String(), live: "/livez", ready: "/readyz", startup: "/livez"})
	p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("250m")
	return p
}

// NodeCIDRMaskSize is the size of each node's pod CIDR, as the controller-manager allocates them
// (and as kubeforge assigns them up front, see cluster/).
const NodeCIDRMaskSize = 24

// LeaderElectRetryPeriod is how often the controller-manager and scheduler retry to take their
// lease (upstream default 2s). Their first tries come while the API server is still creating its
// RBAC roles; retrying sooner shortens the start by a second or two and costs nothing.
const LeaderElectRetryPeriod = "500ms"

// KubeAPIQPS and KubeAPIBurst are the controller-manager's client-side rate limit (upstream 20/30).
// At its first start it creates a ServiceAccount and requests a token for each of its ~40
// controllers before they run; at 20 requests a second that alone takes about 5 s, while the
// API server sits mostly idle. A one-node cluster has no load to protect the API server from.
const (
	KubeAPIQPS   = "200"
	KubeAPIBurst = "300"
)

func controllerManager(c Config) *corev1.Pod {
	conf := "/etc/kubernetes/controller-manager.conf"
	args := map[string]string{
		"allocate-node-cidrs":              "true",
		"authentication-kubeconfig":        conf,
		"authorization-kubeconfig":         conf,
		"bind-address":                     "127.0.0.1",
		"client-ca-file":                   pki + "/ca.crt",
		"cluster-cidr":                     c.PodSubnet,
		"cluster-name":                     c.ClusterName,
		"cluster-signing-cert-file":        pki + "/ca.crt",
		"cluster-signing-key-file":         pki + "/ca.key",
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kube-api-burst":                   KubeAPIBurst,
		"kube-api-qps":                     KubeAPIQPS,
		"kubeconfig":                       conf,
		"leader-elect":                     "true",
		"leader-elect-retry-period":        LeaderElectRetryPeriod,
		"node-cidr-mask-size":              strconv.Itoa(NodeCIDRMaskSize),
		"requestheader-client-ca-file":     pki + "/front-proxy-ca.crt",
		"root-ca-file":                     pki + "/ca.crt",
		"service-account-private-key-file": pki + "/sa.key",
		"service-cluster-ip-range":         c.ServiceSubnet,
		"use-service-account-credentials":  "true",
	}
	p := pod(c, "kube-controller-manager", args, []mount{
		{"k8s-certs", pki, corev1.HostPathDirectoryOrCreate, true},
		{"ca-certs", "/etc/ssl/certs", corev1.HostPathDirectoryOrCreate, true},
		{"kubeconfig", conf, corev1.HostPathFileOrCreate, true},
		{"flexvolume-dir", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", corev1.HostPathDirectoryOrCreate, false},
	}, probes{scheme: corev1.URISchemeHTTPS, port: 10257, host: "127.0.0.1", live: "/healthz", startup: "/healthz"})
	p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("200m")
	return p
}

func scheduler(c Config) *corev1.Pod {
	conf := "/etc/kubernetes/scheduler.conf"
	args := map[string]string{
		"authentication-kubeconfig": conf,
		"authorization-kubeconfig":  conf,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                conf,
		"leader-elect":              "true",
		"leader-elect-retry-period": LeaderElectRetryPeriod,
	}
	p := pod(c, "kube-scheduler", args, []mount{
		{"kubeconfig", conf, corev1.HostPathFileOrCreate, true},
	}, probes{scheme: corev1.URISchemeHTTPS, port: 10259, host: "127.0.0.1", live: "/livez", ready: "/readyz", startup: "/livez"})
	p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
	return p
}

type mount struct {
	name     string
	path     string
	typ      corev1.HostPathType
	readOnly bool
}

type probes struct {
	scheme               corev1.URIScheme
	host                 string
	port                 int
	live, ready, startup string
}

func (p probes) probe(path string, failures int32) *corev1.Probe {
	if path == "" {
		return nil
	}
	host := p.host
	if host == "" {
		host = "127.0.0.1"
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Host: host, Path: path, Port: intstr.FromInt(p.port), Scheme: p.scheme,
		}},
		InitialDelaySeconds: 0,
		PeriodSeconds:       1,
		TimeoutSeconds:      15,
		FailureThreshold:    failures,
	}
}

// pod builds a kubeadm-style static pod for a component run from the node binary.
func pod(c Config, component string, args map[string]string, mounts []mount, pr probes) *corev1.Pod {
	if c.SlowMachine && (component == "kube-controller-manager" || component == "kube-scheduler") {
		// An emulated CPU answers late: a leader must not lose its lease (and exit) for that.
		args["leader-elect-lease-duration"] = "60s"
		args["leader-elect-renew-deadline"] = "40s"
		args["leader-elect-retry-period"] = "5s"
	}
	for k, v := range c.ExtraArgs[component] {
		args[k] = v
	}
	cmd := []string{contract.NodeBinary, component}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd = append(cmd, fmt.Sprintf("--%s=%s", k, args[k]))
	}
	// The node's /usr holds the binary (and, for kube-proxy, iptables); read-only.
	mounts = append([]mount{{"node-usr", "/usr", corev1.HostPathDirectory, true}}, mounts...)
	var vols []corev1.Volume
	var vms []corev1.VolumeMount
	for _, m := range mounts {
		t := m.typ
		vols = append(vols, corev1.Volume{Name: m.name, VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: m.path, Type: &t}}})
		vms = append(vms, corev1.VolumeMount{Name: m.name, MountPath: m.path, ReadOnly: m.readOnly})
	}
	live := pr.probe(pr.live, 8)
	if live != nil {
		live.PeriodSeconds = 10
		live.InitialDelaySeconds = 10
	}
	ready := pr.probe(pr.ready, 3)
	startup := pr.probe(pr.startup, 240)
	// Memory is traded for CPU once started (SteadyGCEnv), except where CPU is what is short;
	// there the components wait longer for what they need (StartWaitEnv).
	env := []corev1.EnvVar{{Name: contract.SteadyGCEnv, Value: SteadyGCPercent}}
	if c.SlowMachine {
		env = []corev1.EnvVar{{Name: contract.StartWaitEnv, Value: EmulatedStartWait.String()}}
		for _, p := range []*corev1.Probe{ready, startup} {
			if p != nil {
				p.PeriodSeconds = 5
			}
		}
		if startup != nil {
			startup.FailureThreshold = 120
		}
		if live != nil { // a busy component answers late: restart it only after 5 minutes
			live.FailureThreshold, live.TimeoutSeconds = 30, 30
		}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      component,
			Namespace: metav1.NamespaceSystem,
			Labels:    map[string]string{"component": component, "tier": "control-plane"},
			Annotations: map[string]string{
				"kubeforge.dev/kubernetes-version": c.KubernetesVersion,
			},
		},
		Spec: corev1.PodSpec{
			HostNetwork:       true,
			PriorityClassName: "system-node-critical",
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            component,
				Image:           ComponentsImage(c.KubernetesVersion),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         cmd,
				Env:             env,
				Resources:       corev1.ResourceRequirements{Requests: corev1.ResourceList{}},
				VolumeMounts:    vms,
				LivenessProbe:   live,
				ReadinessProbe:  ready,
				StartupProbe:    startup,
			}},
			Volumes: vols,
		},
	}
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// EmulatedStartWait is how long the scheduler and the controller-manager of an emulated node wait
// for the API server to be ready before they run anyway (contract.StartWaitEnv): its start takes
// minutes there.
const EmulatedStartWait = 10 * time.Minute

// SteadyGCPercent is the GC percentage (contract.SteadyGCEnv) the components switch to once
// started.
const SteadyGCPercent = "50"
