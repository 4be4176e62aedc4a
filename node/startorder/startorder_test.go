package startorder

import (
	"bytes"
	"context"
	"net"
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

func TestFlagValue(t *testing.T) {
	args := []string{"--a=1", "--kubeconfig=/x.conf", "--b", "2", "--kubeconfig", "/y.conf", "--etcd-servers=https://127.0.0.1:2379"}
	for name, want := range map[string]string{"kubeconfig": "/y.conf", "b": "2", "etcd-servers": "https://127.0.0.1:2379", "missing": ""} {
		if got := flagValue(args, name); got != want {
			t.Errorf("flagValue(%s) = %q, want %q", name, got, want)
		}
	}
}

// TestEtcdListening: the wait ends once a listener appears on the port, not before.
func TestEtcdListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := EtcdListening(ctx, []string{"https://" + addr}); err == nil {
		t.Fatal("EtcdListening returned nil with nothing listening")
	}

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- EtcdListening(ctx, []string{"https://" + addr})
	}()
	time.Sleep(300 * time.Millisecond) // the "etcd" starts late
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer l.Close()
	if err := <-done; err != nil {
		t.Fatalf("EtcdListening: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("EtcdListening returned before anything listened")
	}
	if err := EtcdListening(context.Background(), []string{"::bad"}); err == nil {
		t.Fatal("no usable URL accepted")
	}
}

// TestAPIServerReady: 403s (roles not made yet) and 500s (not ready) are waited out; ok ends it.
func TestAPIServerReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		switch n := calls.Add(1); {
		case n <= 2:
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
		case n <= 4:
			http.Error(w, "[-]poststarthook/rbac/bootstrap-roles failed: not finished", http.StatusInternalServerError)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	kc := kubeconfigFor(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := APIServerReady(ctx, kc); err != nil {
		t.Fatalf("APIServerReady: %v", err)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("/readyz asked %d times, want 5", n)
	}

	var log bytes.Buffer
	Wait(context.Background(), "kube-scheduler", []string{"--kubeconfig=" + kc, "--leader-elect=true"}, 0, &log)
	if !strings.Contains(log.String(), "kube-scheduler: waited") {
		t.Fatalf("Wait said %q", log.String())
	}
}

// TestWaitOthers: components without a dependency do not wait or say anything.
func TestWaitOthers(t *testing.T) {
	var log bytes.Buffer
	Wait(context.Background(), "kubelet", []string{"--kubeconfig=/nonexistent"}, 0, &log)
	Wait(context.Background(), "etcd", nil, 0, &log)
	if log.Len() != 0 {
		t.Fatalf("Wait said %q", log.String())
	}
}

// TestWaitBound: a component whose dependency never comes runs after the bound it was given,
// saying so.
func TestWaitBound(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "[-]etcd failed", http.StatusInternalServerError)
	}))
	defer srv.Close()
	kc := kubeconfigFor(t, srv.URL)
	var log bytes.Buffer
	start := time.Now()
	Wait(context.Background(), "kube-controller-manager", []string{"--kubeconfig", kc}, 700*time.Millisecond, &log)
	if took := time.Since(start); took < 700*time.Millisecond || took > 5*time.Second {
		t.Errorf("Wait with a bound of 700ms took %s", took)
	}
	if !strings.Contains(log.String(), "kube-controller-manager: starting without the API server's /readyz after 7") {
		t.Errorf("Wait said %q", log.String())
	}
}

// kubeconfigFor writes a component's kubeconfig for the API server at url.
func kubeconfigFor(t *testing.T, url string) string {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "component.conf")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: url, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "x"
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}
	return kc
}
