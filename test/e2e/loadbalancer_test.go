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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// echoDeployment serves its pod's name over HTTP on port 80 and over UDP on port 5353 (one
// datagram in, the name back).
func echoDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "echo"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name:  "echo",
						Image: BusyboxImage,
						Command: []string{"sh", "-c", "busybox mkdir -p /www && hostname > /www/index.html && " +
							"busybox udpsvd 0 5353 busybox hostname & exec busybox httpd -f -p 80 -h /www"},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(80)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

// udpAsk sends one datagram to addr and returns the answer.
func udpAsk(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("who\n")); err != nil {
		return "", err
	}
	b := make([]byte, 512)
	n, err := c.Read(b)
	return strings.TrimSpace(string(b[:n])), err
}

// answers polls until get returns a pod name of echo.
func answers(ctx context.Context, what string, get func() (string, error)) error {
	var last string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		last, lastErr = get()
		return lastErr == nil && strings.HasPrefix(last, "echo-"), nil
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

// TestLoadBalancer: a Service of type LoadBalancer on a one-node cluster gets an address on the
// cluster's network from the built-in cloud provider, answers there and at its 127.0.0.1 ports
// from the host (TCP and UDP, several ports), keeps both over stop/start, and stops answering
// when the Service is deleted; delete leaves nothing.
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
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, echoDeployment(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt(80)},
				{Name: "alt", Port: 8081, TargetPort: intstr.FromInt(80)},
				{Name: "udp", Port: 5353, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(5353)},
			}},
	}
	created := time.Now()
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip := externalIP(ctx, t, cs, "echo")
	t.Logf("external IP %s after %s", ip, time.Since(created).Round(time.Millisecond))

	urls := func() map[string]serviceURL {
		t.Helper()
		var us []serviceURL
		r := e.ok(ctx, "service", "echo", "--name", name, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &us); err != nil {
			t.Fatalf("service -o json: %v: %s", err, r.Stdout)
		}
		m := map[string]serviceURL{}
		for _, u := range us {
			m[u.Port] = u
		}
		return m
	}
	check := func(t *testing.T, when string) map[string]serviceURL {
		u := urls()
		if len(u) != 3 {
			t.Fatalf("%s: service --url: %+v, want 3 ports", when, u)
		}
		for port, want := range map[string]string{"http": "http://" + ip + ":80", "alt": "http://" + ip + ":8081", "udp": "udp://" + ip + ":5353"} {
			if u[port].LoadBalancer != want || !strings.HasPrefix(u[port].URL, strings.SplitN(want, ":", 2)[0]+"://127.0.0.1:") {
				t.Errorf("%s: port %s: %+v, want the load balancer at %s and a 127.0.0.1 URL", when, port, u[port], want)
			}
		}
		for _, port := range []string{"http", "alt"} {
			for _, url := range []string{u[port].LoadBalancer, u[port].URL} {
				if err := answers(ctx, when+": "+url, func() (string, error) { return httpGet(ctx, url) }); err != nil {
					t.Error(err)
				}
			}
		}
		for _, url := range []string{u["udp"].LoadBalancer, u["udp"].URL} {
			addr := strings.TrimPrefix(url, "udp://")
			if err := answers(ctx, when+": "+url, func() (string, error) { return udpAsk(addr) }); err != nil {
				t.Error(err)
			}
		}
		return u
	}
	first := check(t, "created")
	if r := e.ok(ctx, "service", "echo", "--name", name, "--url"); !strings.Contains(r.Stdout, first["http"].URL+"\n") {
		t.Errorf("service --url: %q, want %s on a line", r.Stdout, first["http"].URL)
	}
	// kubectl shows the address, as on a cloud.
	if r := e.ok(ctx, "kubectl", "--name", name, "--", "get", "service", "echo", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"); strings.TrimSpace(r.Stdout) != ip {
		t.Errorf("kubectl get service: external IP %q, want %s", r.Stdout, ip)
	}

	t.Run("stop and start keep it", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "stop", "--name", name)
		e.ok(ctx, "start", "--name", name)
		if got := externalIP(ctx, t, cs, "echo"); got != ip {
			t.Errorf("external IP after stop/start %s, want %s", got, ip)
		}
		again := check(t, "after stop/start")
		for port, u := range first {
			if again[port].URL != u.URL {
				t.Errorf("port %s: %s after stop/start, %s before", port, again[port].URL, u.URL)
			}
		}
	})

	t.Run("deleted Service stops answering", func(t *testing.T) {
		if err := cs.CoreV1().Services("default").Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, url := range []string{first["http"].LoadBalancer, first["http"].URL} {
			if err := silent(ctx, url, func() (string, error) { return httpGet(ctx, url) }); err != nil {
				t.Error(err)
			}
		}
		if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.docker.ContainerInspect(ctx, name+"-svc-default-echo")
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

// externalIP waits for Service name's load-balancer address.
func externalIP(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	var ip string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
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
