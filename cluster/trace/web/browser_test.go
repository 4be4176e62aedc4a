//go:build e2e

package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kubeforge.dev/kubeforge/cluster/trace"
	"kubeforge.dev/kubeforge/test/browser"
)

// workshop returns the steps of `kubectl create deployment web --replicas=3` on a 3-node
// cluster as trace makes them, with the times and fields of a real run (testdata/audit.log has
// one event of each kind; this is the whole flow): kubectl's create, the ReplicaSet, 3 pods,
// 3 bindings, 3 Running reports.
func workshop(t0 time.Time, nodes []string) []trace.Step {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rv := 900
	next := func() string { rv++; return fmt.Sprint(rv) }
	steps := []trace.Step{
		{Time: at(0), Component: "kubectl", Actor: "kubernetes-admin", Verb: "create", Resource: "deployments", Namespace: "default",
			Name: "web", Kind: "Deployment", EtcdKey: "/registry/deployments/default/web", ResourceVersion: next(), Message: "wants 3 replicas"},
		{Time: at(30), Component: "deployment-controller", Actor: "system:serviceaccount:kube-system:deployment-controller", Verb: "create",
			Resource: "replicasets", Namespace: "default", Name: "web-5d8f7", Kind: "ReplicaSet", EtcdKey: "/registry/replicasets/default/web-5d8f7",
			ResourceVersion: next(), Cause: &trace.Ref{Kind: "Deployment", Name: "web"}, Message: "wants 3 replicas"},
	}
	pods := []string{"web-5d8f7-aaaaa", "web-5d8f7-bbbbb", "web-5d8f7-ccccc"}
	for i, p := range pods {
		steps = append(steps, trace.Step{Time: at(60 + i*5), Component: "replicaset-controller", Actor: "system:serviceaccount:kube-system:replicaset-controller",
			Verb: "create", Resource: "pods", Namespace: "default", Name: p, Kind: "Pod", EtcdKey: "/registry/pods/default/" + p,
			ResourceVersion: next(), Cause: &trace.Ref{Kind: "ReplicaSet", Name: "web-5d8f7"}, Phase: "Pending", Message: "phase Pending"})
	}
	for i, p := range pods {
		steps = append(steps, trace.Step{Time: at(90 + i*5), Component: "scheduler", Actor: "system:kube-scheduler", Verb: "create",
			Resource: "pods/binding", Namespace: "default", Name: p, Kind: "Pod", EtcdKey: "/registry/pods/default/" + p, Node: nodes[i]})
	}
	for i, p := range pods {
		steps = append(steps, trace.Step{Time: at(900 + i*40), Component: "kubelet", Actor: "system:node:" + nodes[i], Verb: "patch",
			Resource: "pods/status", Namespace: "default", Name: p, Kind: "Pod", EtcdKey: "/registry/pods/default/" + p,
			ResourceVersion: next(), Node: nodes[i], Phase: "Running", Message: "phase Running on " + nodes[i]})
	}
	return steps
}

// TestPageInBrowser loads the page in a real headless Chromium and feeds it steps: the boxes are
// drawn, the steps animate, pods land in their nodes' boxes and run, a restart is counted, a node
// going NotReady is greyed, a click shows a step's etcd key, and a new page gets the kept steps.
func TestPageInBrowser(t *testing.T) {
	nodeNames := []string{"kf", "kf-m02", "kf-m03"}
	s := New(Options{Cluster: "kf", Scope: "namespace default", Nodes: func(context.Context) ([]Node, error) {
		return []Node{{Name: "kf", Role: "control-plane", State: "running"}, {Name: "kf-m02", Role: "worker", State: "running"},
			{Name: "kf-m03", Role: "worker", State: "running"}}, nil
	}})
	// Some steps before the page opens: it must show them (the replay of the last minutes).
	for _, st := range recorded(t) {
		s.Publish(st)
	}
	before := len(s.Steps())
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close) // after the browser's cleanup: its event stream ends with it
	ctx := browser.New(t)
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(ts.URL+"/")); err != nil {
		t.Fatal(err)
	}
	p, err := browser.WaitFor(tctx, 20*time.Second, func(p browser.Page) bool {
		return p.Has("kubectl", "apiserver", "etcd", "controller-manager", "scheduler") && len(p.Nodes) == 4 && len(p.Timeline) == before
	})
	if err != nil {
		t.Fatalf("the page's boxes and the %d kept steps: %v\n%s", before, err, p.Dump())
	}
	// The recorded steps' node (trc-m03) is not one the server lists: its box is drawn from them,
	// the pod they bound and ran in it.
	if n, ok := p.Node("trc-m03"); !ok || len(n.Pods) != 1 || n.Pods[0].Phase != "Running" {
		t.Errorf("the recorded pod in node trc-m03's box:\n%s", p.Dump())
	}
	if p.Status != "connecting" {
		t.Errorf("status %q before the trace follows", p.Status)
	}
	s.SetState(State{Phase: "following", Message: "following the audit log of kf"})

	animatedBefore := p.Stats.Animated
	live := workshop(time.Now(), nodeNames)
	for _, st := range live {
		s.Publish(st)
		time.Sleep(20 * time.Millisecond)
	}
	p, err = browser.WaitFor(tctx, 20*time.Second, func(p browser.Page) bool {
		for i, n := range nodeNames {
			node, ok := p.Node(n)
			if !ok || len(node.Pods) != 1 || node.Pods[0].Phase != "Running" || node.Pods[0].Name != fmt.Sprintf("web-5d8f7-%s", strings.Repeat(string(rune('a'+i)), 5)) {
				return false
			}
		}
		return p.Status == "following" && len(p.Pending) == 0
	})
	if err != nil {
		t.Fatalf("3 Running pods, one in each node's box: %v\n%s", err, p.Dump())
	}
	if p.Stats.Animated-animatedBefore != 2*len(live) {
		t.Errorf("%d animations for %d live steps (each: the component to the API server, the API server to etcd)", p.Stats.Animated-animatedBefore, len(live))
	}
	var kinds []string
	for _, e := range p.Timeline[before:] {
		kinds = append(kinds, e.Kind+":"+e.Verb+":"+e.Resource)
	}
	want := "kubectl:create:deployments controller:create:replicasets controller:create:pods controller:create:pods controller:create:pods " +
		"scheduler:create:pods/binding scheduler:create:pods/binding scheduler:create:pods/binding " +
		"kubelet:patch:pods/status kubelet:patch:pods/status kubelet:patch:pods/status"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("timeline:\n got %s\nwant %s", got, want)
	}

	// A restart, reported by the kubelet, is counted on the pod; a node the node controller marks
	// NotReady is greyed.
	s.Publish(trace.Step{Time: time.Now(), Component: "kubelet", Actor: "system:node:kf-m02", Verb: "patch", Resource: "pods/status",
		Namespace: "default", Name: "web-5d8f7-bbbbb", Kind: "Pod", Node: "kf-m02", Phase: "Running", Restarts: 1})
	s.Publish(trace.Step{Time: time.Now(), Component: "node-lifecycle-controller", Actor: "system:serviceaccount:kube-system:node-controller",
		Verb: "update", Resource: "nodes/status", Name: "kf-m03", Kind: "Node", EtcdKey: "/registry/minions/kf-m03",
		Message: "MemoryPressure=Unknown (NodeStatusUnknown); Ready=Unknown (NodeStatusUnknown)"})
	p, err = browser.WaitFor(tctx, 20*time.Second, func(p browser.Page) bool {
		m02, _ := p.Node("kf-m02")
		m03, _ := p.Node("kf-m03")
		kf, _ := p.Node("kf")
		return len(m02.Pods) == 1 && m02.Pods[0].Restarts == 1 && m03.Down && !kf.Down && !m02.Down
	})
	if err != nil {
		t.Fatalf("a restart counted, kf-m03 greyed: %v\n%s", err, p.Dump())
	}

	// A click on kubectl's create shows its object, etcd key and resourceVersion.
	if err := chromedp.Do(tctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#timeline li[data-id="%d"]`, before+1)))); err != nil {
		t.Fatal(err)
	}
	p, err = browser.WaitFor(tctx, 5*time.Second, func(p browser.Page) bool { return p.Detail["etcd key"] != "" })
	if err != nil || p.Detail["etcd key"] != "/registry/deployments/default/web" || p.Detail["resourceVersion"] != "901" ||
		p.Detail["who"] != "kubectl" || p.Detail["object"] != "Deployment default/web" {
		t.Errorf("the selected step: %v (%v)", p.Detail, err)
	}

	// The trace waits for a stopped cluster: the page says so.
	s.SetState(State{Phase: "waiting", Message: "cluster kf stopped, waiting"})
	if p, err = browser.WaitFor(tctx, 5*time.Second, func(p browser.Page) bool { return p.Status == "waiting" }); err != nil {
		t.Errorf("status after the cluster stopped: %q", p.Status)
	}

	// A new page gets every kept step first, and draws what they did.
	total := len(s.Steps())
	if err := chromedp.Do(tctx, chromedp.Navigate(ts.URL+"/")); err != nil {
		t.Fatal(err)
	}
	p, err = browser.WaitFor(tctx, 20*time.Second, func(p browser.Page) bool {
		m01, _ := p.Node("kf")
		return len(p.Timeline) == total && len(m01.Pods) == 1 && m01.Pods[0].Phase == "Running"
	})
	if err != nil {
		t.Fatalf("a new page: want the %d kept steps and their pods: %v\n%s", total, err, p.Dump())
	}
	if p.Stats.Animated != 0 {
		t.Errorf("a new page animated %d kept steps: it should draw them at once (Replay animates them)", p.Stats.Animated)
	}
	// Replay animates them again.
	if err := chromedp.Do(tctx, chromedp.Click(chromedp.CSS("#replay"))); err != nil {
		t.Fatal(err)
	}
	if p, err = browser.WaitFor(tctx, 30*time.Second, func(p browser.Page) bool { return p.Stats.Replayed == total && p.Stats.Animated > 0 }); err != nil {
		t.Errorf("replay: %v, stats %+v", err, p.Stats)
	}
}
