package kubeletconfig

import (
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/strictyaml"
)

func render(t *testing.T, o Options) kubeletv1beta1.KubeletConfiguration {
	t.Helper()
	b, err := Render(o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var c kubeletv1beta1.KubeletConfiguration
	// Strict: a field the kubelet does not know would make it refuse the file (or silently
	// ignore a setting).
	if err := strictyaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("config does not parse strictly as a KubeletConfiguration: %v\n%s", err, b)
	}
	return c
}

func TestRender(t *testing.T) {
	c := render(t, Options{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", ResolvConf: contract.PodResolvConf})

	if c.APIVersion != "kubelet.config.k8s.io/v1beta1" || c.Kind != "KubeletConfiguration" {
		t.Errorf("apiVersion/kind = %q/%q", c.APIVersion, c.Kind)
	}
	if !reflect.DeepEqual(c.ClusterDNS, []string{"10.96.0.10"}) {
		t.Errorf("clusterDNS = %v, want [10.96.0.10]", c.ClusterDNS)
	}
	if c.ClusterDomain != "cluster.local" {
		t.Errorf("clusterDomain = %q", c.ClusterDomain)
	}
	if c.ResolverConfig == nil || *c.ResolverConfig != contract.PodResolvConf {
		t.Errorf("resolvConf = %v, want %q", c.ResolverConfig, contract.PodResolvConf)
	}
	// Containerd in the node is configured for cgroupfs (no systemd in the node).
	if c.CgroupDriver != "cgroupfs" {
		t.Errorf("cgroupDriver = %q, want cgroupfs", c.CgroupDriver)
	}
	// Left unset, v1.36's kubelet refuses to start on a cgroup v1 host.
	if c.FailCgroupV1 == nil || *c.FailCgroupV1 {
		t.Errorf("failCgroupV1 = %v, want explicit false", c.FailCgroupV1)
	}
	if c.FailSwapOn == nil || *c.FailSwapOn {
		t.Errorf("failSwapOn = %v, want explicit false (laptops have swap)", c.FailSwapOn)
	}
	if c.ContainerRuntimeEndpoint != ContainerdSock {
		t.Errorf("containerRuntimeEndpoint = %q, want %q", c.ContainerRuntimeEndpoint, ContainerdSock)
	}
	if c.StaticPodPath != "/etc/kubernetes/manifests" {
		t.Errorf("staticPodPath = %q", c.StaticPodPath)
	}

	// Security: no anonymous access; webhook authn/authz against the API server; client certs
	// from the cluster CA (the API server's kubelet client).
	if a := c.Authentication.Anonymous.Enabled; a == nil || *a {
		t.Errorf("anonymous auth = %v, want explicit false", a)
	}
	if w := c.Authentication.Webhook.Enabled; w == nil || !*w {
		t.Errorf("webhook authn = %v, want true", w)
	}
	if c.Authentication.X509.ClientCAFile != "/etc/kubernetes/pki/ca.crt" {
		t.Errorf("clientCAFile = %q", c.Authentication.X509.ClientCAFile)
	}
	if c.Authorization.Mode != kubeletv1beta1.KubeletAuthorizationModeWebhook {
		t.Errorf("authorization mode = %q, want Webhook", c.Authorization.Mode)
	}

	// Never evict pods or collect images because the host's disk is full.
	for _, k := range []string{"nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree"} {
		if v, ok := c.EvictionHard[k]; !ok || v != "0%" {
			t.Errorf("evictionHard[%s] = %q (set %v), want 0%%", k, v, ok)
		}
	}
	if c.ImageGCHighThresholdPercent == nil || *c.ImageGCHighThresholdPercent != 100 {
		t.Errorf("imageGCHighThresholdPercent = %v, want 100", c.ImageGCHighThresholdPercent)
	}
	if c.OOMScoreAdj == nil || *c.OOMScoreAdj != 0 {
		t.Errorf("oomScoreAdj = %v, want explicit 0", c.OOMScoreAdj)
	}
	if c.HealthzBindAddress != "127.0.0.1" {
		t.Errorf("healthzBindAddress = %q", c.HealthzBindAddress)
	}
	if c.FileCheckFrequency.Duration <= 0 || c.FileCheckFrequency.Duration > 20*time.Second {
		t.Errorf("fileCheckFrequency = %v: static pod changes would be picked up slowly", c.FileCheckFrequency.Duration)
	}
	if c.RotateCertificates {
		t.Errorf("rotateCertificates = true, but nodes get their certificates from the host")
	}
}

func TestRenderOptions(t *testing.T) {
	c := render(t, Options{ClusterDNS: netip.MustParseAddr("fd00:10:96::a"), ClusterDomain: "example.test", ResolvConf: "/run/resolv.conf"})
	if !reflect.DeepEqual(c.ClusterDNS, []string{"fd00:10:96::a"}) {
		t.Errorf("clusterDNS = %v", c.ClusterDNS)
	}
	if c.ClusterDomain != "example.test" {
		t.Errorf("clusterDomain = %q", c.ClusterDomain)
	}
	if c.ResolverConfig == nil || *c.ResolverConfig != "/run/resolv.conf" {
		t.Errorf("resolvConf = %v", c.ResolverConfig)
	}
}

// The mirror pods appear at the kubelet's first pod sync after its Node registered: a short sync
// period (longer on emulated CPUs, where each sync is costly).
func TestRenderSyncFrequency(t *testing.T) {
	if got := render(t, Options{}).SyncFrequency.Duration; got != 3*time.Second {
		t.Errorf("syncFrequency = %s, want 3s", got)
	}
	if got := render(t, Options{Emulated: true}).SyncFrequency.Duration; got != 10*time.Second {
		t.Errorf("syncFrequency on emulated CPUs = %s, want 10s", got)
	}
}

func TestRenderDeterministic(t *testing.T) {
	o := Options{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", ResolvConf: contract.PodResolvConf}
	a, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatalf("Render is not deterministic:\n%s\n---\n%s", a, b)
		}
	}
}

func TestArgs(t *testing.T) {
	got := Args("dev-m02", netip.MustParseAddr("192.168.49.3"), nil, nil, nil)
	want := []string{
		"kubelet",
		"--config=" + ConfigPath,
		"--kubeconfig=" + KubeconfigPath,
		"--hostname-override=dev-m02",
		"--node-ip=192.168.49.3",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q\nwant %q", got, want)
	}
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "--node-labels") }) {
		t.Errorf("Args without labels has --node-labels: %q", got)
	}

	v6 := Args("n", netip.MustParseAddr("fd00::2"), map[string]string{}, nil, nil)
	if !slices.Contains(v6, "--node-ip=fd00::2") {
		t.Errorf("Args(IPv6) = %q, want --node-ip=fd00::2", v6)
	}
	if slices.ContainsFunc(v6, func(s string) bool { return strings.HasPrefix(s, "--node-labels") }) {
		t.Errorf("Args with an empty label map has --node-labels: %q", v6)
	}
}

func TestArgsLabels(t *testing.T) {
	labels := map[string]string{"a": "1", "kubeforge.dev/role": "worker", "zone": ""}
	args := Args("n", netip.MustParseAddr("10.0.0.2"), labels, []string{"a=b:NoSchedule", "c:NoExecute"}, nil)
	var flag string
	n := 0
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--node-labels="); ok {
			flag = v
			n++
		}
	}
	if n != 1 {
		t.Fatalf("Args has %d --node-labels flags, want 1: %q", n, args)
	}
	pairs := strings.Split(flag, ",")
	sort.Strings(pairs)
	want := []string{"a=1", "kubeforge.dev/role=worker", "zone="}
	if !reflect.DeepEqual(pairs, want) {
		t.Errorf("--node-labels=%s, want the pairs %q in any order", flag, want)
	}
	if args[0] != "kubelet" {
		t.Errorf("args[0] = %q, want kubelet (the node binary's subcommand)", args[0])
	}
	if last := args[len(args)-1]; last != "--register-with-taints=a=b:NoSchedule,c:NoExecute" {
		t.Errorf("taints flag = %q", last)
	}
}

func TestArgsExtra(t *testing.T) {
	got := Args("n", netip.MustParseAddr("10.0.0.2"), nil, []string{"a:NoSchedule"},
		map[string]string{"max-pods": "50", "v": "2", "node-ip": "10.0.0.9"})
	want := []string{
		"kubelet",
		"--config=" + ConfigPath,
		"--kubeconfig=" + KubeconfigPath,
		"--hostname-override=n",
		"--node-ip=10.0.0.9", // replaced in place, not given twice
		"--register-with-taints=a:NoSchedule",
		"--max-pods=50",
		"--v=2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Args with extra flags = %q\nwant %q", got, want)
	}
}

func TestRenderFeatureGates(t *testing.T) {
	gates := map[string]bool{"ContextualLogging": false, "NativeHistograms": true}
	c := render(t, Options{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", ResolvConf: contract.PodResolvConf,
		FeatureGates: gates})
	if !reflect.DeepEqual(c.FeatureGates, gates) {
		t.Errorf("featureGates = %v, want %v", c.FeatureGates, gates)
	}
	if c := render(t, Options{ClusterDNS: netip.MustParseAddr("10.96.0.10")}); len(c.FeatureGates) != 0 {
		t.Errorf("featureGates without gates = %v", c.FeatureGates)
	}
}

func TestPaths(t *testing.T) {
	// kubeadm's layout, which the rest of the node (supervisor, pki, kubeconfigs) relies on.
	for got, want := range map[string]string{
		ConfigPath:     "/var/lib/kubelet/config.yaml",
		KubeconfigPath: "/etc/kubernetes/kubelet.conf",
		ContainerdSock: "unix:///run/containerd/containerd.sock",
	} {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
}

func TestRenderSystemReserved(t *testing.T) {
	b, err := Render(Options{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", ResolvConf: contract.PodResolvConf,
		SystemReserved: map[string]string{"cpu": "1000m", "memory": "1073741824"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, "systemReserved:\n  cpu: 1000m\n  memory: \"1073741824\"") {
		t.Errorf("config lacks the reservation:\n%s", s)
	}
	b, _ = Render(Options{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", ResolvConf: contract.PodResolvConf})
	if strings.Contains(string(b), "systemReserved") {
		t.Errorf("uncapped node reserves something")
	}
}
