package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"kubeforge.dev/kubeforge/provision"
)

// deleteDriverFake records DeleteNode calls and how many ran at once; names in fail fail.
type deleteDriverFake struct {
	provision.Driver
	mu            sync.Mutex
	deleted       []string
	running, peak atomic.Int32
	fail          map[string]bool
}

func (d *deleteDriverFake) DeleteNode(_ context.Context, _, name string) error {
	n := d.running.Add(1)
	defer d.running.Add(-1)
	for {
		p := d.peak.Load()
		if n <= p || d.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	if d.fail[name] {
		return fmt.Errorf("removing %s: boom", name)
	}
	d.mu.Lock()
	d.deleted = append(d.deleted, name)
	d.mu.Unlock()
	return nil
}

// TestDeleteMachinesBoundedAndComplete: every machine is removed, at most machineDeletes at once,
// and each failure is returned while the others still go.
func TestDeleteMachinesBoundedAndComplete(t *testing.T) {
	var nodes []provision.Node
	for i := range 10 {
		nodes = append(nodes, &exportNodeFake{name: fmt.Sprintf("kf-m%02d", i+1)})
	}
	d := &deleteDriverFake{fail: map[string]bool{"kf-m03": true, "kf-m07": true}}
	errs := deleteMachines(context.Background(), d, "kf", nodes)
	if len(errs) != 2 {
		t.Errorf("got errors %v, want the 2 failures", errs)
	}
	if len(d.deleted) != 8 {
		t.Errorf("deleted %v, want the 8 others", d.deleted)
	}
	if p := d.peak.Load(); p > machineDeletes || p < 2 {
		t.Errorf("%d deletes at once, want 2..%d", p, machineDeletes)
	}
}

// iptablesNodeFake answers iptables-save with the kube-dns rules once programmed is set, and
// counts the calls.
type iptablesNodeFake struct {
	provision.Node
	name       string
	programmed atomic.Bool
	calls      atomic.Int32
}

func (n *iptablesNodeFake) Name() string { return n.name }
func (n *iptablesNodeFake) Run(_ context.Context, cmd provision.Cmd) error {
	n.calls.Add(1)
	if cmd.Args[0] != "iptables-save" {
		return errors.New("unexpected command " + strings.Join(cmd.Args, " "))
	}
	if n.programmed.Load() {
		_, err := io.WriteString(cmd.Stdout, `-A KUBE-SEP-X -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.1.2:53`+"\n")
		return err
	}
	return nil
}

// TestDNSProgrammedRechecksOnlyPending: a node found routing DNS is not read again; the wait ends
// once the last node routes it.
func TestDNSProgrammedRechecksOnlyPending(t *testing.T) {
	cs := fake.NewSimpleClientset(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns"}},
		Status:     corev1.PodStatus{PodIP: "10.244.1.2", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	})
	var fakes []*iptablesNodeFake
	var nodes []provision.Node
	for i := range 6 {
		n := &iptablesNodeFake{name: fmt.Sprintf("kf-m%02d", i+1)}
		n.programmed.Store(i != 5)
		fakes, nodes = append(fakes, n), append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	time.AfterFunc(time.Second, func() { fakes[5].programmed.Store(true) })
	if err := dnsProgrammed(ctx, cs, nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range fakes[:5] {
		if c := n.calls.Load(); c != 1 {
			t.Errorf("%s read %d times, want once", n.name, c)
		}
	}
	if c := fakes[5].calls.Load(); c < 2 {
		t.Errorf("%s read %d times, want until programmed", fakes[5].name, c)
	}
}
