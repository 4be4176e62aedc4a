package netctl

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// recorder is a fake Applier that records every call.
type recorder struct {
	mu           sync.Mutex
	configs      [][]byte
	routeSyncs   [][]Route
	masquerades  []string
	failRoutes   int // SyncRoutes fails this many more times
	changed      chan struct{}
	routesFailed int
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) WriteCNIConfig(conf []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configs = append(r.configs, append([]byte(nil), conf...))
	r.notify()
	return nil
}

func (r *recorder) SyncRoutes(desired []Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failRoutes > 0 {
		r.failRoutes--
		r.routesFailed++
		r.notify()
		return errors.New("injected failure")
	}
	r.routeSyncs = append(r.routeSyncs, append([]Route(nil), desired...))
	r.notify()
	return nil
}

func (r *recorder) EnsureMasquerade(clusterCIDR string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.masquerades = append(r.masquerades, clusterCIDR)
	r.notify()
	return nil
}

// lastRoutes is the last successful SyncRoutes input; false if none yet.
func (r *recorder) lastRoutes() ([]Route, bool) {
	if len(r.routeSyncs) == 0 {
		return nil, false
	}
	return r.routeSyncs[len(r.routeSyncs)-1], true
}

// waitFor waits until cond (called with the recorder locked) holds.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; routes syncs %v, configs %d, masquerades %v",
				what, r.routeSyncs, len(r.configs), r.masquerades)
		}
	}
}

func startController(t *testing.T, client *fake.Clientset, rec Applier, resync time.Duration) {
	t.Helper()
	c, err := NewController(client, rec, Options{
		NodeName:     "n1",
		ClusterCIDR:  netip.MustParsePrefix("10.244.0.0/16"),
		ResyncPeriod: resync,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func TestControllerFollowsNodes(t *testing.T) {
	ctx := context.Background()
	self := node("n1", nil, "192.168.49.2")
	n2 := node("n2", cidrs("10.244.1.0/24"), "192.168.49.3")
	client := fake.NewClientset(self, n2)
	rec := newRecorder()
	startController(t, client, rec, time.Hour)

	// First sync, from a complete cache: the route to n2, masquerade, no CNI config (no pod CIDR).
	rec.waitFor(t, "first route sync and masquerade", func() bool {
		return len(rec.routeSyncs) > 0 && len(rec.masquerades) > 0
	})
	rec.mu.Lock()
	if first := rec.routeSyncs[0]; !reflect.DeepEqual(first, []Route{route("10.244.1.0/24", "192.168.49.3")}) {
		t.Errorf("first SyncRoutes = %v: the controller synced before its cache was complete?", first)
	}
	if rec.masquerades[0] != "10.244.0.0/16" {
		t.Errorf("EnsureMasquerade(%q)", rec.masquerades[0])
	}
	if len(rec.configs) != 0 {
		t.Errorf("CNI config written before the node had a pod CIDR: %s", rec.configs[0])
	}
	rec.mu.Unlock()

	// The node gets its pod CIDR: the CNI config follows.
	self = self.DeepCopy()
	self.Spec.PodCIDR, self.Spec.PodCIDRs = "10.244.0.0/24", []string{"10.244.0.0/24"}
	if _, err := client.CoreV1().Nodes().Update(ctx, self, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want, _ := CNIConfig(netip.MustParsePrefix("10.244.0.0/24"), 0)
	rec.waitFor(t, "CNI config", func() bool {
		return len(rec.configs) > 0 && string(rec.configs[len(rec.configs)-1]) == string(want)
	})

	// A node joins.
	if _, err := client.CoreV1().Nodes().Create(ctx, node("n3", cidrs("10.244.2.0/24"), "192.168.49.4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, rec, route("10.244.1.0/24", "192.168.49.3"), route("10.244.2.0/24", "192.168.49.4"))

	// A node's IP changes.
	n2 = n2.DeepCopy()
	n2.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.49.7"}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, rec, route("10.244.1.0/24", "192.168.49.7"), route("10.244.2.0/24", "192.168.49.4"))

	// Irrelevant updates (conditions) do not cause syncs.
	rec.mu.Lock()
	syncs := len(rec.routeSyncs)
	rec.mu.Unlock()
	n2.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A node goes away.
	if err := client.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, rec, route("10.244.1.0/24", "192.168.49.7"))
	rec.mu.Lock()
	if n := len(rec.routeSyncs) - syncs; n != 1 {
		t.Errorf("%d route syncs for a condition update and a delete, want 1 (the delete)", n)
	}
	rec.mu.Unlock()
}

func waitRoutes(t *testing.T, rec *recorder, want ...Route) {
	t.Helper()
	rec.waitFor(t, "routes "+routesString(want), func() bool {
		got, ok := rec.lastRoutes()
		return ok && reflect.DeepEqual(got, want)
	})
}

func routesString(rs []Route) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func TestControllerRetriesFailures(t *testing.T) {
	client := fake.NewClientset(node("n1", cidrs("10.244.0.0/24"), "192.168.49.2"),
		node("n2", cidrs("10.244.1.0/24"), "192.168.49.3"))
	rec := newRecorder()
	rec.failRoutes = 2
	startController(t, client, rec, time.Hour)
	waitRoutes(t, rec, route("10.244.1.0/24", "192.168.49.3"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.routesFailed != 2 {
		t.Errorf("SyncRoutes failed %d times, want 2 then success", rec.routesFailed)
	}
}

func TestControllerResyncs(t *testing.T) {
	client := fake.NewClientset(node("n1", cidrs("10.244.0.0/24"), "192.168.49.2"))
	rec := newRecorder()
	startController(t, client, rec, 20*time.Millisecond)
	rec.waitFor(t, "periodic re-application", func() bool {
		return len(rec.masquerades) >= 3 && len(rec.routeSyncs) >= 3 && len(rec.configs) >= 3
	})
}

func TestNewControllerValidates(t *testing.T) {
	client := fake.NewClientset()
	good := Options{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}
	if _, err := NewController(client, newRecorder(), good); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	for name, o := range map[string]Options{
		"no node name": {ClusterCIDR: good.ClusterCIDR},
		"no cluster":   {NodeName: "n1"},
		"IPv6 cluster": {NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("fd00::/48")},
		"negative MTU": {NodeName: "n1", ClusterCIDR: good.ClusterCIDR, MTU: -1},
	} {
		if _, err := NewController(client, newRecorder(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewController(client, nil, good); err == nil {
		t.Error("nil applier accepted")
	}
}

func TestTrimNode(t *testing.T) {
	n := node("n2", cidrs("10.244.1.0/24"), "192.168.49.3")
	n.Status.Images = []v1.ContainerImage{{Names: []string{"big"}}}
	n.Labels = map[string]string{"a": "b"}
	got, err := trimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	tn := got.(*v1.Node)
	if tn.Status.Images != nil || tn.Labels != nil {
		t.Errorf("trimNode kept unused fields: %+v", tn)
	}
	if !relevantEqual(n, tn) {
		t.Errorf("trimNode lost used fields: %+v", tn)
	}
	other := "not a node"
	if got, _ := trimNode(other); got != other {
		t.Error("trimNode changed a non-Node")
	}
}
