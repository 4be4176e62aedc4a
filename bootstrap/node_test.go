package bootstrap_test

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/netip"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/containerd"
	"kubeforge.dev/kubeforge/bootstrap/kubeletconfig"
	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/cniconf"
	"kubeforge.dev/kubeforge/contract/services"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/strictyaml"
)

var cpIP = netip.MustParseAddr("192.168.49.2")

// authorities returns the test's cluster CAs, made on first use and kept for the rest of the
// test, so that everything a test renders is signed by the same CAs.
func authorities(t *testing.T) *pki.Authorities {
	t.Helper()
	authMu.Lock()
	defer authMu.Unlock()
	if a, ok := auths[t]; ok {
		return a
	}
	a, err := pki.EnsureAuthorities(t.TempDir(), "test")
	if err != nil {
		t.Fatalf("EnsureAuthorities: %v", err)
	}
	auths[t] = a
	t.Cleanup(func() {
		authMu.Lock()
		delete(auths, t)
		authMu.Unlock()
	})
	return a
}

var (
	authMu sync.Mutex
	auths  = map[*testing.T]*pki.Authorities{}
)

func nodeFiles(t *testing.T, c spec.Cluster, n bootstrap.Node) bootstrap.Files {
	t.Helper()
	f, err := bootstrap.NodeFiles(c, n, authorities(t))
	if err != nil {
		t.Fatalf("NodeFiles(%s): %v", n.Name, err)
	}
	if len(f.Data) == 0 {
		t.Fatalf("NodeFiles(%s) rendered nothing", n.Name)
	}
	return f
}

func controlPlane(t *testing.T) (spec.Cluster, bootstrap.Files) {
	t.Helper()
	c := spec.Default("test")
	return c, nodeFiles(t, c, bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP})
}

func worker(t *testing.T) (spec.Cluster, bootstrap.Node, bootstrap.Files) {
	t.Helper()
	c := spec.Default("test")
	c.Nodes = append(c.Nodes, spec.Node{Name: spec.NodeName("test", 1), Role: spec.RoleWorker})
	n := bootstrap.Node{Name: "test-m02", Role: spec.RoleWorker, IP: netip.MustParseAddr("192.168.49.3"), ControlPlane: cpIP}
	return c, n, nodeFiles(t, c, n)
}

func file(t *testing.T, f bootstrap.Files, p string) []byte {
	t.Helper()
	b, ok := f.Data[p]
	if !ok {
		t.Fatalf("no file %s", p)
	}
	return b
}

var kubeconfigs = []string{"admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"}

func TestControlPlaneFiles(t *testing.T) {
	_, f := controlPlane(t)
	want := []string{
		"/etc/kubernetes/pki/ca.crt",
		"/etc/kubernetes/pki/ca.key",
		"/etc/kubernetes/pki/sa.key",
		"/etc/kubernetes/pki/sa.pub",
		"/etc/kubernetes/pki/apiserver.crt",
		"/etc/kubernetes/pki/apiserver.key",
		"/etc/kubernetes/pki/front-proxy-ca.crt",
		"/etc/kubernetes/pki/etcd/ca.crt",
		"/etc/kubernetes/pki/etcd/server.crt",
		"/etc/kubernetes/manifests/etcd.yaml",
		"/etc/kubernetes/manifests/kube-apiserver.yaml",
		"/etc/kubernetes/manifests/kube-controller-manager.yaml",
		"/etc/kubernetes/manifests/kube-scheduler.yaml",
		"/etc/kubernetes/audit-policy.yaml",
		"/var/lib/kubelet/config.yaml",
		"/etc/containerd/config.toml",
		"/etc/kubeforge/services.json",
	}
	for _, k := range kubeconfigs {
		want = append(want, "/etc/kubernetes/"+k)
	}
	for _, p := range want {
		if _, ok := f.Data[p]; !ok {
			t.Errorf("missing %s", p)
		}
	}
	checkPathsAndModes(t, f)
}

// checkPathsAndModes checks that every path is absolute and clean and that secrets (keys and
// kubeconfigs, which embed a key) are 0600 and the rest 0644.
func checkPathsAndModes(t *testing.T, f bootstrap.Files) {
	t.Helper()
	for p, b := range f.Data {
		if !path.IsAbs(p) || path.Clean(p) != p {
			t.Errorf("path %q is not absolute and clean", p)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", p)
		}
		mode, ok := f.Modes[p]
		if !ok {
			t.Errorf("%s has no mode", p)
			continue
		}
		secret := path.Ext(p) == ".key" || (path.Dir(p) == "/etc/kubernetes" && path.Ext(p) == ".conf")
		want := int64(0o644)
		if secret {
			want = 0o600
		}
		if mode != want {
			t.Errorf("%s has mode %#o, want %#o", p, mode, want)
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) && mode != 0o600 {
			t.Errorf("%s holds a private key but has mode %#o", p, mode)
		}
	}
	for p := range f.Modes {
		if _, ok := f.Data[p]; !ok {
			t.Errorf("mode for %s, which has no data", p)
		}
	}
}

// identity describes a kubeconfig's client certificate.
type identity struct {
	server string
	cn     string
	orgs   []string
}

func checkKubeconfig(t *testing.T, f bootstrap.Files, name string, want identity) *x509.Certificate {
	t.Helper()
	p := "/etc/kubernetes/" + name
	cfg, err := clientcmd.Load(file(t, f, p))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("%s: current context %q does not exist", name, cfg.CurrentContext)
	}
	cl, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl == nil || user == nil {
		t.Fatalf("%s: context %q names a missing cluster or user", name, cfg.CurrentContext)
	}
	if cl.Server != want.server {
		t.Errorf("%s: server %q, want %q", name, cl.Server, want.server)
	}
	if !bytes.Equal(cl.CertificateAuthorityData, file(t, f, "/etc/kubernetes/pki/ca.crt")) {
		t.Errorf("%s: CA data is not the node's ca.crt", name)
	}
	if _, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData); err != nil {
		t.Errorf("%s: client certificate and key do not match: %v", name, err)
	}
	cert := parseCert(t, user.ClientCertificateData)
	if cert.Subject.CommonName != want.cn || !slices.Equal(cert.Subject.Organization, want.orgs) {
		t.Errorf("%s: subject CN=%q O=%q, want CN=%q O=%q", name, cert.Subject.CommonName, cert.Subject.Organization, want.cn, want.orgs)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cl.CertificateAuthorityData)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s: client certificate does not verify as a client of the cluster CA: %v", name, err)
	}
	return cert
}

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %.60q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestControlPlaneKubeconfigs(t *testing.T) {
	_, f := controlPlane(t)
	server := "https://192.168.49.2:6443"
	for name, want := range map[string]identity{
		"admin.conf":              {server, "kubernetes-admin", []string{"kubeadm:cluster-admins"}},
		"super-admin.conf":        {server, "kubernetes-super-admin", []string{"system:masters"}},
		"kubelet.conf":            {server, "system:node:test", []string{"system:nodes"}},
		"controller-manager.conf": {server, "system:kube-controller-manager", nil},
		"scheduler.conf":          {server, "system:kube-scheduler", nil},
	} {
		checkKubeconfig(t, f, name, want)
	}
}

// TestSecondControlPlane distinguishes the two servers a control-plane node's kubeconfigs use:
// its own API server for the controller manager and scheduler, the first control plane for the rest.
func TestSecondControlPlane(t *testing.T) {
	c := spec.Default("test")
	ip := netip.MustParseAddr("192.168.49.3")
	f := nodeFiles(t, c, bootstrap.Node{Name: "test-m02", Role: spec.RoleControlPlane, IP: ip, ControlPlane: cpIP})
	checkKubeconfig(t, f, "admin.conf", identity{"https://192.168.49.2:6443", "kubernetes-admin", []string{"kubeadm:cluster-admins"}})
	checkKubeconfig(t, f, "kubelet.conf", identity{"https://192.168.49.2:6443", "system:node:test-m02", []string{"system:nodes"}})
	checkKubeconfig(t, f, "controller-manager.conf", identity{"https://192.168.49.3:6443", "system:kube-controller-manager", nil})
	checkKubeconfig(t, f, "scheduler.conf", identity{"https://192.168.49.3:6443", "system:kube-scheduler", nil})

	api := parseCert(t, file(t, f, "/etc/kubernetes/pki/apiserver.crt"))
	if !slices.ContainsFunc(api.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP("192.168.49.3")) }) {
		t.Errorf("apiserver certificate lacks the node IP: %v", api.IPAddresses)
	}
	p := pod(t, f, "kube-apiserver")
	if got := flagValue(p, "advertise-address"); got != "192.168.49.3" {
		t.Errorf("--advertise-address=%s, want the node's own IP", got)
	}
}

func pod(t *testing.T, f bootstrap.Files, component string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	b := file(t, f, path.Join(contract.ManifestsDir, component+".yaml"))
	if err := strictyaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", component, err)
	}
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", component, len(p.Spec.Containers))
	}
	return &p
}

func flagValue(p *corev1.Pod, name string) string {
	for _, a := range p.Spec.Containers[0].Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// TestManifestFilesExist checks that every certificate, key and kubeconfig the static pods are
// told to read is among the node's files: a typo would only show as a crash loop on a real node.
func TestManifestFilesExist(t *testing.T) {
	c, f := controlPlane(t)
	n := 0
	for _, component := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		p := pod(t, f, component)
		for _, a := range p.Spec.Containers[0].Command[2:] {
			_, v, _ := strings.Cut(a, "=")
			if !strings.HasPrefix(v, "/etc/kubernetes/") {
				continue
			}
			n++
			if _, ok := f.Data[v]; !ok {
				t.Errorf("%s: %s names %s, which NodeFiles does not write", component, a, v)
			}
		}
		if p.Annotations["kubeforge.dev/kubernetes-version"] != c.KubernetesVersion {
			t.Errorf("%s: rendered for version %q, want %q", component, p.Annotations["kubeforge.dev/kubernetes-version"], c.KubernetesVersion)
		}
	}
	if n < 20 {
		t.Errorf("only %d file flags checked; the manifests changed shape", n)
	}
	api := pod(t, f, "kube-apiserver")
	if got := flagValue(api, "service-cluster-ip-range"); got != c.ServiceSubnet {
		t.Errorf("--service-cluster-ip-range=%s, want %s", got, c.ServiceSubnet)
	}
	if got := flagValue(api, "advertise-address"); got != cpIP.String() {
		t.Errorf("--advertise-address=%s, want %s", got, cpIP)
	}
	if got := flagValue(pod(t, f, "kube-controller-manager"), "cluster-cidr"); got != c.PodSubnet {
		t.Errorf("--cluster-cidr=%s, want %s", got, c.PodSubnet)
	}
}

func TestKubeletAndContainerdConfig(t *testing.T) {
	c, f := controlPlane(t)
	var kc kubeletv1beta1.KubeletConfiguration
	if err := strictyaml.Unmarshal(file(t, f, kubeletconfig.ConfigPath), &kc); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	dns, err := c.ServiceIP(10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kc.ClusterDNS, []string{dns.String()}) || dns.String() != "10.96.0.10" {
		t.Errorf("clusterDNS = %v, want [%s]", kc.ClusterDNS, dns)
	}
	if kc.ClusterDomain != c.DNSDomain {
		t.Errorf("clusterDomain = %q, want %q", kc.ClusterDomain, c.DNSDomain)
	}
	if kc.ResolverConfig == nil || *kc.ResolverConfig != contract.PodResolvConf {
		t.Errorf("resolvConf = %v, want %s", kc.ResolverConfig, contract.PodResolvConf)
	}
	if _, ok := f.Data[kc.Authentication.X509.ClientCAFile]; !ok {
		t.Errorf("the kubelet's client CA %s is not written", kc.Authentication.X509.ClientCAFile)
	}
	if kc.StaticPodPath != contract.ManifestsDir {
		t.Errorf("staticPodPath = %q, want %q", kc.StaticPodPath, contract.ManifestsDir)
	}

	// The kube-dns Service the addons create must have the address the kubelet tells pods about.
	objs, err := addons.Objects(addons.Config{KubernetesVersion: c.KubernetesVersion, ControlPlaneEndpoint: "192.168.49.2:6443",
		PodSubnet: c.PodSubnet, DNSDomain: c.DNSDomain, DNSServiceIP: dns, CoreDNSImage: "coredns:test"})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok && s.Name == "kube-dns" {
			found = true
			if s.Spec.ClusterIP != kc.ClusterDNS[0] {
				t.Errorf("kube-dns has cluster IP %s, the kubelet uses %s", s.Spec.ClusterIP, kc.ClusterDNS[0])
			}
		}
	}
	if !found {
		t.Errorf("no kube-dns Service among the addons")
	}

	var ctd map[string]any
	if err := toml.Unmarshal(file(t, f, contract.ContainerdConfigPath), &ctd); err != nil {
		t.Errorf("%s is not TOML: %v", contract.ContainerdConfigPath, err)
	}
	if ctd["version"] == nil {
		t.Errorf("containerd config has no version: %v", ctd)
	}
}

func nodeServices(t *testing.T, f bootstrap.Files) map[string]services.Service {
	t.Helper()
	// ParseConfig is what the node's supervisor runs on the file: strict decoding, validation
	// (absolute paths, known After names, no cycles).
	cfg, err := services.ParseConfig(file(t, f, contract.ServicesPath))
	if err != nil {
		t.Fatalf("services.json: %v", err)
	}
	out := map[string]services.Service{}
	for _, s := range cfg.Services {
		out[s.Name] = s
	}
	return out
}

func TestServices(t *testing.T) {
	c, f := controlPlane(t)
	svcs := nodeServices(t, f)
	for _, name := range []string{containerd.ServiceContainerd, containerd.ServiceImportImages, bootstrap.ServiceNodeNet, "kubelet", "netctl"} {
		if _, ok := svcs[name]; !ok {
			t.Errorf("no %s service", name)
		}
	}
	kubelet := svcs["kubelet"]
	for _, dep := range []string{containerd.ServiceContainerd, containerd.ServiceImportImages, bootstrap.ServiceNodeNet} {
		if !slices.Contains(kubelet.After, dep) {
			t.Errorf("kubelet does not come after %s: after=%q", dep, kubelet.After)
		}
	}
	if kubelet.Path != contract.NodeBinary || len(kubelet.Args) == 0 || kubelet.Args[0] != "kubelet" {
		t.Errorf("kubelet runs %s %q", kubelet.Path, kubelet.Args)
	}
	for _, want := range []string{"--node-ip=192.168.49.2", "--hostname-override=test",
		"--config=" + kubeletconfig.ConfigPath, "--kubeconfig=" + kubeletconfig.KubeconfigPath} {
		if !slices.Contains(kubelet.Args, want) {
			t.Errorf("kubelet args %q lack %s", kubelet.Args, want)
		}
	}
	// The files the kubelet's flags name are written.
	for _, p := range []string{kubeletconfig.ConfigPath, kubeletconfig.KubeconfigPath} {
		if _, ok := f.Data[p]; !ok {
			t.Errorf("kubelet flag file %s is not written", p)
		}
	}

	netctl := svcs["netctl"]
	if !slices.Contains(netctl.After, "kubelet") {
		t.Errorf("netctl does not come after kubelet: after=%q", netctl.After)
	}
	for _, want := range []string{"--node-name=test", "--cluster-cidr=" + c.PodSubnet, "--kubeconfig=" + kubeletconfig.KubeconfigPath} {
		if !slices.Contains(netctl.Args, want) {
			t.Errorf("netctl args %q lack %s", netctl.Args, want)
		}
	}

	dns := svcs[bootstrap.ServiceNodeNet]
	if !dns.Oneshot {
		t.Errorf("%s is not a oneshot", bootstrap.ServiceNodeNet)
	}
	if !slices.Contains(dns.Args, "--node-ip=192.168.49.2") {
		t.Errorf("%s args %q lack the node IP", bootstrap.ServiceNodeNet, dns.Args)
	}
}

func TestWorkerFiles(t *testing.T) {
	_, n, f := worker(t)
	for _, p := range []string{
		"/etc/kubernetes/pki/ca.crt",
		"/etc/kubernetes/kubelet.conf",
		kubeletconfig.ConfigPath,
		contract.ContainerdConfigPath,
		contract.ServicesPath,
	} {
		if _, ok := f.Data[p]; !ok {
			t.Errorf("missing %s", p)
		}
	}
	for p := range f.Data {
		switch {
		case p == kubeletconfig.ServingCertPath || p == kubeletconfig.ServingKeyPath:
			// The kubelet's own serving certificate and key (no CA key).
		case strings.HasPrefix(p, contract.ManifestsDir+"/"):
			t.Errorf("worker gets static pod %s", p)
		case path.Ext(p) == ".key":
			t.Errorf("worker gets the private key %s", p)
		case slices.Contains([]string{"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"}, path.Base(p)):
			t.Errorf("worker gets %s", p)
		case strings.HasPrefix(p, "/etc/kubernetes/pki/") && p != "/etc/kubernetes/pki/ca.crt":
			t.Errorf("worker gets %s", p)
		}
	}
	checkPathsAndModes(t, f)
	checkKubeconfig(t, f, "kubelet.conf", identity{"https://192.168.49.2:6443", "system:node:test-m02", []string{"system:nodes"}})

	svcs := nodeServices(t, f)
	if k := svcs["kubelet"]; !slices.Contains(k.Args, "--node-ip="+n.IP.String()) || !slices.Contains(k.Args, "--hostname-override=test-m02") {
		t.Errorf("worker kubelet args = %q", k.Args)
	}
	if nc := svcs["netctl"]; !slices.Contains(nc.Args, "--node-name=test-m02") {
		t.Errorf("worker netctl args = %q", nc.Args)
	}
}

// TestRBACMatchesIdentities checks that the groups and users in the node's certificates are the
// ones the addons' RBAC binds.
func TestRBACMatchesIdentities(t *testing.T) {
	_, f := controlPlane(t)
	bound := map[string][]string{} // role -> "Kind/name" subjects
	for _, o := range addons.RBAC() {
		if b, ok := o.(*rbacv1.ClusterRoleBinding); ok {
			for _, s := range b.Subjects {
				bound[b.RoleRef.Name] = append(bound[b.RoleRef.Name], s.Kind+"/"+s.Name)
			}
		}
	}
	admin := checkKubeconfig(t, f, "admin.conf", identity{"https://192.168.49.2:6443", "kubernetes-admin", []string{"kubeadm:cluster-admins"}})
	for _, o := range admin.Subject.Organization {
		if !slices.Contains(bound["cluster-admin"], "Group/"+o) {
			t.Errorf("admin.conf's group %s is not bound to cluster-admin: %q", o, bound["cluster-admin"])
		}
	}
	kc := parseCert(t, file(t, f, "/etc/kubernetes/pki/apiserver-kubelet-client.crt"))
	if !slices.Contains(bound["system:kubelet-api-admin"], "User/"+kc.Subject.CommonName) {
		t.Errorf("the API server's kubelet client %q is not bound to system:kubelet-api-admin: %q", kc.Subject.CommonName, bound["system:kubelet-api-admin"])
	}
	if !slices.Contains(bound[addons.NodeNetworkRole], "Group/system:nodes") {
		t.Errorf("kubelets (netctl's credentials) are not bound to %s", addons.NodeNetworkRole)
	}
}

func TestNodeFilesDeterministic(t *testing.T) {
	// Everything but the certificates is the same when rendered again.
	_, a := controlPlane(t)
	_, b := controlPlane(t)
	if !reflect.DeepEqual(keys(a.Data), keys(b.Data)) {
		t.Fatalf("file sets differ:\n%q\n%q", keys(a.Data), keys(b.Data))
	}
	for p := range a.Data {
		if strings.HasPrefix(p, "/etc/kubernetes/pki/") || strings.HasSuffix(p, ".conf") {
			continue
		}
		if !bytes.Equal(a.Data[p], b.Data[p]) {
			t.Errorf("%s differs between two renderings", p)
		}
	}
	// The CAs themselves are the cluster's, not re-made per node.
	for _, p := range []string{"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/sa.pub"} {
		if !bytes.Equal(a.Data[p], b.Data[p]) {
			t.Errorf("%s differs between two renderings", p)
		}
	}
}

func TestNodeFilesBadServiceSubnet(t *testing.T) {
	c := spec.Default("test")
	c.ServiceSubnet = "10.96.0.0/29" // no room for the DNS address (.10)
	if _, err := bootstrap.NodeFiles(c, bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP}, authorities(t)); err == nil {
		t.Errorf("NodeFiles with a /29 service subnet succeeded")
	}
}

func TestControlPlaneEndpoint(t *testing.T) {
	for ip, want := range map[string]string{"192.168.49.2": "192.168.49.2:6443", "fd00::2": "[fd00::2]:6443"} {
		n := bootstrap.Node{ControlPlane: netip.MustParseAddr(ip)}
		if got := n.ControlPlaneEndpoint(); got != want {
			t.Errorf("ControlPlaneEndpoint(%s) = %q, want %q", ip, got, want)
		}
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func untar(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h, d})
	}
}

// checkTar checks that tarball holds exactly f's files, with their contents and modes, each
// directory once and before anything in it.
func checkTar(t *testing.T, f bootstrap.Files, tarball []byte) {
	t.Helper()
	dirs := map[string]bool{}
	files := map[string]bool{}
	for _, e := range untar(t, tarball) {
		name := e.hdr.Name
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") || strings.Contains(name, "..") {
			t.Errorf("entry %q is not relative to /", name)
		}
		clean := strings.TrimSuffix(name, "/")
		if parent := path.Dir(clean); parent != "." && !dirs[parent] {
			t.Errorf("%q comes before (or without) its directory %q", name, parent)
		}
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			if !strings.HasSuffix(name, "/") {
				t.Errorf("directory %q lacks a trailing slash", name)
			}
			if dirs[clean] {
				t.Errorf("directory %q appears twice", clean)
			}
			dirs[clean] = true
			if e.hdr.Mode != 0o755 {
				t.Errorf("directory %q has mode %#o, want 0755", name, e.hdr.Mode)
			}
		case tar.TypeReg:
			p := "/" + name
			if files[p] {
				t.Errorf("file %q appears twice", p)
			}
			files[p] = true
			want, ok := f.Data[p]
			if !ok {
				t.Errorf("tar has %s, which is not in Files", p)
				continue
			}
			if !bytes.Equal(e.data, want) {
				t.Errorf("%s: content differs", p)
			}
			if e.hdr.Mode != f.Modes[p] {
				t.Errorf("%s: mode %#o, want %#o", p, e.hdr.Mode, f.Modes[p])
			}
		default:
			t.Errorf("entry %q has type %c", name, e.hdr.Typeflag)
		}
	}
	for p := range f.Data {
		if !files[p] {
			t.Errorf("%s is missing from the tar", p)
		}
	}
}

func TestTarNodeFiles(t *testing.T) {
	_, f := controlPlane(t)
	b, err := f.Tar()
	if err != nil {
		t.Fatal(err)
	}
	checkTar(t, f, b)
	// Spot check: a key keeps 0600 through the tar.
	for _, e := range untar(t, b) {
		if e.hdr.Name == "etc/kubernetes/pki/ca.key" && e.hdr.Mode != 0o600 {
			t.Errorf("ca.key has mode %#o in the tar", e.hdr.Mode)
		}
	}
}

func TestTar(t *testing.T) {
	f := bootstrap.Files{
		Data: map[string][]byte{
			"/top":            []byte("t"),
			"/a/b/c/deep.txt": []byte("deep"),
			"/a/b/sibling":    []byte("s"),
			"/a/secret.key":   []byte("k"),
			"/a/b/c/empty":    {},
			"/z/1":            []byte("1"),
		},
		Modes: map[string]int64{
			"/top": 0o644, "/a/b/c/deep.txt": 0o644, "/a/b/sibling": 0o755, "/a/secret.key": 0o600, "/a/b/c/empty": 0o644, "/z/1": 0o444,
		},
	}
	b, err := f.Tar()
	if err != nil {
		t.Fatal(err)
	}
	checkTar(t, f, b)
	var names []string
	for _, e := range untar(t, b) {
		names = append(names, e.hdr.Name)
	}
	want := []string{"a/", "a/b/", "a/b/c/", "a/b/c/deep.txt", "a/b/c/empty", "a/b/sibling", "a/secret.key", "top", "z/", "z/1"}
	if !slices.Equal(names, want) {
		t.Errorf("entries = %q\nwant %q", names, want)
	}

	again, err := f.Tar()
	if err != nil {
		t.Fatal(err)
	}
	var names2 []string
	for _, e := range untar(t, again) {
		names2 = append(names2, e.hdr.Name)
	}
	if !slices.Equal(names, names2) {
		t.Errorf("entry order is not stable: %q vs %q", names, names2)
	}
}

func TestTarEmpty(t *testing.T) {
	b, err := bootstrap.Files{}.Tar()
	if err != nil {
		t.Fatal(err)
	}
	if es := untar(t, b); len(es) != 0 {
		t.Errorf("empty Files gave %d entries", len(es))
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A node whose pod CIDR is known up front gets its CNI config before it boots, the same bytes
// netctl would write.
func TestNodeFilesPodCIDR(t *testing.T) {
	auth, err := pki.EnsureAuthorities(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.168.49.3")
	cidr := netip.MustParsePrefix("10.244.1.0/24")
	f, err := bootstrap.NodeFiles(spec.Default("test"), bootstrap.Node{Name: "test-m02", Role: spec.RoleWorker, IP: ip, ControlPlane: ip, PodCIDR: cidr}, auth)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cniconf.Render(cidr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Data["/etc/cni/net.d/10-kubeforge.conflist"]; string(got) != string(want) {
		t.Fatalf("CNI config:\n%s\nwant:\n%s", got, want)
	}
}

// TestSpecSettingsReachComponents: the spec's extra args, feature gates and subnets end up in
// the static pods, the kubelet's configuration and flags and the node network's services, on
// control planes and workers alike.
func TestSpecSettingsReachComponents(t *testing.T) {
	c := spec.Default("test")
	c.Nodes = append(c.Nodes, spec.Node{Name: spec.NodeName("test", 1), Role: spec.RoleWorker})
	c.PodSubnet, c.ServiceSubnet = "172.16.0.0/16", "10.100.0.0/20"
	c.PodEvictionTimeout = 40 * time.Second
	c.FeatureGates = map[string]bool{"ContextualLogging": false, "NativeHistograms": true}
	c.ExtraArgs = map[string]map[string]string{
		spec.ComponentAPIServer:         {"audit-log-path": "-", "default-unreachable-toleration-seconds": "7"},
		spec.ComponentControllerManager: {"node-monitor-period": "2s"},
		spec.ComponentScheduler:         {"v": "3"},
		spec.ComponentKubelet:           {"max-pods": "50"},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	gates := "ContextualLogging=false,NativeHistograms=true"
	cp := nodeFiles(t, c, bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP})
	api, cm, sched := pod(t, cp, "kube-apiserver"), pod(t, cp, "kube-controller-manager"), pod(t, cp, "kube-scheduler")
	for _, tc := range []struct {
		p          *corev1.Pod
		flag, want string
	}{
		{api, "audit-log-path", "-"},
		{api, "default-unreachable-toleration-seconds", "7"}, // the user's value beats the eviction timeout's
		{api, "default-not-ready-toleration-seconds", "20"},
		{api, "feature-gates", gates},
		{api, "service-cluster-ip-range", "10.100.0.0/20"},
		{cm, "node-monitor-period", "2s"},
		{cm, "node-monitor-grace-period", "20s"},
		{cm, "feature-gates", gates},
		{cm, "cluster-cidr", "172.16.0.0/16"},
		{cm, "service-cluster-ip-range", "10.100.0.0/20"},
		{sched, "v", "3"},
		{sched, "feature-gates", gates},
		{pod(t, cp, "etcd"), "feature-gates", "InitialCorruptCheck=true"}, // etcd's gates are its own
	} {
		if got := flagValue(tc.p, tc.flag); got != tc.want {
			t.Errorf("%s --%s=%q, want %q", tc.p.Name, tc.flag, got, tc.want)
		}
	}
	wf := nodeFiles(t, c, bootstrap.Node{Name: "test-m02", Role: spec.RoleWorker, IP: netip.MustParseAddr("192.168.49.3"), ControlPlane: cpIP})
	for name, f := range map[string]bootstrap.Files{"control plane": cp, "worker": wf} {
		var kc kubeletv1beta1.KubeletConfiguration
		if err := strictyaml.Unmarshal(file(t, f, kubeletconfig.ConfigPath), &kc); err != nil {
			t.Fatalf("%s kubelet config: %v", name, err)
		}
		if !reflect.DeepEqual(kc.FeatureGates, c.FeatureGates) {
			t.Errorf("%s kubelet featureGates = %v, want %v", name, kc.FeatureGates, c.FeatureGates)
		}
		if !slices.Equal(kc.ClusterDNS, []string{"10.100.0.10"}) {
			t.Errorf("%s kubelet clusterDNS = %v, want the service subnet's 10th address", name, kc.ClusterDNS)
		}
		svcs := nodeServices(t, f)
		if !slices.Contains(svcs["kubelet"].Args, "--max-pods=50") {
			t.Errorf("%s kubelet args %q lack --max-pods=50", name, svcs["kubelet"].Args)
		}
		if !slices.Contains(svcs["netctl"].Args, "--cluster-cidr=172.16.0.0/16") {
			t.Errorf("%s netctl args %q lack the pod subnet", name, svcs["netctl"].Args)
		}
		if !slices.Contains(svcs[bootstrap.ServiceNodeNet].Args, "--service-cidr=10.100.0.0/20") {
			t.Errorf("%s %s args %q lack the service subnet", name, bootstrap.ServiceNodeNet, svcs[bootstrap.ServiceNodeNet].Args)
		}
	}
}

func TestProxy(t *testing.T) {
	c := spec.Default("test")
	// Without a proxy, containerd gets no proxy environment (only the components' steady GOGC).
	env := nodeServices(t, nodeFiles(t, c, bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP}))["containerd"].Env
	for k := range env {
		if strings.Contains(strings.ToLower(k), "proxy") {
			t.Errorf("containerd env without a proxy: %v", env)
		}
	}
	c.Proxy = spec.Proxy{HTTPProxy: "http://proxy:3128", HTTPSProxy: "http://proxy:3128", NoProxy: "corp.example,localhost"}
	n := bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP, Network: netip.MustParsePrefix("192.168.49.0/24")}
	env = nodeServices(t, nodeFiles(t, c, n))["containerd"].Env
	if env["HTTPS_PROXY"] != "http://proxy:3128" || env["http_proxy"] != "http://proxy:3128" {
		t.Errorf("containerd proxy env: %v", env)
	}
	noProxy := strings.Split(env["NO_PROXY"], ",")
	for _, want := range []string{"corp.example", "localhost", "127.0.0.1", cpIP.String(), "192.168.49.0/24", c.PodSubnet, c.ServiceSubnet, ".svc", ".cluster.local"} {
		if !slices.Contains(noProxy, want) {
			t.Errorf("NO_PROXY %v lacks %s", noProxy, want)
		}
	}
	if strings.Count(env["NO_PROXY"], "localhost") != 1 {
		t.Errorf("NO_PROXY repeats entries: %s", env["NO_PROXY"])
	}
}

// A cluster with the local registry: every node gets containerd's mirror files for its host
// name (localhost:<port>) and its in-network name, pointing at its address; without it, none.
func TestRegistryMirrorFiles(t *testing.T) {
	c, n, f := worker(t)
	for p := range f.Data {
		if strings.HasPrefix(p, "/etc/containerd/certs.d/") {
			t.Errorf("a cluster without the registry gets %s", p)
		}
	}
	c.Registry, c.RegistryPort = true, 5001
	n.Registry = netip.MustParseAddr("192.168.49.252")
	f = nodeFiles(t, c, n)
	for _, p := range []string{"/etc/containerd/certs.d/localhost:5001/hosts.toml", "/etc/containerd/certs.d/kubeforge-registry:5000/hosts.toml"} {
		if b := string(file(t, f, p)); !strings.Contains(b, `server = "http://192.168.49.252:5000"`) {
			t.Errorf("%s:\n%s", p, b)
		}
	}
	checkPathsAndModes(t, f)
}

// A VM cluster's first control plane runs the cloud provider in node-address mode (LoadBalancer
// Services get the nodes' addresses) with its own credentials; its workers and Docker clusters'
// nodes do not (Docker clusters have a machine of their own for it).
func TestNodeLoadBalancersOnVMs(t *testing.T) {
	vm := spec.Default("test")
	vm.Driver, vm.Accel = spec.DriverKVM, spec.AccelTCG
	cp := bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP}
	f := nodeFiles(t, vm, cp)
	cloud, ok := nodeServices(t, f)["cloud-provider"]
	if !ok {
		t.Fatal("the VM cluster's control plane has no cloud-provider service")
	}
	if cloud.Path != contract.NodeBinary || !slices.Equal(cloud.Args, []string{"cloud-provider", "-node-addresses", "-cluster", "test", "-kubeconfig", contract.CloudKubeconfigPath}) {
		t.Errorf("cloud-provider runs %s %q", cloud.Path, cloud.Args)
	}
	kc := string(file(t, f, contract.CloudKubeconfigPath))
	if !strings.Contains(kc, "server: https://192.168.49.2:6443") {
		t.Errorf("cloud kubeconfig does not reach the local API server:\n%s", kc)
	}
	if f.Modes[contract.CloudKubeconfigPath] != 0o600 {
		t.Errorf("cloud kubeconfig mode %o", f.Modes[contract.CloudKubeconfigPath])
	}

	vm.Nodes = append(vm.Nodes, spec.Node{Name: spec.NodeName("test", 1), Role: spec.RoleWorker})
	w := bootstrap.Node{Name: "test-m02", Role: spec.RoleWorker, IP: netip.MustParseAddr("192.168.49.3"), ControlPlane: cpIP}
	for what, files := range map[string]bootstrap.Files{
		"a VM cluster's worker":            nodeFiles(t, vm, w),
		"a Docker cluster's control plane": nodeFiles(t, spec.Default("test"), cp),
	} {
		if _, ok := nodeServices(t, files)["cloud-provider"]; ok {
			t.Errorf("%s runs the cloud provider", what)
		}
		if _, ok := files.Data[contract.CloudKubeconfigPath]; ok {
			t.Errorf("%s has the cloud provider's kubeconfig", what)
		}
	}
}

// An emulated VM's own processes (kubelet, containerd, its shims) get a low CPU weight, so its
// control-plane pods come first on a starved CPU; VMs with KVM and Docker nodes keep the default.
func TestEmulatedNodeCPUWeight(t *testing.T) {
	cp := bootstrap.Node{Name: "test", Role: spec.RoleControlPlane, IP: cpIP, ControlPlane: cpIP}
	weight := func(c spec.Cluster) int {
		t.Helper()
		cfg, err := services.ParseConfig(file(t, nodeFiles(t, c, cp), contract.ServicesPath))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.NodeCPUWeight
	}
	tcg := spec.Default("test")
	tcg.Driver, tcg.Accel = spec.DriverKVM, spec.AccelTCG
	if got := weight(tcg); got != bootstrap.EmulatedNodeCPUWeight {
		t.Errorf("emulated VM: nodeCPUWeight %d, want %d", got, bootstrap.EmulatedNodeCPUWeight)
	}
	kvm := spec.Default("test")
	kvm.Driver, kvm.Accel = spec.DriverKVM, spec.AccelKVM
	for what, c := range map[string]spec.Cluster{"a KVM VM": kvm, "a Docker node": spec.Default("test")} {
		if got := weight(c); got != 0 {
			t.Errorf("%s: nodeCPUWeight %d, want 0 (the default)", what, got)
		}
	}
}
