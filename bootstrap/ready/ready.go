// Package ready waits for the real signs that a cluster is usable: the API server's /readyz, Nodes
// whose Ready condition is True, and CoreDNS endpoints that passed their readiness probe. Waits
// watch the API (no fixed sleeps); only the API server check polls, with a short backoff, because
// there is nothing to watch before it answers.
package ready

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// APIServerPoll is how often APIServer asks at most: what follows /readyz (add-ons, leases)
// waits for the answer.
const APIServerPoll = 100 * time.Millisecond

// APIServer waits until GET /readyz answers ok, returning the last failure seen (its failing
// checks only) when ctx ends. It polls every 50 ms at first, backing off to APIServerPoll.
func APIServer(ctx context.Context, cs kubernetes.Interface) error {
	return APIServerEvery(ctx, cs, APIServerPoll)
}

// APIServerEvery is APIServer asking every maxDelay at most: on an emulated machine each answer
// costs the API server CPU it is short of.
func APIServerEvery(ctx context.Context, cs kubernetes.Interface, maxDelay time.Duration) error {
	var last error
	delay := 50 * time.Millisecond
	for {
		// Long enough for a slow machine (an emulated VM) to answer: a request cut short costs a
		// new TLS handshake, the very work such a machine is short of.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if failing := failingChecks(string(body)); failing != "" {
			last = fmt.Errorf("checks failing: %s", failing)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the API server did not become ready: %w (%w)", last, ctx.Err())
		case <-t.C:
		}
		if delay = delay * 3 / 2; delay > maxDelay {
			delay = maxDelay
		}
	}
}

// failingChecks picks the failing checks ("[-]name failed: ...") out of a /readyz body.
func failingChecks(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "[-]") {
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "[-]"), " ")
			out = append(out, name)
		}
	}
	return strings.Join(out, ", ")
}

// NodeReady reports whether a Node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readySince is when the node's Ready condition was last reported.
func readySince(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

// Nodes waits until every named node exists and is Ready.
func Nodes(ctx context.Context, cs kubernetes.Interface, names ...string) error {
	return NodesSince(ctx, cs, time.Time{}, names...)
}

// NodesSince waits until every named node exists and is Ready as reported at or after since (a
// node restarted at since still shows its old Ready condition until its kubelet reports again).
func NodesSince(ctx context.Context, cs kubernetes.Interface, since time.Time, names ...string) error {
	since = since.Truncate(time.Second) // condition times have second precision
	c := cs.CoreV1().Nodes()
	_, err := untilAll(ctx, listWatch(nil, c.List, c.Watch), &corev1.Node{}, names, func(n *corev1.Node) bool {
		return NodeReady(n) && !readySince(n).Before(since)
	})
	if err != nil {
		return fmt.Errorf("waiting for node(s) %v to be Ready: %w", names, err)
	}
	return nil
}

// PodsRunning waits until every named pod in namespace exists and is Running: the control plane's
// mirror pods appear only when each kubelet's next pod sync after its Node registered creates them,
// and a user's first `kubectl get pods -n kube-system` should list all of them.
func PodsRunning(ctx context.Context, cs kubernetes.Interface, namespace string, names ...string) error {
	c := cs.CoreV1().Pods(namespace)
	missing, err := untilAll(ctx, listWatch(nil, c.List, c.Watch), &corev1.Pod{}, names, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	if err != nil {
		return fmt.Errorf("waiting for pod(s) %s/%v to be Running: %w", namespace, missing, err)
	}
	return nil
}

// untilAll watches objects of type T until every named one exists (not deleted) and satisfies
// ok; on failure it returns the names still missing.
func untilAll[T interface {
	runtime.Object
	GetName() string
}](ctx context.Context, lw *cache.ListWatch, obj T, names []string, ok func(T) bool) ([]string, error) {
	done := map[string]bool{}
	for _, n := range names {
		done[n] = false
	}
	_, err := watchtools.UntilWithSync(ctx, lw, obj, nil, func(ev watch.Event) (bool, error) {
		o, isT := ev.Object.(T)
		if !isT {
			return false, nil
		}
		if _, want := done[o.GetName()]; !want {
			return false, nil
		}
		done[o.GetName()] = ev.Type != watch.Deleted && ok(o)
		for _, d := range done {
			if !d {
				return false, nil
			}
		}
		return true, nil
	})
	var missing []string
	for n, d := range done {
		if !d {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	return missing, err
}

// NodeRegistered waits until the Node name exists and returns it.
func NodeRegistered(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.Node, error) {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	c := cs.CoreV1().Nodes()
	lw := listWatch(func(o *metav1.ListOptions) { o.FieldSelector = sel }, c.List, c.Watch)
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		return ev.Type != watch.Deleted, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for node %s to register: %w", name, err)
	}
	return ev.Object.(*corev1.Node), nil
}

// ServiceEndpoints waits until a Service has at least one ready endpoint.
func ServiceEndpoints(ctx context.Context, cs kubernetes.Interface, namespace, service string) error {
	sel := discoveryv1.LabelServiceName + "=" + service
	c := cs.DiscoveryV1().EndpointSlices(namespace)
	lw := listWatch(func(o *metav1.ListOptions) { o.LabelSelector = sel }, c.List, c.Watch)
	_, err := watchtools.UntilWithSync(ctx, lw, &discoveryv1.EndpointSlice{}, nil, func(ev watch.Event) (bool, error) {
		es, ok := ev.Object.(*discoveryv1.EndpointSlice)
		if !ok || ev.Type == watch.Deleted {
			return false, nil
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for a ready endpoint of service %s/%s: %w", namespace, service, err)
	}
	return nil
}

// ServiceAccount waits until a ServiceAccount exists.
func ServiceAccount(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	c := cs.CoreV1().ServiceAccounts(namespace)
	lw := listWatch(func(o *metav1.ListOptions) { o.FieldSelector = sel }, c.List, c.Watch)
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.ServiceAccount{}, nil, func(ev watch.Event) (bool, error) {
		return ev.Type != watch.Deleted, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for serviceaccount %s/%s: %w", namespace, name, err)
	}
	return nil
}

// IsTimeout tells whether err is a wait that ran out of time.
func IsTimeout(err error) bool {
	return wait.Interrupted(err) && !errors.Is(err, context.Canceled)
}

// PodsRestartedSince waits until every pod matching selector in namespace (at least one) is Ready
// and, when it is on one of the restarted nodes, has all its containers started at or after since:
// after nodes restart, their pods' old Ready conditions and endpoints still say ready until their
// kubelets report again.
func PodsRestartedSince(ctx context.Context, cs kubernetes.Interface, namespace, selector string, since time.Time, restarted map[string]bool) error {
	since = since.Truncate(time.Second)
	c := cs.CoreV1().Pods(namespace)
	lw := listWatch(func(o *metav1.ListOptions) { o.LabelSelector = selector }, c.List, c.Watch)
	fresh := map[string]bool{}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
			delete(fresh, p.Name) // replaced by another pod, if its controller wants one
		} else {
			t := since
			if !restarted[p.Spec.NodeName] {
				t = time.Time{}
			}
			fresh[p.Name] = podRestartedSince(p, t)
		}
		for _, ok := range fresh {
			if !ok {
				return false, nil
			}
		}
		return len(fresh) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the pods %s in %s to run again: %w", selector, namespace, err)
	}
	return nil
}

func podRestartedSince(p *corev1.Pod, since time.Time) bool {
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(since) {
			return false
		}
	}
	return true
}

// EndpointsMatchPods waits until the Service's ready endpoints are exactly the IPs of its Ready
// pods (selector): after pods restart with new IPs, the old addresses stay listed as ready
// until the endpoint-slice controller catches up, and kube-proxy programs what is listed.
func EndpointsMatchPods(ctx context.Context, cs kubernetes.Interface, namespace, service, selector string) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		want := map[string]bool{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(&p) {
				want[p.Status.PodIP] = true
			}
		}
		slices, err := cs.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return false, nil
		}
		got := map[string]bool{}
		for _, es := range slices.Items {
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					for _, a := range ep.Addresses {
						got[a] = true
					}
				}
			}
		}
		last = fmt.Sprintf("pods %v, endpoints %v", keys(want), keys(got))
		return len(want) > 0 && maps.Equal(want, got), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for service %s/%s's endpoints to be its ready pods (%s): %w", namespace, service, last, err)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// listWatch builds the ListWatch of a typed client's List and Watch, with set (optional) filling
// in the selectors.
func listWatch[L runtime.Object](set func(*metav1.ListOptions), list func(context.Context, metav1.ListOptions) (L, error), w func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	opts := func(o metav1.ListOptions) metav1.ListOptions {
		if set != nil {
			set(&o)
		}
		return o
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return list(ctx, opts(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return w(ctx, opts(o))
		},
	}
}
