package kubeclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestNew: the client talks to the kubeconfig's server with its credentials and the user agent
// asked for; a request slower than the timeout fails.
func TestNew(t *testing.T) {
	var slow atomic.Bool
	var ua, auth atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		auth.Store(r.Header.Get("Authorization"))
		if slow.Load() {
			time.Sleep(time.Second)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "node.conf")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: srv.URL, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "x"
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}
	cs, err := New(kc, UserAgent("kubeforge-test"), Timeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ua.Load() != "kubeforge-test" || auth.Load() != "Bearer t" {
		t.Errorf("User-Agent %q, Authorization %q", ua.Load(), auth.Load())
	}
	slow.Store(true)
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background()); err == nil {
		t.Error("a request slower than the timeout succeeded")
	}
}

func TestNewMissingKubeconfig(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "missing.conf")
	if _, err := New(kc); err == nil || !strings.Contains(err.Error(), kc) {
		t.Errorf("New(%s) = %v, want an error naming the file", kc, err)
	}
}
