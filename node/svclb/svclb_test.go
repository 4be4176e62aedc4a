package svclb

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestParsePort(t *testing.T) {
	p, err := ParsePort("UDP/53/30053")
	if err != nil || p != (Port{"udp", 53, 30053}) || p.String() != "udp/53/30053" {
		t.Fatalf("ParsePort = %+v, %v", p, err)
	}
	for _, bad := range []string{"tcp/80", "sctp/1/2", "tcp/0/30000", "tcp/80/x", "tcp/80/70000"} {
		if _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q): want an error", bad)
		}
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServe forwards real TCP and UDP traffic on loopback to a "node port" served here.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The node: a TCP server answering "tcp" and a UDP server echoing with "udp:" prepended.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("tcp"))
			c.Close()
		}
	}()
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		b := make([]byte, 100)
		for {
			n, from, err := uc.ReadFrom(b)
			if err != nil {
				return
			}
			uc.WriteTo(append([]byte("udp:"), b[:n]...), from)
		}
	}()
	tp, up := freePort(t, "tcp"), freePort(t, "udp")
	ports := []Port{
		{"tcp", tp, tl.Addr().(*net.TCPAddr).Port},
		{"udp", up, uc.LocalAddr().(*net.UDPAddr).Port},
	}
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, ports, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, io.Discard) }()

	var got []byte
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tp))
		if err == nil {
			got, _ = io.ReadAll(c)
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if string(got) != "tcp" {
		t.Fatalf("TCP through the forwarder: %q", got)
	}
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(up))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi"))
	b := make([]byte, 100)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != "udp:hi" {
		t.Fatalf("UDP through the forwarder: %q, %v", b[:n], err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
