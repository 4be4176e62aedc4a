//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// scaleNodes is the size of TestScale's cluster: 1 control plane and 9 workers (issue 19). It
// takes about a minute to start on 2 cores and ~1.3 GiB idle; the e2e tier runs one package at
// a time and no test of this package runs in parallel, so it is the only cluster of the tier.
const scaleNodes = 10

// spreadDeployment runs one busybox pod per worker: the required anti-affinity on the hostname
// refuses two of them on one node, the topology spread keeps the scheduler's choice even.
func spreadDeployment(replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "spread"}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "spread"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: sel,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: sel, TopologyKey: corev1.LabelHostname,
						}},
					}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: corev1.LabelHostname,
						WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel,
					}},
					Containers: []corev1.Container{{
						Name:    "sleep",
						Image:   BusyboxImage,
						Command: []string{"sleep", "3600"},
					}},
				},
			},
		},
	}
}

// TestScale: a 10-node cluster (1 control plane + 9 workers) starts with every node Ready, a
// Deployment spread over the workers gets one pod on each, DNS answers from a pod on the last
// worker, and delete leaves no container, network or volume of the cluster. Times are logged,
// never asserted (`make bench` measures them).
func TestScale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-scale"
	e.deleteOnCleanup(name)

	t0 := time.Now()
	e.ok(ctx, "start", "--name", name, "--nodes", fmt.Sprint(scaleNodes))
	t.Logf("start --nodes %d to usable: %s", scaleNodes, time.Since(t0).Round(100*time.Millisecond))
	cs := e.clientset(name)
	workers := make([]string, 0, scaleNodes-1)
	for i := 2; i <= scaleNodes; i++ {
		workers = append(workers, fmt.Sprintf("%s-m%02d", name, i))
	}
	last := workers[len(workers)-1]

	t.Run("all nodes Ready", func(t *testing.T) {
		want := append([]string{name}, workers...)
		slices.Sort(want)
		if got := readyNodeNames(ctx, t, cs); !slices.Equal(got, want) {
			t.Errorf("Ready nodes %v, want %v", got, want)
		}
	})

	buildBusybox(ctx, t, e.docker)
	t0 = time.Now()
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	t.Logf("image load into %d nodes: %s", scaleNodes, time.Since(t0).Round(100*time.Millisecond))

	t.Run("pods spread over the workers", func(t *testing.T) {
		replicas := int32(len(workers))
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, spreadDeployment(replicas), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var onNode map[string][]string
		err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
			if err != nil {
				return false, nil
			}
			onNode = map[string][]string{}
			running := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
					continue
				}
				onNode[p.Spec.NodeName] = append(onNode[p.Spec.NodeName], p.Name)
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			return running == int(replicas), nil
		})
		if err != nil {
			t.Fatalf("%d replicas not Running (pods by node: %v): %v", replicas, onNode, err)
		}
		var nodes []string
		for n, ps := range onNode {
			if len(ps) != 1 {
				t.Errorf("node %s runs %d replicas %v, want 1", n, len(ps), ps)
			}
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		if !slices.Equal(nodes, workers) {
			t.Errorf("replicas on nodes %v, want one on each worker %v", nodes, workers)
		}
	})

	t.Run("DNS from a pod on the last worker", func(t *testing.T) {
		e := e.sub(t)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "dns"},
			Spec: corev1.PodSpec{
				NodeName:                      last,
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{
					Name: "dns", Image: BusyboxImage, Command: []string{"sleep", "3600"},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := podRunning(ctx, cs, "default", "dns", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
			t.Fatal(err)
		}
		// busybox's nslookup does not apply the search path, so the test does, as a resolver
		// would: the pod's resolv.conf must list default.svc.cluster.local, and the short name
		// kubernetes.default completed with it must resolve to the API server's Service.
		r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "dns", "--", "cat", "/etc/resolv.conf")
		var search []string
		for _, l := range strings.Split(r.Stdout, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "search" {
				search = f[1:]
			}
		}
		if r.Code != 0 || !slices.Contains(search, "default.svc.cluster.local") {
			t.Fatalf("resolv.conf of a pod on %s has no search default.svc.cluster.local:\n%v", last, r)
		}
		resolved := false
		for _, domain := range search {
			r := e.run(ctx, nil, "kubectl", "--name", name, "--", "exec", "dns", "--", "nslookup", "kubernetes.default."+domain)
			if r.Code == 0 && strings.Contains(r.Stdout, "10.96.0.1") {
				t.Logf("kubernetes.default resolved as kubernetes.default.%s from %s", domain, last)
				resolved = true
				break
			}
		}
		if !resolved {
			t.Errorf("kubernetes.default resolves under none of the search domains %v from a pod on %s", search, last)
		}
	})

	t0 = time.Now()
	e.ok(ctx, "delete", "--name", name)
	t.Logf("delete of %d nodes: %s", scaleNodes, time.Since(t0).Round(100*time.Millisecond))
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
	if _, err := os.Stat(filepath.Join(e.Home, name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("delete left the state directory %s (stat: %v)", filepath.Join(e.Home, name), err)
	}
}
