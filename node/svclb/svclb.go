// Package svclb is the forwarder of one LoadBalancer Service: it runs alone in the Service's
// load-balancer machine (`kubeforge-init svclb`, a container the cluster's cloud provider makes
// on the cluster network, see node/cloud), whose address is the Service's external IP and whose
// ports are also published on the host's 127.0.0.1. Each Service port is forwarded to that port's
// NodePort on the cluster's nodes, where kube-proxy takes over as for any NodePort: TCP through
// lb.Proxy (round robin over the nodes that accept connections, failing over on a refused dial),
// UDP through one upstream socket per client address. It imports nothing from Kubernetes.
package svclb

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kubeforge.dev/kubeforge/node/lb"
)

// Port is one forwarded Service port.
type Port struct {
	Protocol string // "tcp" or "udp"
	Port     int    // the Service port, listened on
	NodePort int    // where it goes on every node
}

// String is the port's command-line form, PROTO/PORT/NODEPORT.
func (p Port) String() string {
	return fmt.Sprintf("%s/%d/%d", p.Protocol, p.Port, p.NodePort)
}

// ParsePort reads PROTO/PORT/NODEPORT.
func ParsePort(s string) (Port, error) {
	f := strings.Split(s, "/")
	if len(f) != 3 {
		return Port{}, fmt.Errorf("port %q: want PROTO/PORT/NODEPORT", s)
	}
	p := Port{Protocol: strings.ToLower(f[0])}
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return Port{}, fmt.Errorf("port %q: protocol must be tcp or udp", s)
	}
	var err error
	if p.Port, err = strconv.Atoi(f[1]); err != nil || p.Port < 1 || p.Port > 65535 {
		return Port{}, fmt.Errorf("port %q: %q is not a port", s, f[1])
	}
	if p.NodePort, err = strconv.Atoi(f[2]); err != nil || p.NodePort < 1 || p.NodePort > 65535 {
		return Port{}, fmt.Errorf("port %q: %q is not a port", s, f[2])
	}
	return p, nil
}

// CheckInterval is how often the nodes' node ports are checked (TCP connects).
const CheckInterval = 10 * time.Second

// UDPIdle is how long a UDP client without traffic keeps its upstream socket.
const UDPIdle = 2 * time.Minute

// Serve forwards ports to nodes until ctx ends. It fails at once when a port cannot be listened
// on.
func Serve(ctx context.Context, ports []Port, nodes []netip.Addr, log io.Writer) error {
	if len(ports) == 0 || len(nodes) == 0 {
		return errors.New("svclb: no ports or no nodes to forward to")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(ports))
	for _, p := range ports {
		var backends []string
		for _, n := range nodes {
			backends = append(backends, netip.AddrPortFrom(n, uint16(p.NodePort)).String())
		}
		addr := ":" + strconv.Itoa(p.Port)
		switch p.Protocol {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("svclb: %w", err)
			}
			// A check is a connection to the Service's pods: seldom, a failed dial fails over anyway.
			px := &lb.Proxy{Log: log, CheckInterval: CheckInterval}
			px.SetBackends(backends)
			go func() { errc <- px.Serve(ctx, l) }()
		case "udp":
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("svclb: %w", err)
			}
			u := &udpForwarder{conn: c, backends: backends, sessions: map[string]*udpSession{}, log: log}
			go func() { errc <- u.serve(ctx) }()
		default:
			return fmt.Errorf("svclb: protocol %q", p.Protocol)
		}
		fmt.Fprintf(log, "svclb: %s port %d -> nodes %v port %d\n", p.Protocol, p.Port, nodes, p.NodePort)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

type udpSession struct {
	up   net.Conn
	last time.Time
}

type udpForwarder struct {
	conn     net.PacketConn
	backends []string
	log      io.Writer

	mu       sync.Mutex
	sessions map[string]*udpSession
	next     int
}

func (u *udpForwarder) serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		u.conn.Close()
	}()
	go u.expire(ctx)
	buf := make([]byte, 64*1024)
	for {
		n, from, err := u.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s, err := u.session(from)
		if err != nil {
			fmt.Fprintf(u.log, "svclb: udp from %s: %v\n", from, err)
			continue
		}
		_, _ = s.up.Write(buf[:n])
	}
}

// session returns the upstream socket of client from, dialing the next backend for a new one.
func (u *udpForwarder) session(from net.Addr) (*udpSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.sessions[from.String()]; ok {
		s.last = time.Now()
		return s, nil
	}
	b := u.backends[u.next%len(u.backends)]
	u.next++
	up, err := net.Dial("udp", b)
	if err != nil {
		return nil, err
	}
	s := &udpSession{up: up, last: time.Now()}
	u.sessions[from.String()] = s
	go func() {
		buf := make([]byte, 64*1024)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return // closed by expire, or the backend refused (ICMP): the next packet redials
			}
			u.mu.Lock()
			s.last = time.Now()
			u.mu.Unlock()
			if _, err := u.conn.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	return s, nil
}

// expire closes the upstream sockets of idle clients, and of those whose backend refused.
func (u *udpForwarder) expire(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.mu.Lock()
			for _, s := range u.sessions {
				s.up.Close()
			}
			u.mu.Unlock()
			return
		case <-t.C:
		}
		u.mu.Lock()
		for k, s := range u.sessions {
			if time.Since(s.last) > UDPIdle {
				s.up.Close()
				delete(u.sessions, k)
			}
		}
		u.mu.Unlock()
	}
}

// Main is `kubeforge-init svclb -port PROTO/PORT/NODEPORT... -node IP...`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("svclb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ports []Port
	var nodes []netip.Addr
	fs.Func("port", "a Service port to forward, PROTO/PORT/NODEPORT (repeatable)", func(s string) error {
		p, err := ParsePort(s)
		if err == nil {
			ports = append(ports, p)
		}
		return err
	})
	fs.Func("node", "a node's address on the cluster network (repeatable)", func(s string) error {
		a, err := netip.ParseAddr(s)
		if err == nil {
			nodes = append(nodes, a)
		}
		return err
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Serve(ctx, ports, nodes, stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
