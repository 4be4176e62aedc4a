package verbosity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestSet: the level is PUT as the body, with the kubeconfig's client certificate; a refusal
// names the component and the status.
func TestSet(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes-admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ method, body, cn string }
	status := http.StatusOK
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.body = r.Method, string(b)
		if len(r.TLS.PeerCertificates) > 0 {
			got.cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("forbidden: no\n"))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()

	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ClientKeyData:         pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "admin"}
	kc.CurrentContext = "c"
	file := filepath.Join(t.TempDir(), "admin.conf")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := set(ctx, "kube-scheduler", srv.URL+"/debug/flags/v", 10, file); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPut || got.body != "10" || got.cn != "kubernetes-admin" {
		t.Errorf("request: %+v", got)
	}
	status = http.StatusForbidden
	if err := set(ctx, "kube-scheduler", srv.URL+"/debug/flags/v", 0, file); err == nil ||
		!strings.Contains(err.Error(), "kube-scheduler") || !strings.Contains(err.Error(), "403") {
		t.Errorf("refused: %v", err)
	}
	if err := Set(ctx, "kube-apiserver", 2, file); err == nil || !strings.Contains(err.Error(), "unknown component") {
		t.Errorf("unknown component: %v", err)
	}
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"kube-scheduler"}, {"kube-scheduler", "x"}, {"kube-scheduler", "11"}} {
		var out, errb bytes.Buffer
		if code := Main(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("Main(%q): %d %q", args, code, errb.String())
		}
	}
}
