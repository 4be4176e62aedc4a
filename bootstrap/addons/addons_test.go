package addons

import (
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/strictyaml"
	"kubeforge.dev/kubeforge/internal/versions"
)

func testConfig() Config {
	return Config{
		KubernetesVersion:    versions.Default().Kubernetes,
		ControlPlaneEndpoint: "192.168.49.2:6443",
		PodSubnet:            "10.244.0.0/16",
		DNSDomain:            "cluster.local",
		DNSServiceIP:         netip.MustParseAddr("10.96.0.10"),
		CoreDNSImage:         "registry.k8s.io/coredns/coredns:v1.12.1",
		CoreDNSReplicas:      2,
	}
}

func objects(t *testing.T, c Config) []runtime.Object {
	t.Helper()
	objs, err := Objects(c)
	if err != nil {
		t.Fatalf("Objects: %v", err)
	}
	if len(objs) == 0 {
		t.Fatal("Objects returned nothing")
	}
	return objs
}

// find returns the objects of type T, by namespace/name.
func find[T runtime.Object](objs []runtime.Object) map[string]T {
	out := map[string]T{}
	for _, o := range objs {
		if v, ok := o.(T); ok {
			m := o.(metav1.Object)
			key := m.GetName()
			if m.GetNamespace() != "" {
				key = m.GetNamespace() + "/" + key
			}
			out[key] = v
		}
	}
	return out
}

var clusterScoped = map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true, "Namespace": true, "StorageClass": true}

func TestObjectsMeta(t *testing.T) {
	seen := map[string]bool{}
	for i, o := range objects(t, testConfig()) {
		gvk := o.GetObjectKind().GroupVersionKind()
		m, ok := o.(metav1.Object)
		if !ok {
			t.Fatalf("object %d (%T) has no metadata", i, o)
		}
		what := gvk.Kind + " " + m.GetNamespace() + "/" + m.GetName()
		// Server-side apply of unstructured objects needs apiVersion and kind.
		if gvk.Version == "" || gvk.Kind == "" {
			t.Errorf("object %d (%T %s) has no TypeMeta", i, o, m.GetName())
			continue
		}
		if _, ok := resources[gvk.Kind]; !ok {
			t.Errorf("%s: Apply knows no resource for kind %s", what, gvk.Kind)
		}
		if m.GetName() == "" {
			t.Errorf("object %d (%s) has no name", i, gvk.Kind)
		}
		if clusterScoped[gvk.Kind] != (m.GetNamespace() == "") {
			t.Errorf("%s: namespace %q is wrong for a %s", what, m.GetNamespace(), gvk.Kind)
		}
		// The typed struct must agree with its TypeMeta, or the server would reject the body.
		if typeName(o) != gvk.Kind {
			t.Errorf("%s: Go type %T has kind %s", what, o, gvk.Kind)
		}
		key := gvk.GroupKind().String() + " " + m.GetNamespace() + "/" + m.GetName()
		if seen[key] {
			t.Errorf("%s appears twice", key)
		}
		seen[key] = true
	}
}

// typeName is the name of o's Go type, which for API types is their kind.
func typeName(o runtime.Object) string {
	return reflect.TypeOf(o).Elem().Name()
}

func TestObjectsConvertForApply(t *testing.T) {
	// What Apply does before sending: the unstructured form carries the GVK and name.
	for _, o := range objects(t, testConfig()) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatalf("%T: %v", o, err)
		}
		if m["apiVersion"] == nil || m["kind"] == nil {
			t.Errorf("%T lost apiVersion/kind in conversion: %v", o, m)
		}
	}
}

func TestDefaultServiceAccount(t *testing.T) {
	sas := find[*corev1.ServiceAccount](objects(t, testConfig()))
	for _, key := range []string{"default/default", "kube-system/kube-proxy", "kube-system/coredns"} {
		if _, ok := sas[key]; !ok {
			t.Errorf("no ServiceAccount %s", key)
		}
	}
}

func TestClusterRoleBindings(t *testing.T) {
	objs := objects(t, testConfig())
	crbs := find[*rbacv1.ClusterRoleBinding](objs)
	defined := map[string]bool{}
	for name := range find[*rbacv1.ClusterRole](objs) {
		defined[name] = true
	}
	upstream := map[string]bool{}
	for _, r := range bootstrappolicy.ClusterRoles() {
		upstream[r.Name] = true
	}
	if !upstream["cluster-admin"] {
		t.Fatalf("the upstream bootstrap policy has no cluster-admin: %d roles", len(upstream))
	}

	// What kubeadm binds, which kubeforge's identities (pki) rely on.
	for _, want := range []struct {
		name, role string
		subject    rbacv1.Subject
	}{
		{"kubeadm:cluster-admins", "cluster-admin", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "kubeadm:cluster-admins"}},
		{"kubeadm:kube-apiserver-kubelet-client", "system:kubelet-api-admin", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "kube-apiserver-kubelet-client"}},
		{"kubeadm:node-proxier", "system:node-proxier", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "kube-proxy"}},
		{NodeNetworkRole, NodeNetworkRole, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}},
		{"system:coredns", "system:coredns", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "coredns"}},
	} {
		b, ok := crbs[want.name]
		if !ok {
			t.Errorf("no ClusterRoleBinding %s", want.name)
			continue
		}
		if b.RoleRef.Name != want.role {
			t.Errorf("%s binds %s, want %s", want.name, b.RoleRef.Name, want.role)
		}
		if !slices.Contains(b.Subjects, want.subject) {
			t.Errorf("%s subjects = %+v, want %+v among them", want.name, b.Subjects, want.subject)
		}
	}

	sas := find[*corev1.ServiceAccount](objs)
	for name, b := range crbs {
		if b.RoleRef.APIGroup != rbacv1.GroupName || b.RoleRef.Kind != "ClusterRole" {
			t.Errorf("%s: roleRef %+v is not a ClusterRole", name, b.RoleRef)
		}
		// A binding to a role nobody defines grants nothing, silently.
		if !defined[b.RoleRef.Name] && !upstream[b.RoleRef.Name] {
			t.Errorf("%s binds ClusterRole %q, which neither Objects nor the upstream bootstrap policy defines", name, b.RoleRef.Name)
		}
		if len(b.Subjects) == 0 {
			t.Errorf("%s has no subjects", name)
		}
		for _, s := range b.Subjects {
			switch s.Kind {
			case rbacv1.ServiceAccountKind:
				if s.Namespace == "" || s.APIGroup != "" {
					t.Errorf("%s: service account subject %+v needs a namespace and no apiGroup", name, s)
				}
				if _, ok := sas[s.Namespace+"/"+s.Name]; !ok {
					t.Errorf("%s: binds service account %s/%s, which Objects does not create", name, s.Namespace, s.Name)
				}
			case rbacv1.UserKind, rbacv1.GroupKind:
				if s.APIGroup != rbacv1.GroupName || s.Namespace != "" {
					t.Errorf("%s: subject %+v needs apiGroup %s and no namespace", name, s, rbacv1.GroupName)
				}
			default:
				t.Errorf("%s: subject kind %q", name, s.Kind)
			}
		}
	}
}

func TestClusterRoleRules(t *testing.T) {
	// netctl lists and watches Nodes with the kubelet's credentials.
	roles := find[*rbacv1.ClusterRole](objects(t, testConfig()))
	r, ok := roles[NodeNetworkRole]
	if !ok {
		t.Fatalf("no ClusterRole %s", NodeNetworkRole)
	}
	for _, verb := range []string{"list", "watch"} {
		if !allows(r.Rules, "", "nodes", verb) {
			t.Errorf("%s does not allow %s nodes", NodeNetworkRole, verb)
		}
	}
	if allows(r.Rules, "", "nodes", "update") || allows(r.Rules, "", "nodes", "delete") {
		t.Errorf("%s allows writing nodes", NodeNetworkRole)
	}
	cd, ok := roles["system:coredns"]
	if !ok {
		t.Fatal("no ClusterRole system:coredns")
	}
	for _, want := range []struct{ group, resource, verb string }{
		{"", "services", "watch"}, {"", "namespaces", "list"}, {"discovery.k8s.io", "endpointslices", "watch"},
	} {
		if !allows(cd.Rules, want.group, want.resource, want.verb) {
			t.Errorf("system:coredns does not allow %s %s/%s", want.verb, want.group, want.resource)
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func TestCoreDNS(t *testing.T) {
	c := testConfig()
	objs := objects(t, c)
	deps := find[*appsv1.Deployment](objs)
	d, ok := deps["kube-system/coredns"]
	if !ok {
		t.Fatal("no Deployment kube-system/coredns")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	checkSelector(t, "coredns", d.Spec.Selector, d.Spec.Template.Labels)
	ps := d.Spec.Template.Spec
	if len(ps.Containers) != 1 || ps.Containers[0].Image != c.CoreDNSImage {
		t.Fatalf("containers = %+v, want one running %s", ps.Containers, c.CoreDNSImage)
	}
	if ps.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy = %q: the image is preloaded", ps.Containers[0].ImagePullPolicy)
	}
	if ps.ServiceAccountName != "coredns" {
		t.Errorf("serviceAccountName = %q", ps.ServiceAccountName)
	}
	// CoreDNS must not resolve through itself.
	if ps.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy = %q, want Default", ps.DNSPolicy)
	}
	if ps.Containers[0].LivenessProbe == nil || ps.Containers[0].ReadinessProbe == nil {
		t.Errorf("coredns lacks probes")
	}

	// The Corefile comes from the coredns ConfigMap, mounted where -conf points.
	cms := find[*corev1.ConfigMap](objs)
	cm, ok := cms["kube-system/coredns"]
	if !ok {
		t.Fatal("no ConfigMap kube-system/coredns")
	}
	if cm.Data["Corefile"] != Corefile(c.DNSDomain) {
		t.Errorf("ConfigMap Corefile differs from Corefile(%q)", c.DNSDomain)
	}
	conf := ps.Containers[0].Args
	i := slices.Index(conf, "-conf")
	if i < 0 || i+1 >= len(conf) {
		t.Fatalf("args = %q, want -conf <file>", conf)
	}
	checkConfigMapFile(t, ps, conf[i+1], cm)

	// The kube-dns Service: given cluster IP, selecting the CoreDNS pods, DNS ports.
	svcs := find[*corev1.Service](objs)
	s, ok := svcs["kube-system/kube-dns"]
	if !ok {
		t.Fatal("no Service kube-system/kube-dns")
	}
	if s.Spec.ClusterIP != "10.96.0.10" {
		t.Errorf("kube-dns clusterIP = %q, want 10.96.0.10", s.Spec.ClusterIP)
	}
	if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(s.Spec.Selector) == 0 {
		t.Errorf("kube-dns selector %v does not select the coredns pods %v", s.Spec.Selector, d.Spec.Template.Labels)
	}
	ports := map[string]bool{}
	for _, p := range ps.Containers[0].Ports {
		ports[string(p.Protocol)+"/"+p.Name] = true
		ports[string(p.Protocol)+"/"+strconv.Itoa(int(p.ContainerPort))] = true
	}
	var udp53, tcp53 bool
	for _, p := range s.Spec.Ports {
		if p.Port == 53 && p.Protocol == corev1.ProtocolUDP {
			udp53 = true
		}
		if p.Port == 53 && p.Protocol == corev1.ProtocolTCP {
			tcp53 = true
		}
		if !ports[string(p.Protocol)+"/"+p.TargetPort.String()] {
			t.Errorf("kube-dns port %s targets %s/%s, which the coredns container does not expose", p.Name, p.Protocol, p.TargetPort.String())
		}
	}
	if !udp53 || !tcp53 {
		t.Errorf("kube-dns does not serve 53/UDP and 53/TCP: %+v", s.Spec.Ports)
	}
}

func TestCoreDNSDefaultReplicas(t *testing.T) {
	c := testConfig()
	c.CoreDNSReplicas = 0
	d := find[*appsv1.Deployment](objects(t, c))["kube-system/coredns"]
	if d == nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas with CoreDNSReplicas=0: %v, want 1", d)
	}
}

func TestCorefile(t *testing.T) {
	f := Corefile("example.test")
	if strings.Contains(f, "DOMAIN") {
		t.Errorf("placeholder left in the Corefile:\n%s", f)
	}
	for _, want := range []string{
		"kubernetes example.test in-addr.arpa ip6.arpa {",
		"forward . /etc/resolv.conf",
		".:53 {",
		"health",
		"ready",
		"prometheus :9153",
	} {
		if !strings.Contains(f, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, f)
		}
	}
	if strings.Count(f, "{") != strings.Count(f, "}") {
		t.Errorf("unbalanced braces in the Corefile:\n%s", f)
	}
	if strings.Contains(Corefile("cluster.local"), "example.test") {
		t.Errorf("Corefile keeps state between calls")
	}
}

// Ports the CoreDNS probes use must be the ones the Corefile's health and ready plugins serve on
// (8080 and 8181 by default).
func TestCoreDNSProbePorts(t *testing.T) {
	d := find[*appsv1.Deployment](objects(t, testConfig()))["kube-system/coredns"]
	ctr := d.Spec.Template.Spec.Containers[0]
	if p := ctr.LivenessProbe.HTTPGet; p == nil || p.Port.IntValue() != 8080 || p.Path != "/health" {
		t.Errorf("liveness probe = %+v, want GET :8080/health", p)
	}
	if p := ctr.ReadinessProbe.HTTPGet; p == nil || p.Port.IntValue() != 8181 || p.Path != "/ready" {
		t.Errorf("readiness probe = %+v, want GET :8181/ready", p)
	}
}

func TestKubeProxy(t *testing.T) {
	c := testConfig()
	objs := objects(t, c)
	cm, ok := find[*corev1.ConfigMap](objs)["kube-system/kube-proxy"]
	if !ok {
		t.Fatal("no ConfigMap kube-system/kube-proxy")
	}

	var kc kubeproxyv1alpha1.KubeProxyConfiguration
	if err := strictyaml.Unmarshal([]byte(cm.Data["config.conf"]), &kc); err != nil {
		t.Fatalf("config.conf does not parse strictly as a KubeProxyConfiguration: %v\n%s", err, cm.Data["config.conf"])
	}
	if kc.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" || kc.Kind != "KubeProxyConfiguration" {
		t.Errorf("apiVersion/kind = %q/%q", kc.APIVersion, kc.Kind)
	}
	if kc.Mode != "iptables" {
		t.Errorf("mode = %q, want iptables", kc.Mode)
	}
	if kc.ClusterCIDR != c.PodSubnet {
		t.Errorf("clusterCIDR = %q, want %q", kc.ClusterCIDR, c.PodSubnet)
	}
	// The node shares the host's conntrack table: kube-proxy must not resize it.
	if kc.Conntrack.MaxPerCore == nil || *kc.Conntrack.MaxPerCore != 0 {
		t.Errorf("conntrack.maxPerCore = %v, want explicit 0", kc.Conntrack.MaxPerCore)
	}
	if kc.Conntrack.Min != nil {
		t.Errorf("conntrack.min = %v, want unset", *kc.Conntrack.Min)
	}
	if kc.MetricsBindAddress != "127.0.0.1:10249" {
		t.Errorf("metricsBindAddress = %q", kc.MetricsBindAddress)
	}
	if kc.IPTables.MinSyncPeriod.Duration != 100*time.Millisecond {
		t.Errorf("iptables.minSyncPeriod = %v, want 100ms", kc.IPTables.MinSyncPeriod.Duration)
	}

	// The kubeconfig kube-proxy is pointed at exists in the ConfigMap and reaches the API server.
	ds, ok := find[*appsv1.DaemonSet](objs)["kube-system/kube-proxy"]
	if !ok {
		t.Fatal("no DaemonSet kube-system/kube-proxy")
	}
	ps := ds.Spec.Template.Spec
	checkConfigMapFile(t, ps, kc.ClientConnection.Kubeconfig, cm)
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig.conf"]))
	if err != nil {
		t.Fatalf("kubeconfig.conf: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster] == nil || cfg.AuthInfos[ctx.AuthInfo] == nil {
		t.Fatalf("kubeconfig.conf has no usable current context: %+v", cfg)
	}
	if s := cfg.Clusters[ctx.Cluster].Server; s != "https://192.168.49.2:6443" {
		t.Errorf("kube-proxy's server = %q, want https://192.168.49.2:6443", s)
	}
	if f := cfg.AuthInfos[ctx.AuthInfo].TokenFile; f != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("kube-proxy's tokenFile = %q", f)
	}

	// The DaemonSet runs the node binary's kube-proxy with that config.
	checkSelector(t, "kube-proxy", ds.Spec.Selector, ds.Spec.Template.Labels)
	if !ps.HostNetwork {
		t.Errorf("kube-proxy is not hostNetwork")
	}
	if ps.ServiceAccountName != "kube-proxy" {
		t.Errorf("serviceAccountName = %q", ps.ServiceAccountName)
	}
	if ps.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", ps.PriorityClassName)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	ctr := ps.Containers[0]
	if ctr.Image != controlplane.ComponentsImage(c.KubernetesVersion) {
		t.Errorf("image = %q, want %q", ctr.Image, controlplane.ComponentsImage(c.KubernetesVersion))
	}
	if len(ctr.Command) < 2 || ctr.Command[0] != contract.NodeBinary || ctr.Command[1] != "kube-proxy" {
		t.Fatalf("command = %q", ctr.Command)
	}
	var confFlag string
	for _, a := range ctr.Command {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			confFlag = v
		}
	}
	checkConfigMapFile(t, ps, confFlag, cm)
	if ctr.SecurityContext == nil || ctr.SecurityContext.Privileged == nil || !*ctr.SecurityContext.Privileged {
		t.Errorf("kube-proxy is not privileged (it programs iptables)")
	}
	// --hostname-override=$(NODE_NAME) needs the NODE_NAME variable from the downward API.
	var nodeName bool
	for _, e := range ctr.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Errorf("NODE_NAME is not set from spec.nodeName: %+v", ctr.Env)
	}
	// The binary is on the node's /usr.
	var usr bool
	for _, m := range ctr.VolumeMounts {
		if m.MountPath == "/usr" {
			usr = m.ReadOnly
		}
	}
	if !usr {
		t.Errorf("the node's /usr is not mounted read-only")
	}
	// kube-proxy must run on every node, tainted or not.
	if !slices.ContainsFunc(ps.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("kube-proxy does not tolerate every taint: %+v", ps.Tolerations)
	}
}

func TestWorkloadsComeAfterTheirDependencies(t *testing.T) {
	// Apply goes in order: a workload comes after its ServiceAccount and ConfigMap.
	objs := objects(t, testConfig())
	index := map[string]int{}
	for i, o := range objs {
		m := o.(metav1.Object)
		index[o.GetObjectKind().GroupVersionKind().Kind+" "+m.GetNamespace()+"/"+m.GetName()] = i
	}
	for _, tc := range []struct{ workload, dep string }{
		{"DaemonSet kube-system/kube-proxy", "ServiceAccount kube-system/kube-proxy"},
		{"DaemonSet kube-system/kube-proxy", "ConfigMap kube-system/kube-proxy"},
		{"Deployment kube-system/coredns", "ServiceAccount kube-system/coredns"},
		{"Deployment kube-system/coredns", "ConfigMap kube-system/coredns"},
	} {
		w, ok1 := index[tc.workload]
		d, ok2 := index[tc.dep]
		if !ok1 || !ok2 {
			t.Errorf("missing %s or %s", tc.workload, tc.dep)
			continue
		}
		if d > w {
			t.Errorf("%s is applied after %s", tc.dep, tc.workload)
		}
	}
}

// checkSelector checks that a workload's selector selects its own pod template.
func checkSelector(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s: selector %v does not select its pod template's labels %v (%v)", what, sel, podLabels, err)
	}
}

// checkConfigMapFile checks that file, as the container sees it, is a key of cm mounted from a
// ConfigMap volume.
func checkConfigMapFile(t *testing.T, ps corev1.PodSpec, file string, cm *corev1.ConfigMap) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	for _, m := range ps.Containers[0].VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		v := vols[m.Name]
		if v.ConfigMap == nil {
			continue
		}
		if v.ConfigMap.Name != cm.Name {
			t.Errorf("%s is mounted from ConfigMap %s, want %s", file, v.ConfigMap.Name, cm.Name)
			return
		}
		key := rel
		if len(v.ConfigMap.Items) > 0 {
			key = ""
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
			if key == "" {
				t.Errorf("%s: the volume's items %+v project nothing to %q", file, v.ConfigMap.Items, rel)
				return
			}
		}
		if _, ok := cm.Data[key]; !ok {
			t.Errorf("%s: ConfigMap %s has no key %q (keys %v)", file, cm.Name, key, keys(cm.Data))
		}
		return
	}
	t.Errorf("%q is not in any ConfigMap mount of the pod", file)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestStorage(t *testing.T) {
	objs := objects(t, testConfig())
	classes := find[*storagev1.StorageClass](objs)
	sc, ok := classes[StorageClassName]
	if !ok || len(classes) != 1 {
		t.Fatalf("storage classes %v, want exactly %q", classes, StorageClassName)
	}
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("class %s is not the default class", sc.Name)
	}
	if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("class %s binds %v; a node-local volume needs WaitForFirstConsumer", sc.Name, sc.VolumeBindingMode)
	}
	dep, ok := find[*appsv1.Deployment](objs)["kube-system/storage-provisioner"]
	if !ok {
		t.Fatal("no storage-provisioner Deployment")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	want := controlplane.ComponentsImage(testConfig().KubernetesVersion)
	if c.Image != want || !slices.Contains(c.Command, "--helper-image="+want) {
		t.Errorf("provisioner image %s, command %v: want image and --helper-image %s", c.Image, c.Command, want)
	}
	if c.Command[0] != contract.NodeBinary || c.Command[1] != "storage-provisioner" {
		t.Errorf("provisioner command %v does not run the node binary's storage-provisioner", c.Command)
	}
}

func TestKubeProxyFeatureGates(t *testing.T) {
	c := testConfig()
	for _, gates := range []map[string]bool{nil, {"SomeGate": true, "Other": false}} {
		c.FeatureGates = gates
		cm := find[*corev1.ConfigMap](objects(t, c))["kube-system/kube-proxy"]
		var kc kubeproxyv1alpha1.KubeProxyConfiguration
		if err := strictyaml.Unmarshal([]byte(cm.Data["config.conf"]), &kc); err != nil {
			t.Fatal(err)
		}
		if len(kc.FeatureGates) != len(gates) || kc.FeatureGates["SomeGate"] != gates["SomeGate"] || kc.FeatureGates["Other"] != gates["Other"] {
			t.Errorf("kube-proxy featureGates %v, want %v", kc.FeatureGates, gates)
		}
	}
}

// TestAPIServerEnv: CoreDNS and the storage provisioner reach the API server at the control-plane
// endpoint, not through the kubernetes Service (which needs kube-proxy first).
func TestAPIServerEnv(t *testing.T) {
	objs := objects(t, testConfig())
	deps := find[*appsv1.Deployment](objs)
	for _, name := range []string{"kube-system/coredns", "kube-system/storage-provisioner"} {
		env := map[string]string{}
		for _, e := range deps[name].Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["KUBERNETES_SERVICE_HOST"] != "192.168.49.2" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
			t.Errorf("%s: env %v, want the control-plane endpoint %s", name, env, testConfig().ControlPlaneEndpoint)
		}
	}
}

// The KEP-1755 ConfigMap: kube-public/local-registry-hosting, whose localRegistryHosting.v1 is
// YAML with host (what the host pushes to) and help.
func TestLocalRegistryHosting(t *testing.T) {
	objs := LocalRegistryHosting("localhost:5001", "kubeforge-registry:5000", "192.168.49.252:5000")
	cm, ok := objs[0].(*corev1.ConfigMap)
	if len(objs) != 1 || !ok || cm.Namespace != "kube-public" || cm.Name != "local-registry-hosting" || cm.Kind != "ConfigMap" {
		t.Fatalf("objects = %+v", objs)
	}
	var v1 struct {
		Host, HostFromContainerRuntime, HostFromClusterNetwork, Help string
	}
	if err := yaml.Unmarshal([]byte(cm.Data["localRegistryHosting.v1"]), &v1); err != nil {
		t.Fatal(err)
	}
	if v1.Host != "localhost:5001" || v1.HostFromContainerRuntime != "kubeforge-registry:5000" || v1.HostFromClusterNetwork != "192.168.49.252:5000" || v1.Help == "" {
		t.Errorf("localRegistryHosting.v1 = %+v\n%s", v1, cm.Data["localRegistryHosting.v1"])
	}
}
