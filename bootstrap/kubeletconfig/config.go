// Package kubeletconfig renders the kubelet's configuration file (/var/lib/kubelet/config.yaml) and the
// command line the node's supervisor starts it with.
package kubeletconfig

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/contract"
)

// Paths inside a node, as kubeadm lays them out.
const (
	ConfigPath     = "/var/lib/kubelet/config.yaml"
	KubeconfigPath = "/etc/kubernetes/kubelet.conf"
	// ServingCertPath and ServingKeyPath are the kubelet's serving certificate, signed by the
	// cluster CA (so that clients of its API, metrics-server's scrapes, can verify it).
	ServingCertPath = contract.PKIDir + "/kubelet-serving.crt"
	ServingKeyPath  = contract.PKIDir + "/kubelet-serving.key"
	ContainerdSock  = "unix://" + contract.ContainerdSocket
)

// Options are what the kubelet configuration depends on.
type Options struct {
	ClusterDNS    netip.Addr
	ClusterDomain string
	// ResolvConf is the resolv.conf pods with dnsPolicy Default get (CoreDNS forwards to it).
	ResolvConf string
	// SystemReserved (cpu, memory) is taken off the node's capacity in what it reports as
	// allocatable: a container node capped below the host's size reserves the difference.
	SystemReserved map[string]string
	// FeatureGates are the kubelet's featureGates.
	FeatureGates map[string]bool
	// Emulated is set for nodes whose CPU is emulated: the kubelet syncs its pods less often.
	Emulated bool
	// ServingCert makes the kubelet serve with ServingCertPath/ServingKeyPath rather than a
	// certificate it signs itself.
	ServingCert bool
}

func syncFrequency(emulated bool) time.Duration {
	if emulated {
		return 10 * time.Second
	}
	return 3 * time.Second
}

// Render returns the KubeletConfiguration YAML.
func Render(o Options) ([]byte, error) {
	zero := "0%"
	c := kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true), CacheTTL: metav1.Duration{Duration: 0}},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: contract.PKIDir + "/ca.crt"},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{
			Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook,
			Webhook: kubeletv1beta1.KubeletWebhookAuthorization{
				CacheAuthorizedTTL:   metav1.Duration{Duration: 0},
				CacheUnauthorizedTTL: metav1.Duration{Duration: 0},
			},
		},
		CgroupDriver:             "cgroupfs",
		ClusterDNS:               []string{o.ClusterDNS.String()},
		ClusterDomain:            o.ClusterDomain,
		ContainerRuntimeEndpoint: ContainerdSock,
		StaticPodPath:            contract.ManifestsDir,
		ResolverConfig:           ptr.To(o.ResolvConf),
		// The host's cgroup v1 is still supported by v1.36 when asked (users on cgroup v2 are unaffected).
		FailCgroupV1: ptr.To(false),
		FailSwapOn:   ptr.To(false),
		// The node shares the host's disk with everything else: never evict pods because the laptop's
		// or the CI runner's disk is full, and never garbage-collect preloaded images.
		EvictionHard: map[string]string{
			"nodefs.available": zero, "nodefs.inodesFree": zero,
			"imagefs.available": zero, "imagefs.inodesFree": zero,
		},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		// Lowering its own oom_score_adj needs CAP_SYS_RESOURCE, which a container node lacks.
		OOMScoreAdj:         ptr.To[int32](0),
		SerializeImagePulls: ptr.To(false),
		RotateCertificates:  false,
		FileCheckFrequency:  metav1.Duration{Duration: 5 * time.Second},
		// The kubelet creates a static pod's mirror pod only at a sync of the pod after its Node
		// registered (and retries a failed one at the next): with nothing else to trigger a sync,
		// etcd-<node> and friends appear in kube-system up to 1.5 periods after registration, and
		// start waits for them. 3 s (upstream 1m) lists them within seconds, for ~1% of a core
		// more kubelet CPU when idle (10 s on emulated CPUs). It also brings ConfigMap updates to pods sooner.
		SyncFrequency:             metav1.Duration{Duration: syncFrequency(o.Emulated)},
		HealthzBindAddress:        "127.0.0.1",
		NodeStatusUpdateFrequency: metav1.Duration{Duration: 10 * time.Second},
		ProtectKernelDefaults:     false,
		// The node's own sysctls are set up by the supervisor; the kubelet leaves host-wide ones alone.
		MakeIPTablesUtilChains:        ptr.To(true),
		LocalStorageCapacityIsolation: ptr.To(true),
		SystemReserved:                o.SystemReserved,
		FeatureGates:                  o.FeatureGates,
	}
	if o.ServingCert {
		c.TLSCertFile, c.TLSPrivateKeyFile = ServingCertPath, ServingKeyPath
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("rendering the kubelet configuration: %w", err)
	}
	return b, nil
}

// Args returns the kubelet's command-line flags (what the config file cannot say). extra adds
// flags (name without -- to value) after kubeforge's, or replaces kubeforge's flag of that name.
func Args(nodeName string, nodeIP netip.Addr, labels map[string]string, taints []string, extra map[string]string) []string {
	flags := [][2]string{
		{"config", ConfigPath},
		{"kubeconfig", KubeconfigPath},
		{"hostname-override", nodeName},
		{"node-ip", nodeIP.String()},
	}
	if len(labels) > 0 {
		kv := make([]string, 0, len(labels))
		for k, v := range labels {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv) // the same services.json on every render
		flags = append(flags, [2]string{"node-labels", strings.Join(kv, ",")})
	}
	if len(taints) > 0 {
		flags = append(flags, [2]string{"register-with-taints", strings.Join(taints, ",")})
	}
	args := []string{"kubelet"}
	for _, f := range flags {
		if v, ok := extra[f[0]]; ok {
			f[1] = v
		}
		args = append(args, "--"+f[0]+"="+f[1])
	}
	names := make([]string, 0, len(extra))
	for k := range extra {
		if !slices.ContainsFunc(flags, func(f [2]string) bool { return f[0] == k }) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "--"+k+"="+extra[k])
	}
	return args
}
