// Package lb is the TCP load balancer in front of the API servers of an HA control plane. It
// runs in the cluster's load-balancer node (`kubeforge-init lb`), so it imports nothing from
// Kubernetes: it forwards each connection to a healthy backend (round robin), checks the backends
// with TCP connects every second, fails over to the next backend when a dial fails, and re-reads
// its config file when it changes (nodes added or removed).
package lb

import (
	"kubeforge.dev/kubeforge/contract"

	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Timings; variables of a Proxy so tests can shorten them.
const (
	DefaultCheckInterval = time.Second
	DefaultDialTimeout   = time.Second
)

// Proxy forwards connections to backends.
type Proxy struct {
	CheckInterval time.Duration
	DialTimeout   time.Duration
	Log           io.Writer
	// HealthPath: see contract.LBConfig.
	HealthPath string

	mu       sync.Mutex
	client   *http.Client
	backends []string
	healthy  map[string]bool
	next     int
}

// SetBackends replaces the backends; new ones count as healthy until a check says otherwise.
func (p *Proxy) SetBackends(bs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.healthy
	p.backends = append([]string(nil), bs...)
	p.healthy = map[string]bool{}
	for _, b := range bs {
		h, ok := old[b]
		p.healthy[b] = !ok || h
	}
}

// candidates returns the backends to try for one connection: healthy ones first, from the
// round-robin position, then the others (a check may be stale).
func (p *Proxy) candidates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.backends)
	var good, bad []string
	for i := 0; i < n; i++ {
		b := p.backends[(p.next+i)%n]
		if p.healthy[b] {
			good = append(good, b)
		} else {
			bad = append(bad, b)
		}
	}
	if n > 0 {
		p.next = (p.next + 1) % n
	}
	return append(good, bad...)
}

func (p *Proxy) mark(b string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, known := p.healthy[b]; known && p.healthy[b] != ok {
		p.healthy[b] = ok
		p.logf("backend %s: %s", b, map[bool]string{true: "up", false: "down"}[ok])
	}
}

func (p *Proxy) logf(format string, a ...any) {
	if p.Log != nil {
		fmt.Fprintf(p.Log, "lb: "+format+"\n", a...)
	}
}

func (p *Proxy) dialTimeout() time.Duration {
	if p.DialTimeout > 0 {
		return p.DialTimeout
	}
	return DefaultDialTimeout
}

// check dials every backend once and records the result.
func (p *Proxy) check(ctx context.Context) {
	p.mu.Lock()
	bs := append([]string(nil), p.backends...)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := p.probe(ctx, b)
			if ctx.Err() == nil {
				p.mark(b, ok)
			}
		}()
	}
	wg.Wait()
}

// probe checks one backend: a TCP connect, or an HTTPS GET of HealthPath.
func (p *Proxy) probe(ctx context.Context, b string) bool {
	if p.HealthPath == "" {
		d := net.Dialer{Timeout: p.dialTimeout()}
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*p.dialTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+b+p.HealthPath, nil)
	if err != nil {
		return false
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *Proxy) httpClient() *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		// The probe only asks whether the backend is ready; the connections it balances are
		// end-to-end TLS between the clients and the API servers, untouched. So the probe does
		// not verify the backend's certificate (it has no use for the cluster CA).
		p.client = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe only
			DisableKeepAlives: true,
		}}
	}
	return p.client
}

// Serve accepts connections on l until ctx ends, checking the backends meanwhile.
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	interval := p.CheckInterval
	if interval <= 0 {
		interval = DefaultCheckInterval
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			p.check(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go p.handle(ctx, c)
	}
}

func (p *Proxy) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	var up net.Conn
	for _, b := range p.candidates() {
		d := net.Dialer{Timeout: p.dialTimeout()}
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			p.mark(b, false)
			continue
		}
		up = conn
		break
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// ReadConfig reads and checks a config file.
func ReadConfig(path string) (contract.LBConfig, error) {
	var c contract.LBConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Listen == "" {
		return c, fmt.Errorf("%s: no listen address", path)
	}
	for _, b := range c.Backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return c, fmt.Errorf("%s: backend %q is not host:port", path, b)
		}
	}
	return c, nil
}

// watchConfig re-reads path when its modification time or size changes.
func (p *Proxy) watchConfig(ctx context.Context, path string, first os.FileInfo) {
	last := first
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil || (fi.ModTime().Equal(last.ModTime()) && fi.Size() == last.Size()) {
			continue
		}
		c, err := ReadConfig(path)
		if err != nil {
			p.logf("keeping the old backends: %v", err)
			continue
		}
		last = fi
		p.SetBackends(c.Backends)
		p.logf("backends now %v", c.Backends)
	}
}

// Main is `kubeforge-init lb [-config FILE]`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", contract.LBConfigPath, "config file (JSON: listen, backends)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fi, err := os.Stat(*path)
	if err != nil {
		fmt.Fprintf(stderr, "lb: %v\n", err)
		return 1
	}
	c, err := ReadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "lb: %v\n", err)
		return 1
	}
	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "lb: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p := &Proxy{Log: stdout, HealthPath: c.HealthPath}
	p.SetBackends(c.Backends)
	p.logf("listening on %s, backends %v", l.Addr(), c.Backends)
	go p.watchConfig(ctx, *path, fi)
	if err := p.Serve(ctx, l); err != nil {
		fmt.Fprintf(stderr, "lb: %v\n", err)
		return 1
	}
	return 0
}
