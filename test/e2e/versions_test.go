//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/versions"
	"kubeforge.dev/kubeforge/provision"
)

// checkVersion checks that the API server and every kubelet report version.
func checkVersion(ctx context.Context, t *testing.T, cs kubernetes.Interface, version string) {
	t.Helper()
	sv, err := cs.Discovery().ServerVersion()
	if err != nil || sv.GitVersion != version {
		t.Errorf("server version %v (%v), want %s", sv, err, version)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if v := n.Status.NodeInfo.KubeletVersion; v != version {
			t.Errorf("node %s: kubelet %s, want %s", n.Name, v, version)
		}
	}
}

// smokeWorkload runs a web Deployment behind a Service and checks, from a busybox pod, that the
// Service answers by its DNS name: scheduling, the runtime, pod networking, kube-proxy and
// CoreDNS in one go.
func (e *env) smokeWorkload(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, webDeployment(1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(80)}}},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{
			Name: "c", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := podRunning(ctx, cs, "default", "client", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
		t.Fatal(err)
	}
	var r result
	get := `printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 5 web.default.svc.cluster.local 80 | tail -n 1`
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r = e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "client", "--", "sh", "-c", get)
		return r.Code == 0 && strings.HasPrefix(strings.TrimSpace(r.Stdout), "web-"), nil
	})
	if err != nil {
		t.Errorf("the Service web by its DNS name from a pod: %v", r)
	}
}

// TestVersionsSmoke: every supported version other than the default (which the rest of the tier
// runs) starts, reports its version, and runs a workload reached through a Service by its DNS
// name; `kubeforge kubectl` works against it (its own kubectl when out of the linked one's skew).
func TestVersionsSmoke(t *testing.T) {
	for _, rel := range versions.All()[1:] {
		t.Run(rel.Kubernetes, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute) // a first node binary build included
			defer cancel()
			e := newEnv(t)
			name := "kfv" + strings.ReplaceAll(rel.Minor(), ".", "")
			e.deleteOnCleanup(name)
			r := e.ok(ctx, "start", "--name", name, "--kubernetes-version", rel.Minor(), "--wait", "20m")
			if !strings.Contains(r.Stdout, "is ready") {
				t.Fatalf("start: %v", r)
			}
			cs := e.clientset(name)
			checkVersion(ctx, t, cs, rel.Kubernetes)
			if out := e.ok(ctx, "status", "--name", name, "-o", "json").Stdout; !strings.Contains(out, `"kubernetesVersion": "`+rel.Kubernetes+`"`) {
				t.Errorf("status -o json does not say %s:\n%s", rel.Kubernetes, out)
			}
			if out := e.ok(ctx, "kubectl", "--name", name, "--", "version").Stdout; !strings.Contains(out, "Server Version: "+rel.Kubernetes) {
				t.Errorf("kubeforge kubectl version:\n%s", out)
			}
			e.smokeWorkload(ctx, t, cs, name)
			e.ok(ctx, "delete", "--name", name)
			if left := e.owned(ctx, name); len(left) != 0 {
				t.Errorf("delete left %v", left)
			}
		})
	}
}

// TestUpgrade: an HA cluster of the previous minor, with a Deployment and a PVC holding data,
// moves to the newest; the API answers through the load balancer all along, every node ends on
// the new version, the objects and the data are still there.
func TestUpgrade(t *testing.T) {
	all := versions.All()
	if len(all) < 2 {
		t.Fatal("one supported version: nothing to upgrade")
	}
	from, to := all[1], all[0]
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kfup"
	e.deleteOnCleanup(name)
	e.ok(ctx, "start", "--name", name, "--kubernetes-version", from.Minor(), "--control-planes", "3", "--nodes", "4", "--wait", "20m")
	cs := e.clientset(name)
	checkVersion(ctx, t, cs, from.Kubernetes)

	// Bad requests first: they change nothing.
	e.usageErrors(ctx, []usageCase{
		{[]string{"upgrade", "--name", name, "--kubernetes-version", from.Minor()}, "already"},
		{[]string{"upgrade", "--name", name, "--kubernetes-version", "1.20"}, "is not supported"},
	})

	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, webDeployment(2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.writeVolume(ctx, cs, name, "data", "kept-through-the-upgrade")
	// A LoadBalancer Service: its machine (and the cloud provider's) move to the new node image.
	lb := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-lb", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(80)}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, lb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	externalIP(ctx, t, cs, "default", "web-lb")

	// The API, asked through the load balancer every 200 ms during the upgrade.
	var asked, failed atomic.Int32
	var longest time.Duration
	var mu sync.Mutex
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var downSince time.Time
		for pollCtx.Err() == nil {
			rctx, rcancel := context.WithTimeout(pollCtx, 2*time.Second)
			_, err := cs.CoreV1().Namespaces().Get(rctx, "default", metav1.GetOptions{})
			rcancel()
			if pollCtx.Err() != nil {
				return
			}
			asked.Add(1)
			now := time.Now()
			if err != nil {
				failed.Add(1)
				if downSince.IsZero() {
					downSince = now
				}
			} else if !downSince.IsZero() {
				mu.Lock()
				longest = max(longest, now.Sub(downSince))
				mu.Unlock()
				downSince = time.Time{}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	r := e.ok(ctx, "upgrade", "--name", name, "--kubernetes-version", to.Minor())
	stopPolling()
	wg.Wait()
	t.Logf("upgrade: %s", strings.TrimSpace(r.Stdout))
	t.Logf("API asked %d times during the upgrade, %d failed, longest outage %s", asked.Load(), failed.Load(), longest)
	if longest > 5*time.Second {
		t.Errorf("the HA API server did not answer for %s during the upgrade", longest)
	}
	if !strings.Contains(r.Stdout, to.Kubernetes) {
		t.Errorf("upgrade output: %v", r)
	}
	checkVersion(ctx, t, cs, to.Kubernetes)
	if out := e.ok(ctx, "status", "--name", name).Stdout; strings.Count(out, to.Kubernetes) < 5 {
		t.Errorf("status does not show every node on %s:\n%s", to.Kubernetes, out)
	}
	// Objects and data kept; the workload runs again on every node it wants. The drain of the
	// claim's node removed its pod (no controller owns it, as `kubectl drain --force` does): a
	// new one on the same claim reads what the first wrote.
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "data", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		e.volumePod(ctx, cs, "data", "written-after-the-upgrade")
	}
	e.checkVolume(ctx, name, "data", "kept-through-the-upgrade")
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2, nil
	})
	if err != nil {
		t.Errorf("the web Deployment is not ready again after the upgrade: %v", err)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			t.Errorf("node %s is still cordoned", n.Name)
		}
	}
	// Every machine of the cluster, the cloud provider and the Service's load balancer too, runs
	// the new node image, and the Service answers from the host again. The API server's load
	// balancer of an HA cluster stays: it keeps the API answering through the upgrade.
	ms, err := e.docker.ContainerList(ctx, containerListAll(name))
	if err != nil {
		t.Fatal(err)
	}
	images := map[string][]string{}
	for _, m := range ms {
		if m.Labels[contract.LabelRole] == provision.RoleLoadBalancer {
			continue
		}
		images[m.Image] = append(images[m.Image], strings.TrimPrefix(m.Names[0], "/"))
	}
	if len(images) != 1 || !slices.ContainsFunc(ms, func(m container.Summary) bool { return m.Labels[contract.LabelRole] == contract.RoleCloudProvider }) {
		t.Errorf("after the upgrade the machines run %d node images (want 1, the cloud provider among them): %v", len(images), images)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r := e.run(ctx, nil, "service", "web-lb", "--name", name, "--url")
		if r.Code != 0 {
			return false, nil
		}
		body, err := httpGet(ctx, strings.TrimSpace(r.Stdout))
		return err == nil && strings.HasPrefix(body, "web-"), nil
	})
	if err != nil {
		t.Errorf("the LoadBalancer Service does not answer from the host after the upgrade: %v", err)
	}
	// Running it again changes nothing and says so.
	if r := e.run(ctx, nil, "upgrade", "--name", name, "--kubernetes-version", to.Minor()); r.Code != 2 || !strings.Contains(r.Stderr, "already") {
		t.Errorf("a second upgrade: %v", r)
	}
}
