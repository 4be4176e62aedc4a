package cloud

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
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
	a := configHash([]svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.2")})
	b := configHash([]svcPort{{"tcp", 80, 30080}}, []netip.Addr{netip.MustParseAddr("10.0.0.3")})
	if a == b {
		t.Fatal("configHash ignores the nodes")
	}
}
