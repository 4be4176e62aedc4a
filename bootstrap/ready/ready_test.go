package ready

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}, Status: corev1.PodStatus{Phase: phase}}
}

func TestPodsRunning(t *testing.T) {
	cs := fake.NewClientset(pod("etcd-a", corev1.PodRunning), pod("kube-apiserver-a", corev1.PodPending), pod("other", corev1.PodFailed))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- PodsRunning(ctx, cs, "kube-system", "etcd-a", "kube-apiserver-a", "kube-scheduler-a") }()

	select {
	case err := <-done:
		t.Fatalf("PodsRunning returned %v before every pod ran", err)
	case <-time.After(200 * time.Millisecond):
	}
	pods := cs.CoreV1().Pods("kube-system")
	if _, err := pods.UpdateStatus(ctx, pod("kube-apiserver-a", corev1.PodRunning), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, pod("kube-scheduler-a", corev1.PodRunning), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("PodsRunning: %v", err)
	}
}

func TestPodsRunningNamesWhatIsMissing(t *testing.T) {
	cs := fake.NewClientset(pod("etcd-a", corev1.PodRunning), pod("kube-apiserver-a", corev1.PodPending))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := PodsRunning(ctx, cs, "kube-system", "etcd-a", "kube-apiserver-a", "kube-scheduler-a")
	if err == nil || !IsTimeout(err) || !strings.Contains(err.Error(), "[kube-apiserver-a kube-scheduler-a]") {
		t.Errorf("PodsRunning = %v, want a timeout naming kube-apiserver-a and kube-scheduler-a", err)
	}
}

func TestNodesSince(t *testing.T) {
	since := time.Now()
	node := func(name string, status corev1.ConditionStatus, at time.Time) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.NewTime(at)},
		}}}
	}
	// b's Ready condition is from before the restart: not enough.
	cs := fake.NewClientset(node("a", corev1.ConditionTrue, since.Add(time.Second)), node("b", corev1.ConditionTrue, since.Add(-time.Minute)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := NodesSince(ctx, cs, since, "a", "b"); !IsTimeout(err) {
		t.Fatalf("NodesSince with a stale node = %v, want a timeout", err)
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(context.Background(), node("b", corev1.ConditionTrue, since.Add(2*time.Second)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := NodesSince(ctx2, cs, since, "a", "b"); err != nil {
		t.Errorf("NodesSince: %v", err)
	}
}

func TestMain(m *testing.M) {
	// The fake clientset cannot stream a list through a watch (it sends no initial-events
	// bookmark): the reflectors here list, then watch, as against an older API server.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}
