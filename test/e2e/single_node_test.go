//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/versions"
)

// TestSingleNode is the tutorial path: start, look at kube-system, run a pod from a locally built
// image, resolve a Service name, kill the pod's container in the node and watch it come back,
// logs and exec, delete leaving nothing behind.
func TestSingleNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-e2e"
	node := name
	e.deleteOnCleanup(name)

	r := e.ok(ctx, "start", "--name", name)
	for _, step := range []string{"Node image", "Certificates", "Control plane", "Kubelet", "DNS", "Ready"} {
		if !strings.Contains(r.Stderr, "✓ "+step) {
			t.Errorf("start showed no finished step %q:\n%s", step, r.Stderr)
		}
	}

	// The context is merged into $KUBECONFIG and current.
	kc, err := clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != name {
		t.Errorf("current context %q, want %q", kc.CurrentContext, name)
	}
	if srv := kc.Clusters[name].Server; !strings.HasPrefix(srv, "https://127.0.0.1:") {
		t.Errorf("API server %q is not on 127.0.0.1", srv)
	}
	cs := e.clientset(name)

	t.Run("node Ready with the control-plane role", func(t *testing.T) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !ready.NodeReady(n) {
			t.Errorf("node %s is not Ready: %+v", node, n.Status.Conditions)
		}
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; !ok {
			t.Errorf("node %s has no control-plane role label: %v", node, n.Labels)
		}
		if v := n.Status.NodeInfo.KubeletVersion; v != versions.Default().Kubernetes {
			t.Errorf("kubelet version %q", v)
		}
		// The built-in kubectl is the default release's, and says so (kubectl refuses
		// `version` when its own is unparsable).
		v := versions.Default().Kubernetes
		if out := e.ok(ctx, "kubectl", "--name", name, "--", "version").Stdout; !strings.Contains(out, "Client Version: "+v) || !strings.Contains(out, "Server Version: "+v) {
			t.Errorf("kubeforge kubectl -- version:\n%s", out)
		}
	})

	t.Run("kube-system pods Running", func(t *testing.T) {
		// start returns only when the control plane's mirror pods are listed and Running.
		for _, c := range []string{"etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-"} {
			if p, err := cs.CoreV1().Pods("kube-system").Get(ctx, c+node, metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodRunning {
				t.Errorf("pod %s%s right after start: %v", c, node, err)
			}
		}
		want := []string{"etcd-" + node, "kube-apiserver-" + node, "kube-controller-manager-" + node,
			"kube-scheduler-" + node, "kube-proxy-", "coredns-"}
		var missing []string
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			missing = missing[:0]
			for _, w := range want {
				found := false
				for _, p := range pods.Items {
					if strings.HasPrefix(p.Name, w) && p.Status.Phase == corev1.PodRunning {
						found = true
					}
				}
				if !found {
					missing = append(missing, w)
				}
			}
			return len(missing) == 0, nil
		})
		if err != nil {
			t.Fatalf("not Running in kube-system: %v", missing)
		}
		out := e.ok(ctx, "kubectl", "--name", name, "--", "get", "pods", "-n", "kube-system").Stdout
		if !strings.Contains(out, "kube-apiserver-"+node) || !strings.Contains(out, "Running") {
			t.Errorf("kubeforge kubectl get pods -n kube-system:\n%s", out)
		}
	})

	t.Run("start again changes nothing", func(t *testing.T) {
		r := e.ok(ctx, "start", "--name", name)
		if !strings.Contains(r.Stdout, "already running") {
			t.Errorf("second start did not say the cluster is already running:\n%v", r)
		}
	})

	t.Run("status and list", func(t *testing.T) {
		out := e.ok(ctx, "status", "--name", name, "-o", "json").Stdout
		for _, s := range []string{`"state": "Running"`, `"apiServerReady": true`, `"name": "` + node + `"`} {
			if !strings.Contains(out, s) {
				t.Errorf("status -o json lacks %s:\n%s", s, out)
			}
		}
		if out := e.ok(ctx, "list", "-o", "json").Stdout; !strings.Contains(out, `"name": "`+name+`"`) {
			t.Errorf("list -o json:\n%s", out)
		}
		kcfg := e.ok(ctx, "kubeconfig", "--name", name).Stdout
		if _, err := clientcmd.Load([]byte(kcfg)); err != nil || !strings.Contains(kcfg, "127.0.0.1") {
			t.Errorf("kubeconfig is not a usable kubeconfig (%v):\n%s", err, kcfg)
		}
	})

	// A pod from a locally built image, loaded with `kubeforge image load`.
	buildBusybox(ctx, t, e.docker)
	r = e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if !strings.Contains(r.Stderr, "Loading image") {
		t.Errorf("first image load did not load:\n%v", r)
	}
	r = e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if !strings.Contains(r.Stderr, "already on every node") {
		t.Errorf("second image load did not skip the node that has the image:\n%v", r)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bb", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "bb", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "echo hello-from-kubeforge; while true; do sleep 1; done"},
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := podRunning(ctx, cs, "default", "bb", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if err != nil {
		t.Fatal(err)
	}

	t.Run("DNS from a pod", func(t *testing.T) {
		r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "bb", "--", "nslookup", "kubernetes.default.svc.cluster.local")
		if r.Code != 0 || !strings.Contains(r.Stdout, "10.96.0.1") {
			t.Errorf("nslookup kubernetes.default.svc.cluster.local from a pod:\n%v", r)
		}
	})

	t.Run("logs and exec", func(t *testing.T) {
		if out := e.ok(ctx, "kubectl", "--name", name, "--", "logs", "bb").Stdout; !strings.Contains(out, "hello-from-kubeforge") {
			t.Errorf("kubectl logs bb:\n%s", out)
		}
		if out := e.ok(ctx, "kubectl", "--name", name, "--", "exec", "bb", "--", "hostname").Stdout; strings.TrimSpace(out) != "bb" {
			t.Errorf("kubectl exec bb -- hostname: %q", out)
		}
	})

	t.Run("a container killed in the node is restarted", func(t *testing.T) {
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		if id == "" {
			t.Fatalf("no container ID in %+v", p.Status.ContainerStatuses)
		}
		e.ok(ctx, "ssh", "--name", name, node, "--", "ctr", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id)
		if _, err := podRunning(ctx, cs, "default", "bb", func(p *corev1.Pod) bool {
			cs := p.Status.ContainerStatuses
			return len(cs) == 1 && cs[0].RestartCount == 1 && cs[0].State.Running != nil
		}); err != nil {
			t.Fatalf("RESTARTS did not go to 1: %v", err)
		}
		out := e.ok(ctx, "kubectl", "--name", name, "--", "get", "pod", "bb").Stdout
		if f := strings.Fields(lastLine(out)); len(f) < 4 || f[3] != "1" {
			t.Errorf("kubectl get pod bb shows no restart:\n%s", out)
		}
	})

	t.Run("a killed control-plane container is restarted by the kubelet", func(t *testing.T) {
		sched := "kube-scheduler-" + node
		before, err := cs.CoreV1().Pods("kube-system").Get(ctx, sched, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id := e.ok(ctx, "ssh", "--name", name, "--", "crictl", "ps", "-q", "--name", "kube-scheduler").Stdout
		e.ok(ctx, "ssh", "--name", name, "--", "crictl", "stop", "--timeout", "0", strings.TrimSpace(id))
		n0 := before.Status.ContainerStatuses[0].RestartCount
		if _, err := podRunning(ctx, cs, "kube-system", sched, func(p *corev1.Pod) bool {
			cs := p.Status.ContainerStatuses
			return len(cs) == 1 && cs[0].RestartCount > n0 && cs[0].State.Running != nil
		}); err != nil {
			t.Fatalf("%s was not restarted: %v", sched, err)
		}
	})

	t.Run("logs and export logs", func(t *testing.T) {
		e := e.sub(t)
		for _, c := range []string{"kubelet", "containerd", "kube-apiserver", "etcd", "coredns"} {
			if out := e.ok(ctx, "logs", "--name", name, "--component", c, "--tail", "3").Stdout; strings.TrimSpace(out) == "" {
				t.Errorf("logs --component %s printed nothing", c)
			}
		}
		if out := e.ok(ctx, "logs", "--name", name).Stdout; !strings.Contains(out, "[kubelet]") {
			t.Errorf("the node console shows no kubelet lines")
		}
		e.usageErrors(ctx, []usageCase{
			{[]string{"logs", "--name", name, "--component", "kubelett"}, "no component \"kubelett\""},
			{[]string{"logs", "--name", name, "--node", "nope"}, "not a node"},
			{[]string{"export", "logs", "--name", name}, "one directory"},
		})
		dir := t.TempDir()
		e.ok(ctx, "export", "logs", "--name", name, dir)
		for _, f := range []string{node + "/console.log", node + "/inspect.json", node + "/containers.txt", node + "/iptables-save.txt",
			node + "/logs/kubeforge/kubelet.log", node + "/logs/kubeforge/containerd.log", "cluster.json", "nodes.yaml", "pods.txt", "events.txt"} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
				t.Errorf("export logs: %s missing or empty (%v)", f, err)
			}
		}
		if m, _ := filepath.Glob(filepath.Join(dir, node, "logs/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log")); len(m) == 0 {
			t.Errorf("export logs: no kube-apiserver container log")
		}
	})

	t.Run("etcd snapshot save, delete, restore", func(t *testing.T) {
		e := e.sub(t)
		nsName := "precious"
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps(nsName).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "backup.db")
		e.ok(ctx, "etcd", "snapshot", "save", "--name", name, file)
		if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
			t.Fatalf("snapshot file: %v", err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, nsName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("namespace %s not deleted: %v", nsName, err)
		}
		// A file that is not a snapshot is refused before anything stops.
		notSnap := filepath.Join(t.TempDir(), "not.db")
		os.WriteFile(notSnap, []byte("not a snapshot"), 0o644)
		e.usageErrors(ctx, []usageCase{{[]string{"etcd", "snapshot", "restore", "--name", name, notSnap}, "not an etcd snapshot"}})
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			t.Fatalf("the API server is down after a refused restore: %v", err)
		}
		e.ok(ctx, "etcd", "snapshot", "restore", "--name", name, file)
		got, err := cs.CoreV1().ConfigMaps(nsName).Get(ctx, "data", metav1.GetOptions{})
		if err != nil || got.Data["k"] != "v" {
			t.Fatalf("after the restore, ConfigMap %s/data: %v %v", nsName, got, err)
		}
		// The cluster works on: the node Ready, a new pod runs.
		if err := ready.NodesSince(ctx, cs, time.Now().Add(-time.Minute), node); err != nil {
			t.Errorf("node not Ready after the restore: %v", err)
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "after-restore"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: BusyboxImage, Command: []string{"sleep", "3600"}}}}}
		if _, err := cs.CoreV1().Pods(nsName).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := podRunning(ctx, cs, nsName, p.Name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
			t.Errorf("a pod made after the restore does not run: %v", err)
		}
	})

	t.Run("stop and start keep objects and a volume's data", func(t *testing.T) {
		e := e.sub(t)
		volNode := e.writeVolume(ctx, cs, name, "data", "kept-across-restarts")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.ok(ctx, "stop", "--name", name)
		if r := e.ok(ctx, "start", "--name", name); !strings.Contains(r.Stdout, "running again") {
			t.Errorf("start of a stopped cluster: %v", r)
		}
		if got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{}); err != nil || got.Data["k"] != "v" {
			t.Errorf("ConfigMap after stop/start: %v %v", got, err)
		}
		e.checkVolume(ctx, name, "data", "kept-across-restarts")
		// Released, the volume and its directory go away.
		e.releaseVolume(ctx, cs, name, volNode, "data")
	})

	t.Run("delete leaves nothing", func(t *testing.T) {
		e.ok(ctx, "delete", "--name", name)
		if left := e.owned(ctx, name); len(left) > 0 {
			t.Errorf("left after delete: %v", left)
		}
		kc, err := clientcmd.LoadFromFile(e.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := kc.Contexts[name]; ok {
			t.Errorf("context %s still in %s", name, e.Kubeconfig)
		}
		if _, err := os.Stat(fmt.Sprintf("%s/%s", e.Home, name)); !os.IsNotExist(err) {
			t.Errorf("state directory of %s still there: %v", name, err)
		}
		e.ok(ctx, "delete", "--name", name) // idempotent
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
