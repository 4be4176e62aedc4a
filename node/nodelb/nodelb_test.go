package nodelb

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name string, addrs ...v1.NodeAddress) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeStatus{Addresses: addrs}}
}

func internal(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip} }

func ips(st *v1.LoadBalancerStatus) string {
	var out []string
	for _, in := range st.Ingress {
		if in.IPMode == nil || *in.IPMode != v1.LoadBalancerIPModeVIP {
			out = append(out, in.IP+"(not VIP)")
			continue
		}
		out = append(out, in.IP)
	}
	return strings.Join(out, ",")
}

func TestStatus(t *testing.T) {
	st := Status([]*v1.Node{
		node("b", v1.NodeAddress{Type: v1.NodeHostName, Address: "b"}, internal("fd00::3"), internal("192.168.122.12")),
		node("a", internal("192.168.122.11"), internal("192.168.122.99")),
		node("c", v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.1"}),
		node("a-again", internal("192.168.122.11")),
	})
	// Each node's first IPv4 InternalIP, sorted, once; a node without one adds nothing.
	if got, want := ips(st), "192.168.122.11,192.168.122.12"; got != want {
		t.Errorf("Status = %s, want %s", got, want)
	}
	if st := Status(nil); len(st.Ingress) != 0 {
		t.Errorf("Status(nil) = %+v", st)
	}
}

func TestCheckPorts(t *testing.T) {
	for _, c := range []struct {
		ports []v1.ServicePort
		want  string // in the error; "" for none
	}{
		{[]v1.ServicePort{{Port: 80}, {Port: 8443, Protocol: v1.ProtocolTCP}, {Port: 5353, Protocol: v1.ProtocolUDP}}, ""},
		{[]v1.ServicePort{{Port: 22}}, "22/TCP (the node's sshd"},
		{[]v1.ServicePort{{Port: 80}, {Port: 6443, Protocol: v1.ProtocolTCP}, {Port: 10250}}, "6443/TCP (the Kubernetes API server), 10250/TCP (the kubelet)"},
		{[]v1.ServicePort{{Port: 53, Protocol: v1.ProtocolUDP}}, "53/UDP"},
		// Only the protocol the node serves: UDP 22 and SCTP 6443 are free.
		{[]v1.ServicePort{{Port: 22, Protocol: v1.ProtocolUDP}, {Port: 6443, Protocol: v1.ProtocolSCTP}}, ""},
	} {
		err := CheckPorts(c.ports)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckPorts(%v): %v", c.ports, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckPorts(%v) = %v, want an error with %q", c.ports, err, c.want)
		}
	}
}

// lbs returns LoadBalancers over a fake API holding objs, with its node lister synced.
func lbs(t *testing.T, objs ...*v1.Node) (*LoadBalancers, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	f := informers.NewSharedInformerFactory(cs, 0)
	nl := f.Core().V1().Nodes()
	for _, n := range objs {
		if err := nl.Informer().GetStore().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	return &LoadBalancers{Client: cs, Nodes: nl.Lister()}, cs
}

func TestEnsureLoadBalancer(t *testing.T) {
	ctx := context.Background()
	cp, w := node("kf", internal("192.168.122.10")), node("kf-m02", internal("192.168.122.11"))
	gone := node("kf-m03", internal("192.168.122.12"))
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	l, _ := lbs(t, cp, w, gone)
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Port: 80}}}}

	// The nodes the service controller chose.
	st, err := l.EnsureLoadBalancer(ctx, "kf", svc, []*v1.Node{w})
	if err != nil || ips(st) != "192.168.122.11" {
		t.Errorf("with a chosen node: %v, %v", st, err)
	}
	// None chosen (one node, a control plane excluded from load balancers): every node not
	// being deleted.
	st, err = l.EnsureLoadBalancer(ctx, "kf", svc, nil)
	if err != nil || ips(st) != "192.168.122.10,192.168.122.11" {
		t.Errorf("with no chosen node: %v, %v", ips(st), err)
	}
	// A port of the node's: refused, with the reason.
	ssh := svc.DeepCopy()
	ssh.Spec.Ports = append(ssh.Spec.Ports, v1.ServicePort{Port: 22})
	if _, err := l.EnsureLoadBalancer(ctx, "kf", ssh, nil); err == nil || !strings.Contains(err.Error(), "22/TCP") {
		t.Errorf("port 22: %v", err)
	}
	// No node with an address yet.
	empty, _ := lbs(t, node("kf"))
	if _, err := empty.EnsureLoadBalancer(ctx, "kf", svc, nil); err == nil {
		t.Error("no error without a node address")
	}

	// GetLoadBalancer: the Service's status is the load balancer.
	if _, exists, err := l.GetLoadBalancer(ctx, "kf", svc); exists || err != nil {
		t.Errorf("GetLoadBalancer of a Service without status: %v %v", exists, err)
	}
	svc.Status.LoadBalancer = *st
	if got, exists, err := l.GetLoadBalancer(ctx, "kf", svc); !exists || err != nil || ips(got) != ips(st) {
		t.Errorf("GetLoadBalancer: %v %v %v", got, exists, err)
	}
	if err := l.EnsureLoadBalancerDeleted(ctx, "kf", svc); err != nil {
		t.Errorf("EnsureLoadBalancerDeleted: %v", err)
	}
}

func TestUpdateLoadBalancerWritesNewAddresses(t *testing.T) {
	ctx := context.Background()
	l, cs := lbs(t)
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Port: 80}}}}
	svc.Status.LoadBalancer = *Status([]*v1.Node{node("kf", internal("192.168.122.10"))})
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Same nodes: nothing written.
	if err := l.UpdateLoadBalancer(ctx, "kf", svc, []*v1.Node{node("kf", internal("192.168.122.10"))}); err != nil {
		t.Fatal(err)
	}
	if n := len(cs.Actions()); n != 1 {
		t.Errorf("an update with the same nodes made %d requests after the create: %v", n-1, cs.Actions()[1:])
	}
	// A worker joined (the control plane is excluded now): the status follows.
	if err := l.UpdateLoadBalancer(ctx, "kf", svc, []*v1.Node{node("kf-m02", internal("192.168.122.11"))}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ips(&got.Status.LoadBalancer) != "192.168.122.11" {
		t.Errorf("status after the node change: %+v", got.Status.LoadBalancer)
	}
}
