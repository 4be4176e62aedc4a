package cloud

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestPickIP(t *testing.T) {
	subnet := netip.MustParsePrefix("192.168.49.0/24")
	ip, err := pickIP(subnet, nil)
	if err != nil || ip != netip.MustParseAddr("192.168.49.252") {
		t.Fatalf("pickIP = %v, %v; want .252 (below .253 cloud provider, .254 API load balancer)", ip, err)
	}
	used := map[netip.Addr]bool{netip.MustParseAddr("192.168.49.252"): true, netip.MustParseAddr("192.168.49.251"): true}
	if ip, _ := pickIP(subnet, used); ip != netip.MustParseAddr("192.168.49.250") {
		t.Fatalf("pickIP = %v, want .250", ip)
	}
	for v := 128; v <= 252; v++ {
		used[netip.AddrFrom4([4]byte{192, 168, 49, byte(v)})] = true
	}
	if ip, err := pickIP(subnet, used); err == nil {
		t.Fatalf("pickIP of a full upper half = %v, want an error", ip)
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
