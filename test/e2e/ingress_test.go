//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// textDeployment serves text over HTTP on port 80 (busybox httpd), with a Service of the same
// name on port 80.
func textDeployment(name, text string) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name:    "web",
						Image:   BusyboxImage,
						Command: []string{"sh", "-c", "busybox mkdir -p /www && echo " + text + " > /www/index.html && exec busybox httpd -f -p 80 -h /www"},
						Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(80)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(80)}}},
	}
	return dep, svc
}

// hostGet GETs url with the Host header host (as `curl -H 'Host: host' url`).
func hostGet(ctx context.Context, url, host string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s (Host %s): %s", url, host, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// tlsGet GETs https://host/ through addr (127.0.0.1:port), trusting only ca and checking the
// certificate is host's (as `curl --resolve host:port:127.0.0.1 --cacert ca.crt`).
func tlsGet(ctx context.Context, addr, host string, ca *x509.CertPool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("https://%s/ via %s: %s", host, addr, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// testCA makes a CA and a serving certificate it signs for hosts; it returns the CA's pool and
// the certificate and key in PEM.
func testCA(t *testing.T, hosts ...string) (*x509.CertPool, []byte, []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubeforge e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// portFree reports whether 127.0.0.1:port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestAddonsIngress: `start --addons ingress` serves Ingresses and Gateway API routes from the
// host at 127.0.0.1 (80 and 443 when free): two hosts behind one Ingress (of no class: the
// default class is Traefik's), an HTTPRoute on the default Gateway, TLS from a Secret through an
// Ingress and through a Gateway's HTTPS listener; other host ports on request, one that is busy
// replaced; stop/start keeps the routes; disable removes Traefik and keeps the CRDs.
func TestAddonsIngress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-ingress"
	e.deleteOnCleanup(name)
	e.usageErrors(ctx, []usageCase{
		{[]string{"start", "--name", name, "--addons", "ingress", "--ingress-ports", "8080"}, "--ingress-ports"},
		{[]string{"start", "--name", name, "--addons", "ingress", "--ingress-ports", "8080,8080"}, "two different host ports"},
		{[]string{"addons", "enable", "--name", name, "metrics-server", "--ingress-ports", "8080,8443"}, "enable it too"},
	})
	defaultsFree := portFree(80) && portFree(443)
	r := e.ok(ctx, "start", "--name", name, "--addons", "ingress")
	if !strings.Contains(r.Stdout, "Ingress and Gateway API answer at http://127.0.0.1:") {
		t.Errorf("start --addons ingress does not say where it answers:\n%s", r.Stdout)
	}
	cs := e.clientset(name)
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	for _, app := range []string{"one", "two"} {
		dep, svc := textDeployment(app, app)
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	ports := func(t *testing.T) (http, https string) {
		t.Helper()
		var us []serviceURL
		r := e.ok(ctx, "service", "traefik", "-n", "kube-system", "--name", name, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &us); err != nil {
			t.Fatalf("service -o json: %v: %s", err, r.Stdout)
		}
		for _, u := range us {
			switch u.Port {
			case "web":
				http = u.URL
			case "websecure":
				https = u.URL
			}
		}
		if !strings.HasPrefix(http, "http://127.0.0.1:") || !strings.HasPrefix(https, "https://127.0.0.1:") {
			t.Fatalf("service traefik: web %q, websecure %q: want http:// and https:// URLs on 127.0.0.1", http, https)
		}
		return http, https
	}
	httpURL, httpsURL := ports(t)
	if defaultsFree && (httpURL != "http://127.0.0.1:80" || httpsURL != "https://127.0.0.1:443") {
		t.Errorf("80 and 443 were free: the ingress is at %s and %s", httpURL, httpsURL)
	}
	httpsAddr := strings.TrimPrefix(httpsURL, "https://")

	dir := t.TempDir()
	apply := func(t *testing.T, file, manifest string) {
		t.Helper()
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		e.ok(ctx, "kubectl", "--name", name, "--", "apply", "-f", p)
	}
	routes := func(t *testing.T, when, httpURL string) {
		t.Helper()
		for host, want := range map[string]string{"one.localhost": "one", "two.localhost": "two", "gw.localhost": "two"} {
			if err := answers(ctx, when+": "+host, want, func() (string, error) { return hostGet(ctx, httpURL+"/", host) }); err != nil {
				t.Error(err)
			}
		}
	}

	// An Ingress with no class: the API server gives it the default class, Traefik's.
	apply(t, "ingress.yaml", `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: apps, namespace: default}
spec:
  rules:
  - host: one.localhost
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: one, port: {number: 80}}}}]}
  - host: two.localhost
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: two, port: {number: 80}}}}]}
`)
	// An HTTPRoute on the default Gateway.
	apply(t, "route.yaml", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: default}
spec:
  parentRefs: [{name: traefik-gateway, namespace: kube-system}]
  hostnames: [gw.localhost]
  rules: [{backendRefs: [{name: two, port: 80}]}]
`)
	routes(t, "created", httpURL)
	if r := e.ok(ctx, "kubectl", "--name", name, "--", "get", "ingress", "apps", "-o", "jsonpath={.spec.ingressClassName}"); strings.TrimSpace(r.Stdout) != "traefik" {
		t.Errorf("the Ingress's class is %q: want the default class traefik", r.Stdout)
	}
	if r := e.ok(ctx, "kubectl", "--name", name, "--", "get", "httproute", "gw", "-o",
		`jsonpath={.status.parents[0].conditions[?(@.type=="Accepted")].status}`); strings.TrimSpace(r.Stdout) != "True" {
		t.Errorf("HTTPRoute gw: Accepted=%q, want True", r.Stdout)
	}

	t.Run("TLS from a Secret", func(t *testing.T) {
		e := e.sub(t)
		pool, certPEM, keyPEM := testCA(t, "one.localhost", "gwtls.localhost")
		if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "tls-one"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.ok(ctx, "kubectl", "--name", name, "--", "patch", "ingress", "apps", "--type=merge", "-p",
			`{"spec":{"tls":[{"hosts":["one.localhost"],"secretName":"tls-one"}]}}`)
		if err := answers(ctx, "https://one.localhost via the Ingress", "one", func() (string, error) { return tlsGet(ctx, httpsAddr, "one.localhost", pool) }); err != nil {
			t.Error(err)
		}
		// A Gateway of the user's with an HTTPS listener (port 8443: Traefik's websecure).
		apply(t, "tls-gateway.yaml", `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: default}
spec:
  gatewayClassName: traefik
  listeners:
  - name: https
    protocol: HTTPS
    port: 8443
    hostname: gwtls.localhost
    tls: {mode: Terminate, certificateRefs: [{name: tls-one}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gwtls, namespace: default}
spec:
  parentRefs: [{name: tls-gw}]
  hostnames: [gwtls.localhost]
  rules: [{backendRefs: [{name: two, port: 80}]}]
`)
		if err := answers(ctx, "https://gwtls.localhost via the Gateway", "two", func() (string, error) { return tlsGet(ctx, httpsAddr, "gwtls.localhost", pool) }); err != nil {
			t.Error(err)
		}
	})

	t.Run("other ports, a busy one replaced", func(t *testing.T) {
		e := e.sub(t)
		busy, l := freeLocalPort(t)
		defer l.Close()
		want, hl := freeLocalPort(t)
		hl.Close()
		r := e.ok(ctx, "addons", "enable", "ingress", "--name", name, "--ingress-ports", fmt.Sprintf("%d,%d", busy, want))
		h, hs := ports(t)
		if h == fmt.Sprintf("http://127.0.0.1:%d", busy) {
			t.Errorf("the ingress is published on %s, a port another program holds", h)
		}
		if hs != fmt.Sprintf("https://127.0.0.1:%d", want) {
			t.Errorf("https at %s, want port %d as asked", hs, want)
		}
		if !strings.Contains(r.Stdout, h) || !strings.Contains(r.Stdout, hs) {
			t.Errorf("addons enable does not print %s and %s:\n%s", h, hs, r.Stdout)
		}
		httpURL, httpsURL = h, hs
		httpsAddr = strings.TrimPrefix(httpsURL, "https://")
		routes(t, "moved", httpURL)
	})

	t.Run("stop and start keep the routes", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "stop", "--name", name)
		e.ok(ctx, "start", "--name", name)
		if h, hs := ports(t); h != httpURL || hs != httpsURL {
			t.Errorf("after stop/start the ingress is at %s %s, before at %s %s", h, hs, httpURL, httpsURL)
		}
		routes(t, "after stop/start", httpURL)
	})

	t.Run("disable", func(t *testing.T) {
		e := e.sub(t)
		r := e.ok(ctx, "addons", "disable", "ingress", "--name", name)
		if !strings.Contains(r.Stdout+r.Stderr, "CRDs stay") {
			t.Errorf("disable does not say the Gateway API CRDs stay:\n%s%s", r.Stdout, r.Stderr)
		}
		if err := silent(ctx, httpURL, func() (string, error) { return hostGet(ctx, httpURL+"/", "one.localhost") }); err != nil {
			t.Error(err)
		}
		// The user's routes and the CRDs behind them stay.
		e.ok(ctx, "kubectl", "--name", name, "--", "get", "httproute", "gw", "-n", "default")
		if a := e.addonList(ctx, name)["ingress"]; a.Enabled {
			t.Error("addons list: ingress still enabled after disable")
		}
		if r := e.run(ctx, nil, "kubectl", "--name", name, "--", "get", "deployment", "traefik", "-n", "kube-system"); r.Code == 0 {
			t.Errorf("the traefik Deployment is still there after disable")
		}
	})

	e.ok(ctx, "delete", "--name", name)
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
}
