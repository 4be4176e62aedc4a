//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/bootstrap/ready"
)

// webDeployment serves each pod's name over HTTP on port 80 (busybox httpd).
func webDeployment(replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name:    "web",
						Image:   BusyboxImage,
						Command: []string{"sh", "-c", "busybox mkdir -p /www && hostname > /www/index.html && exec busybox httpd -f -p 80 -h /www"},
						Ports:   []corev1.ContainerPort{{ContainerPort: 80}},
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

// readyPods returns the Ready pods of app=web, by node.
func readyPods(ctx context.Context, cs kubernetes.Interface) (map[string][]corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return nil, err
	}
	out := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
			}
		}
	}
	return out, nil
}

func count(m map[string][]corev1.Pod) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// readyNodeNames returns the names of the Ready nodes, sorted.
func readyNodeNames(ctx context.Context, t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		if ready.NodeReady(&n) {
			names = append(names, n.Name)
		}
	}
	slices.Sort(names)
	return names
}

// containerListAll lists every container (running or not) of the cluster.
func containerListAll(cluster string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "dev.kubeforge.cluster="+cluster))}
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func TestMultiNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-mn"
	cp, w1, w2, w3 := name, name+"-m02", name+"-m03", name+"-m04"
	e.deleteOnCleanup(name)
	hostPort, l := freeLocalPort(t)
	l.Close()
	const nodePort = 30080

	e.ok(ctx, "start", "--name", name, "--nodes", "3", "--pod-eviction-timeout", "30s", "--port", fmt.Sprintf("%d:%d", hostPort, nodePort))
	cs := e.clientset(name)

	t.Run("nodes Ready, control plane tainted", func(t *testing.T) {
		e := e.sub(t)
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range nodes.Items {
			names = append(names, n.Name)
			if !ready.NodeReady(&n) {
				t.Errorf("node %s is not Ready", n.Name)
			}
			tainted := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
				return t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == corev1.TaintEffectNoSchedule
			})
			if tainted != (n.Name == cp) {
				t.Errorf("node %s: control-plane taint %v, want %v", n.Name, tainted, n.Name == cp)
			}
			if n.Spec.PodCIDR == "" {
				t.Errorf("node %s has no pod CIDR", n.Name)
			}
		}
		slices.Sort(names)
		if want := []string{cp, w1, w2}; !slices.Equal(names, want) {
			t.Errorf("nodes %v, want %v", names, want)
		}
		var list []struct{ Name, Machine, Status string }
		if err := json.Unmarshal([]byte(e.ok(ctx, "node", "list", "--name", name, "-o", "json").Stdout), &list); err != nil || len(list) != 3 {
			t.Errorf("node list -o json: %v %+v", err, list)
		}
		for _, n := range list {
			if n.Machine != "running" || n.Status != "Ready" {
				t.Errorf("node list: %+v", n)
			}
		}
	})

	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, webDeployment(3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(80), NodePort: nodePort}},
		},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var byNode map[string][]corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		byNode, err = readyPods(ctx, cs)
		return err == nil && count(byNode) == 3, nil
	})
	if err != nil {
		t.Fatalf("3 web replicas not Ready: %v", byNode)
	}

	t.Run("replicas spread over workers", func(t *testing.T) {
		if len(byNode) < 2 {
			t.Errorf("3 replicas on %d node(s), want at least 2: %v", len(byNode), byNode)
		}
		if len(byNode[cp]) > 0 {
			t.Errorf("a web pod landed on the tainted control plane")
		}
	})

	t.Run("pod to pod across nodes, service by DNS name", func(t *testing.T) {
		e := e.sub(t)
		var withPods []string
		for n := range byNode {
			withPods = append(withPods, n)
		}
		if len(withPods) < 2 {
			t.Fatalf("web pods on %v only: need two nodes", withPods)
		}
		a, b := byNode[withPods[0]], byNode[withPods[1]]
		get := `printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 5 %s 80 | tail -n 1`
		for _, pair := range [][2]corev1.Pod{{a[0], b[0]}, {b[0], a[0]}} {
			from, to := pair[0], pair[1]
			r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", from.Name, "--", "sh", "-c", fmt.Sprintf(get, to.Status.PodIP))
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != to.Name {
				t.Errorf("from %s (%s) to pod %s at %s: %v", from.Name, from.Spec.NodeName, to.Name, to.Status.PodIP, r)
			}
			r = e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", from.Name, "--", "sh", "-c", fmt.Sprintf(get, "web.default.svc.cluster.local"))
			if r.Code != 0 || !strings.HasPrefix(strings.TrimSpace(r.Stdout), "web-") {
				t.Errorf("from %s (%s) to service web by name: %v", from.Name, from.Spec.NodeName, r)
			}
		}
	})

	t.Run("NodePort from the host", func(t *testing.T) {
		e := e.sub(t)
		url := strings.TrimSpace(e.ok(ctx, "service", "web", "--name", name, "--url").Stdout)
		if url != fmt.Sprintf("http://127.0.0.1:%d", hostPort) {
			t.Errorf("service --url = %q, want the published port %d", url, hostPort)
		}
		if body, err := httpGet(ctx, url); err != nil || !strings.HasPrefix(body, "web-") {
			t.Errorf("GET %s: %q %v", url, body, err)
		}
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			for _, a := range n.Status.Addresses {
				if a.Type != corev1.NodeInternalIP {
					continue
				}
				u := fmt.Sprintf("http://%s:%d", a.Address, nodePort)
				if body, err := httpGet(ctx, u); err != nil || !strings.HasPrefix(body, "web-") {
					t.Errorf("GET %s (node %s): %q %v", u, n.Name, body, err)
				}
			}
		}
		r := e.run(ctx, nil, "service", "kubernetes", "--name", name, "--url")
		if r.Code != 2 || !strings.Contains(r.Stderr, "NodePort") {
			t.Errorf("service --url of a ClusterIP service: %v", r)
		}
	})

	t.Run("node add joins a Ready node that runs pods", func(t *testing.T) {
		e := e.sub(t)
		r := e.ok(ctx, "node", "add", "--name", name, "--cpus", "1", "--memory", "1Gi")
		if !strings.Contains(r.Stdout, w3) {
			t.Errorf("node add output: %v", r)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, w3, metav1.GetOptions{})
		if err != nil || !ready.NodeReady(n) {
			t.Fatalf("node %s not Ready after node add: %v", w3, err)
		}
		// The caps: on the machine, and in what the Node offers the scheduler.
		if c := n.Status.Allocatable[corev1.ResourceCPU]; c.MilliValue() != 1000 {
			t.Errorf("node %s allocatable cpu %s, want 1", w3, c.String())
		}
		if m := n.Status.Allocatable[corev1.ResourceMemory]; m.Value() != 1<<30 {
			t.Errorf("node %s allocatable memory %s, want 1Gi", w3, m.String())
		}
		if insp, err := e.docker.ContainerInspect(ctx, w3); err != nil || insp.HostConfig.NanoCPUs != 1e9 || insp.HostConfig.Memory != 1<<30 {
			t.Errorf("container %s limits: %v", w3, err)
		}
		// The image loaded before is on the new node too: a pod pinned there runs.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "on-new-node"},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": w3},
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers:                    []corev1.Container{{Name: "c", Image: BusyboxImage, Command: []string{"sleep", "3600"}}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := podRunning(ctx, cs, "default", pod.Name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
			t.Errorf("pod on the new node: %v", err)
		}
	})

	t.Run("a stopped worker's pods are recreated elsewhere", func(t *testing.T) {
		e := e.sub(t)
		byNode, err := readyPods(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		victim := w1
		if len(byNode[w1]) == 0 {
			victim = w2
		}
		moved := len(byNode[victim])
		start := time.Now()
		e.ok(ctx, "node", "stop", victim, "--name", name)
		// 30 s of eviction timeout, then the ReplicaSet's new pods start.
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			byNode, err = readyPods(ctx, cs)
			return err == nil && count(byNode) == 3 && len(byNode[victim]) == 0, nil
		})
		if err != nil {
			t.Fatalf("after stopping %s, the web replicas are %v", victim, byNode)
		}
		t.Logf("%d pod(s) of %s recreated elsewhere %.0fs after the stop", moved, victim, time.Since(start).Seconds())
		n, err := cs.CoreV1().Nodes().Get(ctx, victim, metav1.GetOptions{})
		if err != nil || ready.NodeReady(n) {
			t.Errorf("stopped node %s still Ready (%v)", victim, err)
		}
		e.ok(ctx, "node", "start", victim, "--name", name)
		if n, err := cs.CoreV1().Nodes().Get(ctx, victim, metav1.GetOptions{}); err != nil || !ready.NodeReady(n) {
			t.Errorf("node %s not Ready after node start: %v", victim, err)
		}
	})

	t.Run("node delete removes the node", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "node", "delete", w3, "--name", name)
		if _, err := cs.CoreV1().Nodes().Get(ctx, w3, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Node %s still in the API: %v", w3, err)
		}
		if _, err := e.docker.ContainerInspect(ctx, w3); err == nil {
			t.Errorf("container %s still exists", w3)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		e := e.sub(t)
		e.usageErrors(ctx, []usageCase{
			{[]string{"node", "delete", cp, "--name", name}, "last control-plane node"},
			{[]string{"node", "delete", "nope", "--name", name}, "is not a node of cluster"},
			{[]string{"node", "stop", "--name", name}, "takes one node name"},
			{[]string{"node", "add", "--name", "no-such-cluster"}, "does not exist"},
			{[]string{"node", "add", "--control-plane", "--name", name}, "--control-planes 3"},
			{[]string{"node", "add", "--memory", "100Mi", "--name", name}, "less than the 512Mi"},
			{[]string{"node", "add", "--cpus", "lots", "--name", name}, "not a quantity"},
			{[]string{"start", "--name", "kf-bad", "--nodes", "0"}, "--nodes must be between 1 and"},
			{[]string{"start", "--name", "kf-bad", "--nodes", "1000"}, "--nodes must be between 1 and"},
			{[]string{"start", "--name", "kf-bad", "--pod-eviction-timeout", "1s"}, "--pod-eviction-timeout must be between"},
			{[]string{"start", "--name", "kf-bad", "--port", "80"}, "HOST:NODEPORT"},
		})
		if left := e.owned(ctx, "kf-bad"); len(left) > 0 {
			t.Errorf("a refused start left %v", left)
		}
		// A node cannot join while the control plane is stopped.
		e.ok(ctx, "node", "stop", cp, "--name", name)
		before, _ := e.docker.ContainerList(ctx, containerListAll(name))
		r := e.run(ctx, nil, "node", "add", "--name", name)
		if r.Code != 3 || !strings.Contains(r.Stderr, "not running") {
			t.Errorf("node add with the control plane stopped: %v", r)
		}
		if after, _ := e.docker.ContainerList(ctx, containerListAll(name)); len(after) != len(before) {
			t.Errorf("refused node add changed the machines: %d containers, %d before", len(after), len(before))
		}
	})

	t.Run("stop and start keep the cluster", func(t *testing.T) {
		e := e.sub(t)
		// The control plane was stopped above: start brings back a partly stopped cluster too.
		r := e.ok(ctx, "start", "--name", name)
		if !strings.Contains(r.Stdout, "running again") {
			t.Errorf("start of a partly stopped cluster: %v", r)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A volume lives on the worker its pod was scheduled to, and is found there again.
		if volNode := e.writeVolume(ctx, cs, name, "data", "kept-on-a-worker"); volNode != w1 && volNode != w2 {
			t.Errorf("the volume's pod runs on %s, not on a worker", volNode)
		}
		r = e.ok(ctx, "stop", "--name", name)
		if out := e.ok(ctx, "status", "--name", name, "-o", "json").Stdout; !strings.Contains(out, `"state": "Stopped"`) {
			t.Errorf("status after stop:\n%s", out)
		}
		r = e.ok(ctx, "start", "--name", name)
		if !strings.Contains(r.Stdout, "running again") {
			t.Errorf("start of a stopped cluster: %v", r)
		}
		got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil || got.Data["k"] != "v" {
			t.Errorf("ConfigMap after stop/start: %v %v", got, err)
		}
		if names := readyNodeNames(ctx, t, cs); !slices.Equal(names, []string{cp, w1, w2}) {
			t.Errorf("Ready nodes after stop/start %v, want %v", names, []string{cp, w1, w2})
		}
		e.checkVolume(ctx, name, "data", "kept-on-a-worker")
		// The workload runs again and DNS answers from a pod.
		err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			byNode, err := readyPods(ctx, cs)
			return err == nil && count(byNode) == 3, nil
		})
		if err != nil {
			t.Errorf("web replicas not Ready after stop/start")
		}
		pods, _ := readyPods(ctx, cs)
		for _, ps := range pods {
			r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", ps[0].Name, "--", "nslookup", "kubernetes.default.svc.cluster.local")
			if r.Code != 0 || !strings.Contains(r.Stdout, "10.96.0.1") {
				t.Errorf("DNS from %s after stop/start: %v", ps[0].Name, r)
			}
			break
		}
	})

	e.ok(ctx, "delete", "--name", name)
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
}
