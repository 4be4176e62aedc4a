package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func testNode() Node {
	return Node{
		ClusterName: "demo", NodeName: "demo", NodeIP: netip.MustParseAddr("192.168.49.2"),
		ServiceSubnet: "10.96.0.0/16", PodSubnet: "10.244.0.0/16", DNSDomain: "cluster.local",
		ControlPlaneEndpoint: "192.168.49.2:6443",
	}
}

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM block in %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestControlPlaneCertificates(t *testing.T) {
	dir := t.TempDir()
	a, err := EnsureAuthorities(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.ControlPlaneFiles(testNode())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-client.crt",
		"apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-etcd-client.crt",
		"etcd/ca.crt", "etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt"} {
		if _, ok := files["etc/kubernetes/pki/"+f]; !ok {
			t.Errorf("missing %s", f)
		}
	}
	api := parseCert(t, files["etc/kubernetes/pki/apiserver.crt"])
	for _, dns := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "demo"} {
		if !slices.Contains(api.DNSNames, dns) {
			t.Errorf("apiserver cert lacks DNS SAN %s: %v", dns, api.DNSNames)
		}
	}
	var ips []string
	for _, ip := range api.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, ip := range []string{"10.96.0.1", "192.168.49.2", "127.0.0.1"} {
		if !slices.Contains(ips, ip) {
			t.Errorf("apiserver cert lacks IP SAN %s: %v", ip, ips)
		}
	}
	if !slices.Contains(api.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("apiserver cert is not for server auth: %v", api.ExtKeyUsage)
	}
	if _, ok := api.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("apiserver key is %T, want ECDSA", api.PublicKey)
	}
	if d := time.Until(api.NotAfter); d < 360*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("apiserver cert expires in %v, want about a year", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Cluster.Cert)
	if _, err := api.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Errorf("apiserver cert does not verify against the cluster CA: %v", err)
	}
	kc := parseCert(t, files["etc/kubernetes/pki/apiserver-kubelet-client.crt"])
	if !slices.Contains(kc.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || kc.Subject.CommonName != "kube-apiserver-kubelet-client" {
		t.Errorf("apiserver-kubelet-client: usages %v subject %v", kc.ExtKeyUsage, kc.Subject)
	}
	etcd := parseCert(t, files["etc/kubernetes/pki/etcd/server.crt"])
	if !slices.ContainsFunc(etcd.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
		t.Errorf("etcd server cert lacks 127.0.0.1: %v", etcd.IPAddresses)
	}
	if ca := a.Cluster.Cert; !ca.IsCA || time.Until(ca.NotAfter) < 9*365*24*time.Hour {
		t.Errorf("cluster CA: IsCA=%v NotAfter=%v", ca.IsCA, ca.NotAfter)
	}
}

func TestAuthoritiesAreReused(t *testing.T) {
	dir := t.TempDir()
	a1, err := EnsureAuthorities(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := EnsureAuthorities(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if !a1.Cluster.Cert.Equal(a2.Cluster.Cert) || !a1.Etcd.Cert.Equal(a2.Etcd.Cert) {
		t.Fatal("a second EnsureAuthorities made new CAs instead of loading the existing ones")
	}
}

func TestKubeconfig(t *testing.T) {
	a, err := EnsureAuthorities(t.TempDir(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.KubeconfigFor("https://127.0.0.1:41234", "demo", KubeletIdentity("demo-m02"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "demo" || cfg.Clusters["demo"].Server != "https://127.0.0.1:41234" {
		t.Fatalf("context %q clusters %v", cfg.CurrentContext, cfg.Clusters)
	}
	c := parseCert(t, cfg.AuthInfos["demo"].ClientCertificateData)
	if c.Subject.CommonName != "system:node:demo-m02" || !slices.Equal(c.Subject.Organization, []string{"system:nodes"}) {
		t.Fatalf("subject %v", c.Subject)
	}
}

func TestKubeletServing(t *testing.T) {
	a, err := EnsureAuthorities(t.TempDir(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := a.KubeletServing("demo-m02", net.ParseIP("192.168.49.3"))
	if err != nil || len(keyPEM) == 0 {
		t.Fatalf("KubeletServing: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(a.Cluster.Cert)
	for _, host := range []string{"demo-m02", "192.168.49.3"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the serving certificate does not verify for %s against the cluster CA: %v", host, err)
		}
	}
	if cert.Subject.CommonName != "system:node:demo-m02" {
		t.Errorf("CN %q", cert.Subject.CommonName)
	}
}
