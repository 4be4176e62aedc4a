//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/bootstrap/ready"
)

// etcdMembers runs `kubeforge-node etcd-member list` in a control-plane node.
func etcdMembers(ctx context.Context, e *env, cluster, node string) string {
	r := e.run(ctx, nil, "ssh", "--name", cluster, node, "--", "/usr/local/bin/kubeforge-node", "etcd-member", "list")
	if r.Code != 0 {
		e.t.Errorf("etcd-member list on %s: %v", node, r)
	}
	return strings.TrimSpace(r.Stdout)
}

func TestHA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-ha"
	cp1, cp2, cp3, cp4 := name, name+"-m02", name+"-m03", name+"-m04"
	e.deleteOnCleanup(name)

	e.ok(ctx, "start", "--name", name, "--control-planes", "3")
	cs := e.clientset(name)

	t.Run("three control planes, three etcd members, a load balancer", func(t *testing.T) {
		e := e.sub(t)
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 3 {
			t.Fatalf("%d nodes, want 3", len(nodes.Items))
		}
		for _, n := range nodes.Items {
			if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; !ok || !ready.NodeReady(&n) {
				t.Errorf("node %s: ready %v, labels %v", n.Name, ready.NodeReady(&n), n.Labels)
			}
		}
		for _, cp := range []string{cp1, cp2, cp3} {
			for _, c := range []string{"etcd-", "kube-apiserver-"} {
				if _, err := cs.CoreV1().Pods("kube-system").Get(ctx, c+cp, metav1.GetOptions{}); err != nil {
					t.Errorf("pod %s%s: %v", c, cp, err)
				}
			}
		}
		if m := etcdMembers(ctx, e, name, cp1); strings.Count(m, "=https://") != 3 {
			t.Errorf("etcd members: %s", m)
		}
		lb, err := e.docker.ContainerInspect(ctx, name+"-lb")
		if err != nil || lb.HostConfig.PortBindings["6443/tcp"][0].HostIP != "127.0.0.1" {
			t.Errorf("load balancer container: %v", err)
		}
	})

	t.Run("the API answers with a control plane stopped", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "node", "stop", cp1, "--name", name)
		for i := 0; i < 5; i++ {
			r := e.run(ctx, nil, "kubectl", "--name", name, "--", "get", "nodes", "--request-timeout=15s")
			if r.Code != 0 || !strings.Contains(r.Stdout, cp2) {
				t.Errorf("kubectl get nodes with %s stopped: %v", cp1, r)
			}
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-during-outage"}, Data: map[string]string{"a": "b"}}
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			return err == nil || apierrors.IsAlreadyExists(err), nil
		})
		if err != nil {
			t.Errorf("no write went through with %s stopped", cp1)
		}
		e.ok(ctx, "node", "start", cp1, "--name", name)
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("the ConfigMap written during the outage: %v", err)
		}
	})

	t.Run("a control plane joins and leaves", func(t *testing.T) {
		e := e.sub(t)
		r := e.ok(ctx, "node", "add", "--control-plane", "--name", name)
		if !strings.Contains(r.Stdout, cp4) {
			t.Errorf("node add --control-plane: %v", r)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, cp4, metav1.GetOptions{})
		if err != nil || !ready.NodeReady(n) {
			t.Fatalf("node %s: %v", cp4, err)
		}
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; !ok {
			t.Errorf("node %s lacks the control-plane label", cp4)
		}
		if m := etcdMembers(ctx, e, name, cp2); strings.Count(m, "=https://") != 4 || !strings.Contains(m, cp4+"=") {
			t.Errorf("etcd members after the join: %s", m)
		}
		if _, err := podRunning(ctx, cs, "kube-system", "kube-apiserver-"+cp4, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
			t.Errorf("the new control plane's API server: %v", err)
		}

		e.ok(ctx, "node", "delete", cp4, "--name", name)
		if m := etcdMembers(ctx, e, name, cp2); strings.Count(m, "=https://") != 3 || strings.Contains(m, cp4+"=") {
			t.Errorf("etcd members after the delete: %s", m)
		}
		if _, err := cs.CoreV1().Nodes().Get(ctx, cp4, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Node %s still in the API: %v", cp4, err)
		}
		if r := e.run(ctx, nil, "kubectl", "--name", name, "--", "get", "nodes"); r.Code != 0 {
			t.Errorf("API after removing a control plane: %v", r)
		}
	})

	t.Run("stop and start of the whole HA cluster", func(t *testing.T) {
		e := e.sub(t)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ha-survivor"}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.ok(ctx, "stop", "--name", name)
		if r := e.ok(ctx, "start", "--name", name); !strings.Contains(r.Stdout, "running again") {
			t.Errorf("start of the stopped HA cluster: %v", r)
		}
		if got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{}); err != nil || got.Data["k"] != "v" {
			t.Errorf("ConfigMap after stop/start: %v %v", got, err)
		}
		if m := etcdMembers(ctx, e, name, cp1); strings.Count(m, "=https://") != 3 {
			t.Errorf("etcd members after stop/start: %s", m)
		}
		if names := readyNodeNames(ctx, t, cs); len(names) != 3 {
			t.Errorf("Ready nodes after stop/start: %v", names)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		e := e.sub(t)
		e.usageErrors(ctx, []usageCase{
			{[]string{"start", "--name", "kf-bad", "--control-planes", "0"}, "--control-planes must be between 1 and"},
			{[]string{"start", "--name", "kf-bad", "--control-planes", "3", "--nodes", "2"}, "more than --nodes"},
		})
	})

	e.ok(ctx, "delete", "--name", name)
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
}
