//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubeforge.dev/kubeforge/test/netcheck"
)

// answers polls until get returns something starting with want.
func answers(ctx context.Context, what, want string, get func() (string, error)) error {
	var last string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		last, lastErr = get()
		return lastErr == nil && strings.HasPrefix(last, want), nil
	})
	if err != nil {
		return fmt.Errorf("%s: got %q, %v: %w", what, last, lastErr, err)
	}
	return nil
}

// silent polls until get fails (the load balancer is gone).
func silent(ctx context.Context, what string, get func() (string, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := get()
		return err != nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s still answers: %w", what, err)
	}
	return nil
}

type serviceURL struct {
	Port, URL, LoadBalancer string
	NodePort                int
}

// TestLoadBalancer: Services of type LoadBalancer on a one-node cluster get addresses on the
// cluster's network from the built-in cloud provider, answer there and at their 127.0.0.1 ports
// from the host (TCP and UDP, several ports, one port number with both), keep both over
// stop/start, and stop answering when the Service is deleted; delete leaves nothing.
func TestLoadBalancer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-lb"
	e.deleteOnCleanup(name)
	e.ok(ctx, "start", "--name", name)
	cs := e.clientset(name)
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, webDeployment(1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Two Services: web, two TCP ports to the web server; dns, CoreDNS over UDP and TCP (one
	// port number, both protocols).
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt(80)},
				{Name: "alt", Port: 8081, TargetPort: intstr.FromInt(80)},
			}},
	}
	dns := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)},
			}},
	}
	created := time.Now()
	for _, s := range []*corev1.Service{web, dns} {
		if _, err := cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webIP := externalIP(ctx, t, cs, "default", "web")
	t.Logf("web: external IP %s after %s", webIP, time.Since(created).Round(time.Millisecond))
	dnsIP := externalIP(ctx, t, cs, "kube-system", "dns")
	if dnsIP == webIP {
		t.Fatalf("both Services got %s", webIP)
	}

	urls := func(t *testing.T, ns, svc string) map[string]serviceURL {
		t.Helper()
		var us []serviceURL
		r := e.ok(ctx, "service", svc, "-n", ns, "--name", name, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &us); err != nil {
			t.Fatalf("service -o json: %v: %s", err, r.Stdout)
		}
		m := map[string]serviceURL{}
		for _, u := range us {
			m[u.Port] = u
		}
		return m
	}
	check := func(t *testing.T, when string) (map[string]serviceURL, map[string]serviceURL) {
		w, d := urls(t, "default", "web"), urls(t, "kube-system", "dns")
		want := map[string]string{"http": "http://" + webIP + ":80", "alt": "http://" + webIP + ":8081"}
		for port, lb := range want {
			u := w[port]
			if u.LoadBalancer != lb || !strings.HasPrefix(u.URL, "http://127.0.0.1:") {
				t.Errorf("%s: web port %s: %+v, want the load balancer at %s and a 127.0.0.1 URL", when, port, u, lb)
			}
			for _, url := range []string{u.LoadBalancer, u.URL} {
				if err := answers(ctx, when+": "+url, "web-", func() (string, error) { return httpGet(ctx, url) }); err != nil {
					t.Error(err)
				}
			}
		}
		for port, proto := range map[string]string{"dns": "udp", "dns-tcp": "http"} {
			u := d[port]
			if lb := proto + "://" + net.JoinHostPort(dnsIP, "53"); u.LoadBalancer != lb || !strings.HasPrefix(u.URL, proto+"://127.0.0.1:") {
				t.Errorf("%s: dns port %s: %+v, want the load balancer at %s and a 127.0.0.1 URL", when, port, u, lb)
			}
			network := map[string]string{"udp": "udp", "http": "tcp"}[proto]
			for _, url := range []string{u.LoadBalancer, u.URL} {
				addr := url[strings.Index(url, "://")+3:]
				if err := answers(ctx, when+": DNS over "+network+" at "+addr, "10.96.0.1", func() (string, error) { return netcheck.DNSAsk(ctx, network, addr) }); err != nil {
					t.Error(err)
				}
			}
		}
		return w, d
	}
	firstWeb, firstDNS := check(t, "created")
	if r := e.ok(ctx, "service", "web", "--name", name, "--url"); !strings.Contains(r.Stdout, firstWeb["http"].URL+"\n") {
		t.Errorf("service --url: %q, want %s on a line", r.Stdout, firstWeb["http"].URL)
	}
	// kubectl shows the address, as on a cloud.
	if r := e.ok(ctx, "kubectl", "--name", name, "--", "get", "service", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"); strings.TrimSpace(r.Stdout) != webIP {
		t.Errorf("kubectl get service: external IP %q, want %s", r.Stdout, webIP)
	}
	// The load balancers are not nodes.
	var st struct{ Nodes []struct{ Name string } }
	if err := json.Unmarshal([]byte(e.ok(ctx, "status", "--name", name, "-o", "json").Stdout), &st); err != nil || len(st.Nodes) != 1 {
		t.Errorf("status -o json: %v, nodes %+v, want 1", err, st.Nodes)
	}

	t.Run("stop and start keep it", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "stop", "--name", name)
		e.ok(ctx, "start", "--name", name)
		if got := externalIP(ctx, t, cs, "default", "web"); got != webIP {
			t.Errorf("external IP after stop/start %s, want %s", got, webIP)
		}
		w, d := check(t, "after stop/start")
		for before, after := range map[*map[string]serviceURL]map[string]serviceURL{&firstWeb: w, &firstDNS: d} {
			for port, u := range *before {
				if after[port].URL != u.URL {
					t.Errorf("port %s: %s after stop/start, %s before", port, after[port].URL, u.URL)
				}
			}
		}
	})

	t.Run("deleted Service stops answering", func(t *testing.T) {
		if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, url := range []string{firstWeb["http"].LoadBalancer, firstWeb["http"].URL} {
			if err := silent(ctx, url, func() (string, error) { return httpGet(ctx, url) }); err != nil {
				t.Error(err)
			}
		}
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.docker.ContainerInspect(ctx, name+"-svc-default-web")
			return err != nil, nil
		}); err != nil {
			t.Errorf("the Service's load-balancer container is still there: %v", err)
		}
	})

	e.ok(ctx, "delete", "--name", name)
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
}

// externalIP waits for Service ns/name's load-balancer address.
func externalIP(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	var ip string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return ip != "", nil
	})
	if err != nil {
		t.Fatalf("service %s got no external IP: %v", name, err)
	}
	return ip
}
