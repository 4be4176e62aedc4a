//go:build e2e_vm

package e2evm

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubeforge.dev/kubeforge/test/netcheck"
)

// vmLB is a LoadBalancer Service of the VM cluster in front of CoreDNS (running already, so the
// test needs no image of its own): DNS over UDP and TCP on port 5353 and over TCP on 8053, asked
// from the host at the Service's address, the node's.
type vmLB struct {
	e      *env
	cs     kubernetes.Interface
	nodeIP string
}

const vmLBName = "dns-lb"

// newVMLoadBalancer creates the Service and checks that it gets the node's address in a few
// seconds, that `kubeforge service` prints it, and that it answers; and that a Service on a port
// the node serves itself (sshd) is refused with an Event saying why.
func newVMLoadBalancer(ctx context.Context, t *testing.T, e *env, cs kubernetes.Interface, nodeIP string) *vmLB {
	l := &vmLB{e: e, cs: cs, nodeIP: nodeIP}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: vmLBName, Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 5353, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)},
				{Name: "dns-tcp", Port: 5353, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)},
				{Name: "dns-alt", Port: 8053, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)},
			}},
	}
	created := time.Now()
	if _, err := cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ingress []corev1.LoadBalancerIngress
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ingress = s.Status.LoadBalancer.Ingress
		return len(ingress) > 0, nil
	})
	took := time.Since(created)
	t.Logf("the LoadBalancer Service got %+v after %s", ingress, took.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("service %s got no address: %v", svc.Name, err)
	}
	if len(ingress) != 1 || ingress[0].IP != nodeIP || ingress[0].IPMode == nil || *ingress[0].IPMode != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ingress %+v, want the node's address %s with ipMode VIP", ingress, nodeIP)
	}
	// 2 s is the goal on real CPUs; an emulated one is allowed more.
	if took > 15*time.Second {
		t.Errorf("the address came after %s", took)
	}

	var urls []struct{ Port, URL, LoadBalancer string }
	r := e.ok(ctx, "service", svc.Name, "-n", svc.Namespace, "--name", cluster, "-o", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &urls); err != nil {
		t.Fatalf("service -o json: %v: %s", err, r.Stdout)
	}
	want := map[string]string{"dns": "udp://" + nodeIP + ":5353", "dns-tcp": "http://" + nodeIP + ":5353", "dns-alt": "http://" + nodeIP + ":8053"}
	got := map[string]string{}
	for _, u := range urls {
		got[u.Port] = u.URL
		if u.LoadBalancer != u.URL {
			t.Errorf("service -o json: port %s: URL %s, load balancer %s: want the same", u.Port, u.URL, u.LoadBalancer)
		}
	}
	for port, url := range want {
		if got[port] != url {
			t.Errorf("service -o json: port %s: %q, want %q (all: %+v)", port, got[port], url, urls)
		}
	}
	if r := e.ok(ctx, "service", svc.Name, "-n", svc.Namespace, "--name", cluster, "--url"); !strings.Contains(r.Stdout, want["dns"]+"\n") {
		t.Errorf("service --url: %q, want %s on a line", r.Stdout, want["dns"])
	}
	l.answer(ctx, t, "created")

	// Port 22 is the node's sshd: the Service is refused, and an Event says why.
	ssh := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ssh-lb", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "none"},
			Ports: []corev1.ServicePort{{Port: 22, TargetPort: intstr.FromInt(2222)}}},
	}
	if _, err := cs.CoreV1().Services(ssh.Namespace).Create(ctx, ssh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var why string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events(ssh.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", ssh.Name).String()})
		if err != nil {
			return false, nil
		}
		for _, ev := range evs.Items {
			if ev.Reason == "SyncLoadBalancerFailed" && strings.Contains(ev.Message, "22/TCP") {
				why = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no SyncLoadBalancerFailed Event naming port 22/TCP on service %s: %v", ssh.Name, err)
	}
	t.Logf("a Service on port 22: %s", why)
	if s, err := cs.CoreV1().Services(ssh.Namespace).Get(ctx, ssh.Name, metav1.GetOptions{}); err != nil || len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("service %s on port 22: %v, ingress %+v", ssh.Name, err, s.Status.LoadBalancer.Ingress)
	}
	if r := e.run(ctx, "ssh", "--name", cluster, "--", "true"); r.Code != 0 {
		t.Errorf("kubeforge ssh with a LoadBalancer Service on port 22: %s", r)
	}
	if err := cs.CoreV1().Services(ssh.Namespace).Delete(ctx, ssh.Name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
	return l
}

// addrs are the Service's addresses as the host dials them, by network.
func (l *vmLB) addrs() map[string]string {
	return map[string]string{
		"udp 5353": net.JoinHostPort(l.nodeIP, "5353"),
		"tcp 5353": net.JoinHostPort(l.nodeIP, "5353"),
		"tcp 8053": net.JoinHostPort(l.nodeIP, "8053"),
	}
}

// answer checks that every port answers from the host (kube-proxy's rules are made within a
// second or so of the status; an emulated node may take longer).
func (l *vmLB) answer(ctx context.Context, t *testing.T, when string) {
	t.Helper()
	for what, addr := range l.addrs() {
		network := strings.Fields(what)[0]
		var got string
		var lastErr error
		begin := time.Now()
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			got, lastErr = netcheck.DNSAsk(ctx, network, addr)
			return lastErr == nil && got == "10.96.0.1", nil
		})
		if err != nil {
			t.Errorf("%s: DNS over %s at %s: got %q, %v", when, network, addr, got, lastErr)
			continue
		}
		t.Logf("%s: DNS over %s at %s answered after %s", when, network, addr, time.Since(begin).Round(time.Millisecond))
	}
}

// remove deletes the Service and checks that every port stops answering.
func (l *vmLB) remove(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := l.cs.CoreV1().Services("kube-system").Delete(ctx, vmLBName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for what, addr := range l.addrs() {
		network := strings.Fields(what)[0]
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := netcheck.DNSAsk(ctx, network, addr)
			return err != nil, nil
		})
		if err != nil {
			t.Errorf("DNS over %s at %s still answers a minute after the Service's deletion", network, addr)
		}
	}
	t.Logf("every port stopped answering %s after the deletion", time.Since(begin).Round(time.Millisecond))
	// The finalizer is gone with the load balancer: the Service is deleted, not left terminating.
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := l.cs.CoreV1().Services("kube-system").Get(ctx, vmLBName, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Errorf("service %s is still there a minute after its deletion", vmLBName)
	}
}
