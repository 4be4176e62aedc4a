package cloud

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"

	"kubeforge.dev/kubeforge/contract"
)

func TestPickIP(t *testing.T) {
	subnet := netip.MustParsePrefix("192.168.49.0/24")
	ip, err := pickIP(subnet, nil)
	if err != nil || ip != netip.MustParseAddr("192.168.49.251") {
		t.Fatalf("pickIP = %v, %v; want .251 (below .252 registry, .253 cloud provider, .254 API load balancer)", ip, err)
	}
	used := map[netip.Addr]bool{netip.MustParseAddr("192.168.49.251"): true, netip.MustParseAddr("192.168.49.250"): true}
	if ip, _ := pickIP(subnet, used); ip != netip.MustParseAddr("192.168.49.249") {
		t.Fatalf("pickIP = %v, want .249", ip)
	}
	for v := 128; v <= 251; v++ {
		used[netip.AddrFrom4([4]byte{192, 168, 49, byte(v)})] = true
	}
	if ip, err := pickIP(subnet, used); err == nil {
		t.Fatalf("pickIP of a full upper half = %v, want an error", ip)
	}
	// The machines' own addresses are never handed out, even when nothing uses them yet (a
	// stopped or not yet connected registry).
	for _, sub := range []string{"192.168.49.0/24", "10.1.0.0/16", "172.30.5.0/28"} {
		p := netip.MustParsePrefix(sub)
		ip, err := pickIP(p, nil)
		if err != nil {
			t.Fatalf("pickIP(%s): %v", sub, err)
		}
		last := netip.AddrFrom4(p.Addr().As4())
		for range 1<<(32-p.Bits()) - 1 {
			last = last.Next()
		}
		reserved := last.Prev().Prev().Prev() // below broadcast: LB, cloud provider, registry
		if ip.Compare(reserved) >= 0 {
			t.Errorf("pickIP(%s) = %v: not below the registry's %v", sub, ip, reserved)
		}
	}
}

func TestServicePorts(t *testing.T) {
	svc := &v1.Service{Spec: v1.ServiceSpec{Ports: []v1.ServicePort{
		{Port: 80, NodePort: 30080, Protocol: v1.ProtocolTCP},
		{Port: 53, NodePort: 30053, Protocol: v1.ProtocolUDP},
	}}}
	ps, err := servicePorts(svc)
	if err != nil || len(ps) != 2 || ps[1].proto != "udp" || ps[0].nodePort != 30080 {
		t.Fatalf("servicePorts = %v, %v", ps, err)
	}
	svc.Spec.Ports[0].NodePort = 0
	if _, err := servicePorts(svc); err == nil {
		t.Fatal("a port without node port: want an error naming allocateLoadBalancerNodePorts")
	}
	svc.Spec.Ports = []v1.ServicePort{{Port: 9, NodePort: 30009, Protocol: v1.ProtocolSCTP}}
	if _, err := servicePorts(svc); err == nil {
		t.Fatal("SCTP: want an error")
	}
	a := configHash("node:v1", []svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.2")}, nil)
	b := configHash("node:v1", []svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.3")}, nil)
	if a == b {
		t.Fatal("configHash ignores the nodes")
	}
	c := configHash("node:v1", []svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.3")}, map[int]int{80: 8080})
	if c == b {
		t.Fatal("configHash ignores the host ports asked for")
	}
	if d := configHash("node:v2", []svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.3")}, map[int]int{80: 8080}); d == c {
		t.Fatal("configHash ignores the node image (an upgrade would leave the load balancer on the old one)")
	}
}

func TestHostPorts(t *testing.T) {
	svc := &v1.Service{}
	svc.Annotations = map[string]string{contract.AnnotationHostPorts: " 80=8080, 443=8443"}
	asked, err := AskedHostPorts(svc)
	if err != nil || asked[80] != 8080 || asked[443] != 8443 || len(asked) != 2 {
		t.Fatalf("AskedHostPorts = %v, %v", asked, err)
	}
	for _, bad := range []string{"80", "80=x", "80=0", "0=80", "80=70000", "80=8080;443=8443"} {
		svc.Annotations[contract.AnnotationHostPorts] = bad
		if _, err := AskedHostPorts(svc); err == nil || !strings.Contains(err.Error(), contract.AnnotationHostPorts) {
			t.Errorf("AskedHostPorts(%q) = %v, want an error naming the annotation", bad, err)
		}
	}
	ports := []svcPort{{"tcp", 80, 30080}, {"tcp", 443, 30443}, {"udp", 53, 30053}}
	want := wantedHostPorts(ports, map[int]int{80: 8080}, map[string]string{"80/tcp": "32768", "443/tcp": "32769"})
	if want["80/tcp"] != "8080" || want["443/tcp"] != "32769" || want["53/udp"] != "53" {
		t.Fatalf("wantedHostPorts = %v: want the asked port, else the kept one, else the same number", want)
	}

	for _, tc := range []struct {
		err  string
		want string
		ok   bool
	}{
		{"driver failed programming external connectivity on endpoint x: Bind for 127.0.0.1:8080 failed: port is already allocated", "80/tcp", true},
		{"Error starting userland proxy: listen tcp4 127.0.0.1:32769: bind: address already in use", "443/tcp", true},
		{"cannot expose privileged port 53, you can add 'net.ipv4.ip_unprivileged_port_start=53' to /etc/sysctl.conf", "53/udp", true},
		{"port is already allocated", "443/tcp", true}, // no port named: one by one, in order
		{"Bind for 127.0.0.1:9999 failed: port is already allocated", "", false},
		{"no such image", "", false},
	} {
		got, ok := refusedPort(errors.New(tc.err), want)
		if got != tc.want || ok != tc.ok {
			t.Errorf("refusedPort(%q) = %q, %v; want %q, %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := refusedPort(errors.New("port is already allocated"), map[string]string{"80/tcp": ""}); ok {
		t.Error("refusedPort with every port already Docker's pick: want no retry")
	}
}
