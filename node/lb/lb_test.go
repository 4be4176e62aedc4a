package lb

import (
	"encoding/json"
	"kubeforge.dev/kubeforge/contract"

	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer answers every connection with its name and closes.
func echoServer(t *testing.T, name string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

func ask(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	s, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s)
}

func startProxy(t *testing.T, backends ...string) (*Proxy, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &Proxy{CheckInterval: 50 * time.Millisecond, DialTimeout: 200 * time.Millisecond}
	p.SetBackends(backends)
	go p.Serve(ctx, l)
	return p, l.Addr().String()
}

func TestRoundRobinAndFailover(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	_, addr := startProxy(t, a.Addr().String(), b.Addr().String())
	seen := map[string]int{}
	for i := 0; i < 6; i++ {
		seen[ask(t, addr)]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Errorf("round robin over two backends: %v", seen)
	}
	// One backend goes away: every connection still gets an answer, from the other.
	a.Close()
	for i := 0; i < 6; i++ {
		if got := ask(t, addr); got != "b" {
			t.Fatalf("connection %d after a backend died answered %q, want b", i, got)
		}
	}
}

func TestNoBackendClosesConnection(t *testing.T) {
	dead := echoServer(t, "x")
	deadAddr := dead.Addr().String()
	dead.Close()
	_, addr := startProxy(t, deadAddr)
	if got := ask(t, addr); got != "" {
		t.Errorf("with no live backend got %q, want a closed connection", got)
	}
}

func TestConfigReload(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.json")
	write := func(c contract.LBConfig) {
		buf, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(contract.LBConfig{Listen: "127.0.0.1:0", Backends: []string{a.Addr().String()}})
	fi, _ := os.Stat(path)
	p, addr := startProxy(t, a.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.watchConfig(ctx, path, fi)
	time.Sleep(10 * time.Millisecond)
	write(contract.LBConfig{Listen: "127.0.0.1:0", Backends: []string{b.Addr().String(), "127.0.0.1:1"}})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ask(t, addr) == "b" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the proxy never used the backend of the new config")
}

func TestReadConfigRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":    "{",
		"no listen":   `{"backends":["1.2.3.4:6443"]}`,
		"bad backend": `{"listen":":6443","backends":["1.2.3.4"]}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadConfig(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHealthPathProbe(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	p := &Proxy{HealthPath: "/readyz", DialTimeout: time.Second}
	if !p.probe(context.Background(), addr) {
		t.Errorf("a ready backend failed the probe")
	}
	ready.Store(false)
	if p.probe(context.Background(), addr) {
		t.Errorf("a backend answering 500 passed the probe")
	}
}
