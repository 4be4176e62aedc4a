//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestConfigFile: a cluster made from a config file gets what the file says: its nodes and roles,
// subnets, feature gates and extra args on the components, kubelet settings, a host mount; and
// bad files are refused with the line and the field's path.
func TestConfigFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-e2e-config"
	worker := name + "-m02"
	dir := t.TempDir()
	write := func(file, content string) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	write("shared/hello", "from-the-host\n")

	t.Run("bad files", func(t *testing.T) {
		e := e.sub(t)
		head := "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\n"
		e.usageErrors(ctx, []usageCase{
			{[]string{"start", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
			{[]string{"start", "--config", write("role.yaml", head+"nodes:\n- role: control-plane\n- role: wroker\n")},
				`role.yaml:5: nodes[1].role: "wroker" is not one of control-plane, worker`},
			{[]string{"start", "--config", write("field.yaml", head+"nodes:\n- role: control-plane\n  cpu: 2\n")}, "nodes[0].cpu"},
			{[]string{"start", "--config", write("version.yaml", "apiVersion: kubeforge.dev/v1\nkind: Cluster\n")}, "kubeforge.dev/v1alpha1"},
			{[]string{"start", "--config", write("subnet.yaml", head+"podSubnet: 10.96.0.0/16\n")}, "podSubnet"},
			{[]string{"start", "--nodes", "3", "--config", write("nodes.yaml", head+"nodes:\n- role: control-plane\n")}, "--nodes"},
		})
		if left := e.owned(ctx, "kubeforge"); len(left) > 0 {
			t.Errorf("a refused file left %v", left)
		}
		example := write("example.yaml", e.ok(ctx, "config", "example").Stdout)
		e.ok(ctx, "config", "validate", example)
	})

	cfg := write("cluster.yaml", `apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
name: `+name+`
podSubnet: 10.200.0.0/16
serviceSubnet: 10.150.0.0/20
featureGates:
  ComponentFlagz: false
extraArgs:
  kube-apiserver:
    audit-log-path: "-"
  kubelet:
    max-pods: "60"
nodes:
- role: control-plane
- role: worker
  mounts:
  - hostPath: `+shared+`
    containerPath: /mnt/shared
    readOnly: true
`)
	e.deleteOnCleanup(name)
	e.ok(ctx, "start", "--config", cfg)
	cs := e.clientset(name)

	if names := readyNodeNames(ctx, t, cs); !slices.Equal(names, []string{name, worker}) {
		t.Errorf("Ready nodes %v, want %s and %s", names, name, worker)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if got := n.Status.Capacity.Pods().Value(); got != 60 {
			t.Errorf("node %s: pod capacity %d, want the kubelet's max-pods 60", n.Name, got)
		}
		if !strings.HasPrefix(n.Spec.PodCIDR, "10.200.") {
			t.Errorf("node %s: pod CIDR %s is not in the file's podSubnet 10.200.0.0/16", n.Name, n.Spec.PodCIDR)
		}
	}
	api, err := cs.CoreV1().Pods("kube-system").Get(ctx, "kube-apiserver-"+name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := strings.Join(api.Spec.Containers[0].Command, " ")
	for _, want := range []string{"--audit-log-path=-", "--feature-gates=ComponentFlagz=false", "--service-cluster-ip-range=10.150.0.0/20"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("kube-apiserver runs without %s: %s", want, cmd)
		}
	}
	for svc, want := range map[string]string{"default/kubernetes": "10.150.0.1", "kube-system/kube-dns": "10.150.0.10"} {
		ns, n, _ := strings.Cut(svc, "/")
		s, err := cs.CoreV1().Services(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil || s.Spec.ClusterIP != want {
			t.Errorf("Service %s: %v %v, want ClusterIP %s", svc, s.Spec.ClusterIP, err, want)
		}
	}
	// A pod resolves names through the file's Service subnet.
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: BusyboxImage, Command: []string{"sleep", "3600"}}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := podRunning(ctx, cs, "default", "dns", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
		t.Fatal(err)
	}
	r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "dns", "--", "nslookup", "kubernetes.default.svc.cluster.local")
	if r.Code != 0 || !strings.Contains(r.Stdout, "10.150.0.1") {
		t.Errorf("nslookup from a pod:\n%v", r)
	}
	// The host directory is in the worker, read-only.
	if out := e.ok(ctx, "ssh", "--name", name, worker, "--", "cat", "/mnt/shared/hello").Stdout; strings.TrimSpace(out) != "from-the-host" {
		t.Errorf("mounted file in %s: %q", worker, out)
	}
	if r := e.run(ctx, nil, "ssh", "--name", name, worker, "--", "touch", "/mnt/shared/new"); r.Code == 0 {
		t.Errorf("the read-only mount is writable in %s", worker)
	}
}
