//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/test/netcheck"
)

// TestSideBySide: two clusters started at the same time run side by side, each with its own
// network, API port and context; `delete --all` removes both and nothing else.
func TestSideBySide(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	names := []string{"kf-e2e-a", "kf-e2e-b"}
	for _, n := range names {
		e.deleteOnCleanup(n)
	}
	// Concurrent starts share the kubeconfig and the state directory.
	results := make([]result, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run(ctx, nil, "start", "--name", n)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Fatalf("start %s: %v", names[i], r)
		}
	}

	kc, err := clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	servers, networks := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		if kc.Contexts[n] == nil || kc.Clusters[n] == nil {
			t.Fatalf("context %s missing from %s (a concurrent start lost it)", n, e.Kubeconfig)
		}
		servers[kc.Clusters[n].Server] = true
		// Each cluster's API answers with its own node only.
		nodes, err := e.clientset(n).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("cluster %s: %v", n, err)
		}
		if len(nodes.Items) != 1 || nodes.Items[0].Name != n {
			t.Errorf("cluster %s has nodes %v, want only %s", n, nodes.Items, n)
		}
		c, err := e.docker.ContainerInspect(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for net := range c.NetworkSettings.Networks {
			networks[net] = true
		}
	}
	if len(servers) != 2 || len(networks) != 2 {
		t.Errorf("the clusters share an API server %v or a network %v", servers, networks)
	}
	var list []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(e.ok(ctx, "list", "-o", "json").Stdout), &list); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, c := range list {
		listed = append(listed, c.Name+"="+c.State)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, []string{"kf-e2e-a=Running", "kf-e2e-b=Running"}) {
		t.Errorf("list shows %v", listed)
	}

	e.ok(ctx, "delete", "--all")
	for _, n := range names {
		if left := e.owned(ctx, n); len(left) > 0 {
			t.Errorf("delete --all left %v of %s", left, n)
		}
	}
	if out := e.ok(ctx, "list", "-o", "json").Stdout; strings.TrimSpace(out) != "[]" {
		t.Errorf("list after delete --all: %s", out)
	}
	kc, err = clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, ok := kc.Contexts[n]; ok {
			t.Errorf("context %s still in %s", n, e.Kubeconfig)
		}
	}
	e.ok(ctx, "delete", "--all") // nothing left: still fine
}

// dockerdPidFile is where hack/ensure-docker.sh records the daemon it started.
const dockerdPidFile = "/run/kubeforge-dockerd.pid"

// ourDockerd returns the pid of the Docker daemon hack/ensure-docker.sh started. A daemon the
// project did not start (a developer's own) is never restarted: the test is skipped then, unless
// KUBEFORGE_E2E_RESTART_DOCKER is set (CI sets it), which makes that a failure.
func ourDockerd(t *testing.T) int {
	b, err := os.ReadFile(dockerdPidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	comm, cerr := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err == nil && perr == nil && cerr == nil && strings.TrimSpace(string(comm)) == "dockerd" {
		return pid
	}
	msg := "the Docker daemon was not started by hack/ensure-docker.sh (" + dockerdPidFile + "); a daemon of yours is never restarted by the tests"
	if os.Getenv("KUBEFORGE_E2E_RESTART_DOCKER") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return 0
}

// restartDockerd stops the daemon pid and starts it again with hack/ensure-docker.sh.
func restartDockerd(ctx context.Context, t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping dockerd %d: %v", pid, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		return syscall.Kill(pid, 0) != nil, nil
	})
	if err != nil {
		t.Fatalf("dockerd %d did not exit: %v", pid, err)
	}
	out, err := exec.CommandContext(ctx, "../../hack/ensure-docker.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("starting dockerd again: %v\n%s", err, out)
	}
}

// TestDockerRestart: with a cluster running, the Docker daemon restarts (as on a laptop reboot
// or a Docker Desktop update). The cluster comes back by itself: API, nodes Ready again, the
// objects and a volume's data, DNS from a pod; `start` then has nothing to do.
func TestDockerRestart(t *testing.T) {
	pid := ourDockerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-e2e-dockerd"
	worker := name + "-m02"
	e.deleteOnCleanup(name)
	e.ok(ctx, "start", "--name", name, "--nodes", "2")
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	cs := e.clientset(name)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if node := e.writeVolume(ctx, cs, name, "data", "kept-across-dockerd"); node != worker {
		t.Errorf("the volume's pod runs on %s, want the worker %s", node, worker)
	}
	// A LoadBalancer Service (CoreDNS over UDP) answers from the host before and after.
	dnsSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)}}},
	}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, dnsSvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lbAddr := net.JoinHostPort(externalIP(ctx, t, cs, "kube-system", "dns"), "53")
	if err := answers(ctx, "DNS at the load balancer "+lbAddr, "10.96.0.1", func() (string, error) { return netcheck.DNSAsk(ctx, "udp", lbAddr) }); err != nil {
		t.Error(err)
	}

	restartDockerd(ctx, t, pid)
	since := time.Now()
	t.Logf("dockerd restarted")

	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if err := ready.APIServer(wctx, cs); err != nil {
		t.Fatalf("API server not back after the daemon restart: %v", err)
	}
	if err := ready.NodesSince(wctx, cs, since, name, worker); err != nil {
		t.Fatalf("nodes not Ready again after the daemon restart: %v", err)
	}
	t.Logf("API and nodes back %.1fs after dockerd", time.Since(since).Seconds())
	if got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{}); err != nil || got.Data["k"] != "v" {
		t.Errorf("ConfigMap after the daemon restart: %v %v", got, err)
	}
	e.checkVolume(ctx, name, "data", "kept-across-dockerd")
	var r result
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r = e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "data", "--", "nslookup", "kubernetes.default.svc.cluster.local")
		return r.Code == 0 && strings.Contains(r.Stdout, "10.96.0.1"), nil
	})
	if r.Code != 0 || !strings.Contains(r.Stdout, "10.96.0.1") {
		t.Errorf("DNS from a pod after the daemon restart: %v", r)
	}
	t.Logf("DNS answers %.1fs after dockerd", time.Since(since).Seconds())
	if err := answers(ctx, "DNS at the load balancer "+lbAddr+" after the daemon restart", "10.96.0.1", func() (string, error) { return netcheck.DNSAsk(ctx, "udp", lbAddr) }); err != nil {
		t.Error(err)
	}
	if out := e.ok(ctx, "status", "--name", name, "-o", "json").Stdout; !strings.Contains(out, `"state": "Running"`) {
		t.Errorf("status after the daemon restart:\n%s", out)
	}
	if r := e.ok(ctx, "start", "--name", name); !strings.Contains(r.Stdout, "already running") {
		t.Errorf("start after the daemon restart: %v", r)
	}
}
