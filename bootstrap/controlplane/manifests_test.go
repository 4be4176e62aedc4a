package controlplane

import (
	"net/netip"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/strictyaml"
	"kubeforge.dev/kubeforge/internal/versions"
)

var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

func testConfig() Config {
	return Config{
		ClusterName:       "test",
		KubernetesVersion: versions.Default().Kubernetes,
		NodeName:          "test",
		NodeIP:            netip.MustParseAddr("192.168.49.2"),
		PodSubnet:         "10.244.0.0/16",
		ServiceSubnet:     "10.96.0.0/16",
		DNSDomain:         "cluster.local",
	}
}

func pods(t *testing.T, c Config) map[string]*corev1.Pod {
	t.Helper()
	ms, err := Manifests(c)
	if err != nil {
		t.Fatalf("Manifests: %v", err)
	}
	var names []string
	for n := range ms {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"}
	if !slices.Equal(names, want) {
		t.Fatalf("manifest files = %q, want %q", names, want)
	}
	out := map[string]*corev1.Pod{}
	for n, b := range ms {
		var p corev1.Pod
		if err := strictyaml.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s does not parse strictly as a Pod: %v\n%s", n, err, b)
		}
		out[strings.TrimSuffix(n, ".yaml")] = &p
	}
	return out
}

// flags returns the container's --name=value flags (after the binary and the component name).
func flags(t *testing.T, p *corev1.Pod) map[string]string {
	t.Helper()
	cmd := p.Spec.Containers[0].Command
	out := map[string]string{}
	for _, a := range cmd[2:] {
		k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not --flag=value", p.Name, a)
			continue
		}
		if _, dup := out[k]; dup {
			t.Errorf("%s: flag --%s given twice", p.Name, k)
		}
		out[k] = v
	}
	return out
}

func TestManifestsCommon(t *testing.T) {
	c := testConfig()
	for name, p := range pods(t, c) {
		t.Run(name, func(t *testing.T) {
			if p.APIVersion != "v1" || p.Kind != "Pod" {
				t.Errorf("apiVersion/kind = %q/%q", p.APIVersion, p.Kind)
			}
			if p.Namespace != metav1.NamespaceSystem {
				t.Errorf("namespace = %q, want kube-system", p.Namespace)
			}
			// The kubelet names the mirror pod <name>-<node>; the file name is the component.
			if p.Name != name {
				t.Errorf("name = %q, want %q", p.Name, name)
			}
			if p.Labels["component"] != name || p.Labels["tier"] != "control-plane" {
				t.Errorf("labels = %v, want component=%s tier=control-plane (kubeadm's, which tools select on)", p.Labels, name)
			}
			if !p.Spec.HostNetwork {
				t.Errorf("hostNetwork = false: the control plane must run before any pod network")
			}
			if p.Spec.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName = %q", p.Spec.PriorityClassName)
			}
			if len(p.Spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(p.Spec.Containers))
			}
			ctr := p.Spec.Containers[0]
			if ctr.Name != name {
				t.Errorf("container name = %q", ctr.Name)
			}
			if ctr.Image != ComponentsImage(c.KubernetesVersion) {
				t.Errorf("image = %q, want %q", ctr.Image, ComponentsImage(c.KubernetesVersion))
			}
			if ctr.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("imagePullPolicy = %q: the components image only exists locally", ctr.ImagePullPolicy)
			}
			if len(ctr.Command) < 3 || ctr.Command[0] != contract.NodeBinary || ctr.Command[1] != name {
				t.Fatalf("command = %q, want %s %s --flags...", ctr.Command, contract.NodeBinary, name)
			}
			var keys []string
			for _, a := range ctr.Command[2:] {
				k, _, _ := strings.Cut(a, "=")
				keys = append(keys, k)
			}
			if !sort.StringsAreSorted(keys) {
				t.Errorf("flags are not sorted by name (manifests must be stable, or the kubelet restarts the pod): %q", keys)
			}
			flags(t, p)

			// Every mount has a hostPath volume, and the node's /usr (the binary) is mounted read-only.
			vols := map[string]corev1.Volume{}
			for _, v := range p.Spec.Volumes {
				if v.HostPath == nil {
					t.Errorf("volume %s is not a hostPath", v.Name)
					continue
				}
				vols[v.Name] = v
			}
			var usr bool
			for _, m := range ctr.VolumeMounts {
				v, ok := vols[m.Name]
				if !ok {
					t.Errorf("mount %s has no volume", m.Name)
					continue
				}
				if v.HostPath.Path != m.MountPath {
					t.Errorf("mount %s: host %s mounted at %s, want the same path", m.Name, v.HostPath.Path, m.MountPath)
				}
				if m.MountPath == "/usr" {
					usr = true
					if !m.ReadOnly {
						t.Errorf("/usr is mounted read-write")
					}
				}
			}
			if !usr {
				t.Errorf("the node's /usr (where %s lives) is not mounted", contract.NodeBinary)
			}
			if !strings.HasPrefix(contract.NodeBinary, "/usr/") {
				t.Errorf("NodeBinary %s is outside /usr", contract.NodeBinary)
			}
			if p.Annotations["kubeforge.dev/kubernetes-version"] != c.KubernetesVersion {
				t.Errorf("annotations = %v", p.Annotations)
			}
			if p.Spec.SecurityContext == nil || p.Spec.SecurityContext.SeccompProfile == nil ||
				p.Spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccomp profile is not RuntimeDefault")
			}
		})
	}
}

// TestFilesAreMounted checks that every file a component is told to read is inside one of its
// mounts: a missing mount only shows when the pod crash-loops on a real node.
func TestFilesAreMounted(t *testing.T) {
	for name, p := range pods(t, testConfig()) {
		ctr := p.Spec.Containers[0]
		for k, v := range flags(t, p) {
			if !strings.HasPrefix(v, "/") {
				continue
			}
			mounted := false
			for _, m := range ctr.VolumeMounts {
				if v == m.MountPath || strings.HasPrefix(v, strings.TrimSuffix(m.MountPath, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("%s: --%s=%s is not under any mount", name, k, v)
			}
		}
	}
}

func TestAPIServer(t *testing.T) {
	c := testConfig()
	p := pods(t, c)["kube-apiserver"]
	f := flags(t, p)
	for k, want := range map[string]string{
		"advertise-address":        "192.168.49.2",
		"service-cluster-ip-range": "10.96.0.0/16",
		"secure-port":              "6443",
		"authorization-mode":       "Node,RBAC",
		"enable-admission-plugins": "NodeRestriction",
		"service-account-issuer":   "https://kubernetes.default.svc.cluster.local",
		"etcd-servers":             "https://127.0.0.1:2379",
		"client-ca-file":           "/etc/kubernetes/pki/ca.crt",
		"tls-cert-file":            "/etc/kubernetes/pki/apiserver.crt",
		"tls-private-key-file":     "/etc/kubernetes/pki/apiserver.key",
		"allow-privileged":         "true",
	} {
		if f[k] != want {
			t.Errorf("--%s=%q, want %q", k, f[k], want)
		}
	}
	ctr := p.Spec.Containers[0]
	for what, pr := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"liveness":  {ctr.LivenessProbe, "/livez"},
		"readiness": {ctr.ReadinessProbe, "/readyz"},
		"startup":   {ctr.StartupProbe, "/livez"},
	} {
		checkProbe(t, "kube-apiserver "+what, pr.probe, corev1.URISchemeHTTPS, "192.168.49.2", 6443, pr.path)
	}
}

func TestEtcd(t *testing.T) {
	c := testConfig()
	p := pods(t, c)["etcd"]
	f := flags(t, p)
	for k, want := range map[string]string{
		"name":                        "test",
		"data-dir":                    "/var/lib/etcd",
		"advertise-client-urls":       "https://192.168.49.2:2379",
		"listen-client-urls":          "https://127.0.0.1:2379,https://192.168.49.2:2379",
		"listen-peer-urls":            "https://192.168.49.2:2380",
		"initial-advertise-peer-urls": "https://192.168.49.2:2380",
		"initial-cluster":             "test=https://192.168.49.2:2380",
		"initial-cluster-state":       "new",
		"listen-metrics-urls":         "http://127.0.0.1:2381",
		"client-cert-auth":            "true",
		"peer-client-cert-auth":       "true",
	} {
		if f[k] != want {
			t.Errorf("--%s=%q, want %q", k, f[k], want)
		}
	}
	// The data must survive the pod: a writable hostPath at the data dir.
	var data *corev1.Volume
	for i, v := range p.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == f["data-dir"] {
			data = &p.Spec.Volumes[i]
		}
	}
	if data == nil {
		t.Fatalf("etcd's data dir %s is not a hostPath volume", f["data-dir"])
	}
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		if m.Name == data.Name && m.ReadOnly {
			t.Errorf("etcd's data dir is mounted read-only")
		}
	}
	ctr := p.Spec.Containers[0]
	checkProbe(t, "etcd liveness", ctr.LivenessProbe, corev1.URISchemeHTTP, "127.0.0.1", 2381, "/livez")
	checkProbe(t, "etcd readiness", ctr.ReadinessProbe, corev1.URISchemeHTTP, "127.0.0.1", 2381, "/readyz")
	checkProbe(t, "etcd startup", ctr.StartupProbe, corev1.URISchemeHTTP, "127.0.0.1", 2381, "/readyz")
	if q, ok := ctr.Resources.Requests[corev1.ResourceMemory]; !ok || q.String() != "100Mi" {
		t.Errorf("etcd memory request = %v", ctr.Resources.Requests)
	}
}

func TestControllerManager(t *testing.T) {
	c := testConfig()
	p := pods(t, c)["kube-controller-manager"]
	f := flags(t, p)
	for k, want := range map[string]string{
		"cluster-cidr":              "10.244.0.0/16",
		"service-cluster-ip-range":  "10.96.0.0/16",
		"cluster-name":              "test",
		"allocate-node-cidrs":       "true", // netctl routes to the nodes' podCIDRs
		"kubeconfig":                "/etc/kubernetes/controller-manager.conf",
		"cluster-signing-cert-file": "/etc/kubernetes/pki/ca.crt",
		"cluster-signing-key-file":  "/etc/kubernetes/pki/ca.key",
		"bind-address":              "127.0.0.1",
		"leader-elect":              "true",
	} {
		if f[k] != want {
			t.Errorf("--%s=%q, want %q", k, f[k], want)
		}
	}
	if !strings.Contains(f["controllers"], "*") {
		t.Errorf("--controllers=%q does not enable the default controllers", f["controllers"])
	}
	ctr := p.Spec.Containers[0]
	checkProbe(t, "kube-controller-manager liveness", ctr.LivenessProbe, corev1.URISchemeHTTPS, "127.0.0.1", 10257, "/healthz")
	checkProbe(t, "kube-controller-manager startup", ctr.StartupProbe, corev1.URISchemeHTTPS, "127.0.0.1", 10257, "/healthz")
	if ctr.ReadinessProbe != nil {
		t.Errorf("kube-controller-manager has a readiness probe; the source sets none")
	}
}

func TestScheduler(t *testing.T) {
	p := pods(t, testConfig())["kube-scheduler"]
	f := flags(t, p)
	if f["kubeconfig"] != "/etc/kubernetes/scheduler.conf" || f["leader-elect"] != "true" || f["bind-address"] != "127.0.0.1" {
		t.Errorf("flags = %v", f)
	}
	ctr := p.Spec.Containers[0]
	checkProbe(t, "kube-scheduler liveness", ctr.LivenessProbe, corev1.URISchemeHTTPS, "127.0.0.1", 10259, "/livez")
	checkProbe(t, "kube-scheduler readiness", ctr.ReadinessProbe, corev1.URISchemeHTTPS, "127.0.0.1", 10259, "/readyz")
	checkProbe(t, "kube-scheduler startup", ctr.StartupProbe, corev1.URISchemeHTTPS, "127.0.0.1", 10259, "/livez")
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, scheme corev1.URIScheme, host string, port int, path string) {
	t.Helper()
	if p == nil {
		t.Errorf("%s probe missing", what)
		return
	}
	g := p.HTTPGet
	if g == nil {
		t.Errorf("%s probe is not an HTTP GET", what)
		return
	}
	if g.Scheme != scheme || g.Host != host || g.Port.IntValue() != port || g.Path != path {
		t.Errorf("%s probe = %s://%s:%s%s, want %s://%s:%d%s", what, g.Scheme, g.Host, g.Port.String(), g.Path, scheme, host, port, path)
	}
	if p.FailureThreshold < 1 || p.PeriodSeconds < 1 || p.TimeoutSeconds < 1 {
		t.Errorf("%s probe thresholds = %+v", what, p)
	}
}

func TestExtraArgsOverride(t *testing.T) {
	c := testConfig()
	c.ExtraArgs = map[string]map[string]string{
		"kube-apiserver": {"authorization-mode": "RBAC", "v": "4"},
		"kube-scheduler": {"leader-elect": "false"},
	}
	ps := pods(t, c)
	api := flags(t, ps["kube-apiserver"])
	if api["authorization-mode"] != "RBAC" || api["v"] != "4" {
		t.Errorf("apiserver extra args not applied: authorization-mode=%q v=%q", api["authorization-mode"], api["v"])
	}
	if api["advertise-address"] != "192.168.49.2" {
		t.Errorf("extra args dropped the defaults: %v", api)
	}
	if flags(t, ps["kube-scheduler"])["leader-elect"] != "false" {
		t.Errorf("scheduler extra args not applied")
	}
	if _, ok := flags(t, ps["kube-controller-manager"])["v"]; ok {
		t.Errorf("kube-apiserver's extra args leaked into kube-controller-manager")
	}
	// Extra args must not leak into a later rendering.
	if _, ok := flags(t, pods(t, testConfig())["kube-apiserver"])["v"]; ok {
		t.Errorf("extra args leaked into a later Manifests call")
	}
}

func TestEtcdJoin(t *testing.T) {
	c := testConfig()
	c.NodeName = "test-m02"
	c.NodeIP = netip.MustParseAddr("192.168.49.3")
	c.InitialCluster = "test=https://192.168.49.2:2380,test-m02=https://192.168.49.3:2380"
	c.EtcdClusterState = "existing"
	f := flags(t, pods(t, c)["etcd"])
	if f["initial-cluster"] != c.InitialCluster || f["initial-cluster-state"] != "existing" || f["name"] != "test-m02" {
		t.Errorf("join flags = initial-cluster %q state %q name %q", f["initial-cluster"], f["initial-cluster-state"], f["name"])
	}
}

func TestIPv6(t *testing.T) {
	c := testConfig()
	c.NodeIP = netip.MustParseAddr("fd00:49::2")
	c.ServiceSubnet = "fd00:10:96::/112"
	ps := pods(t, c)
	e := flags(t, ps["etcd"])
	if e["advertise-client-urls"] != "https://[fd00:49::2]:2379" || e["initial-cluster"] != "test=https://[fd00:49::2]:2380" {
		t.Errorf("etcd URLs do not bracket the IPv6 address: %q, %q", e["advertise-client-urls"], e["initial-cluster"])
	}
	a := flags(t, ps["kube-apiserver"])
	if a["advertise-address"] != "fd00:49::2" || a["service-cluster-ip-range"] != "fd00:10:96::/112" {
		t.Errorf("apiserver: advertise-address %q service range %q", a["advertise-address"], a["service-cluster-ip-range"])
	}
}

func TestManifestsDeterministic(t *testing.T) {
	// The kubelet restarts a static pod whenever its file changes: re-rendering must not.
	a, err := Manifests(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, err := Manifests(testConfig())
		if err != nil {
			t.Fatal(err)
		}
		for n := range a {
			if string(a[n]) != string(b[n]) {
				t.Fatalf("%s differs between two renderings", n)
			}
		}
	}
}

func TestConstants(t *testing.T) {
	if contract.ManifestsDir != "/etc/kubernetes/manifests" {
		t.Errorf("ManifestsDir = %q", contract.ManifestsDir)
	}
	if !path.IsAbs(contract.NodeBinary) {
		t.Errorf("NodeBinary = %q is not absolute", contract.NodeBinary)
	}
	if got := ComponentsImage("v1.2.3"); !strings.HasSuffix(got, ":v1.2.3") {
		t.Errorf("ComponentsImage(v1.2.3) = %q, want it tagged with the version", got)
	}
}

func TestSteadyGC(t *testing.T) {
	for name, p := range pods(t, testConfig()) {
		env := p.Spec.Containers[0].Env
		if len(env) != 1 || env[0].Name != contract.SteadyGCEnv || env[0].Value != SteadyGCPercent {
			t.Errorf("%s: env %v, want %s=%s", name, env, contract.SteadyGCEnv, SteadyGCPercent)
		}
	}
}

func TestSlowMachine(t *testing.T) {
	fast := pods(t, testConfig())
	c := testConfig()
	c.SlowMachine = true
	c.ExtraArgs = map[string]map[string]string{"kube-scheduler": {"leader-elect-lease-duration": "90s"}}
	slow := pods(t, c)
	if f := flags(t, slow["etcd"]); f["unsafe-no-fsync"] != "true" || f["election-timeout"] != "5000" {
		t.Errorf("etcd on a slow machine: %v", f)
	}
	if _, ok := flags(t, fast["etcd"])["unsafe-no-fsync"]; ok {
		t.Error("etcd skips fsync on a normal machine")
	}
	if f := flags(t, slow["kube-apiserver"]); f["etcd-readycheck-timeout"] != "10s" || f["etcd-healthcheck-timeout"] != "10s" {
		t.Errorf("API server's etcd checks on a slow machine: %v", f)
	}
	if _, ok := flags(t, fast["kube-apiserver"])["etcd-readycheck-timeout"]; ok {
		t.Error("the API server's etcd check timeout changed on a normal machine")
	}
	if f := flags(t, slow["kube-controller-manager"]); f["leader-elect-lease-duration"] != "60s" || f["leader-elect-renew-deadline"] != "40s" {
		t.Errorf("controller-manager leases on a slow machine: %v", f)
	}
	if f := flags(t, slow["kube-scheduler"]); f["leader-elect-lease-duration"] != "90s" {
		t.Errorf("extra args must still win: %v", f)
	}
	for name, p := range slow {
		ctr := p.Spec.Containers[0]
		if ctr.StartupProbe.PeriodSeconds != 5 || ctr.StartupProbe.FailureThreshold != 120 {
			t.Errorf("%s startup probe on a slow machine: %+v", name, ctr.StartupProbe)
		}
		if ctr.LivenessProbe != nil && ctr.LivenessProbe.FailureThreshold != 30 {
			t.Errorf("%s liveness probe on a slow machine: %+v", name, ctr.LivenessProbe)
		}
		// No GC trade; a long wait for what the component needs (node/startorder).
		if len(ctr.Env) != 1 || ctr.Env[0].Name != contract.StartWaitEnv || ctr.Env[0].Value != "10m0s" {
			t.Errorf("%s: on a slow machine the environment is %v, want only %s=10m0s", name, ctr.Env, contract.StartWaitEnv)
		}
		for _, e := range fast[name].Spec.Containers[0].Env {
			if e.Name == contract.StartWaitEnv {
				t.Errorf("%s: %s on a normal machine", name, e.Name)
			}
		}
		if fast[name].Spec.Containers[0].StartupProbe.PeriodSeconds != 1 {
			t.Errorf("%s: the normal probes changed", name)
		}
	}
}
