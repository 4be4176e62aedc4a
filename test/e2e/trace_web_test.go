//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"kubeforge.dev/kubeforge/test/browser"
)

// webTracer is a `kubeforge trace --web` running in the background.
type webTracer struct {
	*background
	url string
}

// startTraceWeb runs `kubeforge trace --web ARGS...` and returns once it printed its page's URL.
func (e *env) startTraceWeb(ctx context.Context, args ...string) *webTracer {
	e.t.Helper()
	bg, stdout := e.startBackground(ctx, nil, append([]string{"trace", "--web"}, args...)...)
	w := &webTracer{background: bg}
	urls := make(chan string, 1)
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case urls <- strings.TrimSpace(sc.Text()):
			default:
				e.t.Errorf("kubeforge trace --web printed more than its URL: %q", sc.Text())
			}
		}
	}()
	select {
	case w.url = <-urls:
	case <-w.done:
		e.t.Fatalf("kubeforge trace --web ended at once:\n%s", w.stderrText())
	case <-time.After(time.Minute):
		e.t.Fatalf("kubeforge trace --web printed no URL within a minute:\n%s", w.stderrText())
	}
	if !strings.HasPrefix(w.url, "http://127.0.0.1:") || !strings.HasSuffix(w.url, "/") {
		e.t.Fatalf("kubeforge trace --web printed %q, want http://127.0.0.1:PORT/", w.url)
	}
	return w
}

// TestTraceWeb loads `kubeforge trace --web`'s page in a real headless Chromium (Debian's
// chromium, driven by chromedp; hack/ensure-chromium.sh installs it when missing): the page comes
// from kubeforge alone and draws the API server, etcd, the scheduler, the controller manager and
// each node of a 3-node cluster; `kubectl create deployment web --replicas=3` made during the test
// is animated and recorded: the timeline gains kubectl's create, the deployment controller's
// ReplicaSet, the replicaset controller's 3 Pods and the scheduler's 3 bindings to the nodes the
// pods really run on, and each pod appears, Running, in the box of its node. Then the cluster is
// stopped (the page says it waits) and started (the page follows it again).
func TestTraceWeb(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	// The browser first: a machine without one fails here, before a cluster is made.
	bctx := browser.New(t)
	e := newEnv(t)
	const name = "kf-tweb"
	e.deleteOnCleanup(name)
	e.ok(ctx, "start", "--name", name, "--nodes", "3")
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	var nodes []string
	for _, n := range strings.Fields(e.ok(ctx, "kubectl", "--name", name, "--", "get", "nodes", "-o", "name").Stdout) {
		nodes = append(nodes, strings.TrimPrefix(n, "node/"))
	}
	if len(nodes) != 3 {
		t.Fatalf("kubectl get nodes: %v", nodes)
	}

	w := e.startTraceWeb(ctx, "--name", name)
	defer w.stop(t)
	pctx, cancelPage := context.WithTimeout(bctx, 15*time.Minute)
	defer cancelPage()
	if err := chromedp.Do(pctx, chromedp.Navigate(w.url)); err != nil {
		t.Fatalf("loading %s: %v", w.url, err)
	}
	p, err := browser.WaitFor(pctx, time.Minute, func(p browser.Page) bool {
		for _, n := range nodes {
			if _, ok := p.Node(n); !ok {
				return false
			}
		}
		return p.Has("kubectl", "apiserver", "etcd", "controller-manager", "scheduler") && p.Status == "following"
	})
	if err != nil {
		t.Fatalf("the page's boxes (API server, etcd, scheduler, controller manager, nodes %v), following: %v\n%s\nstderr:\n%s", nodes, err, p.Dump(), w.stderrText())
	}
	animated := p.Stats.Animated

	e.ok(ctx, "kubectl", "--name", name, "--", "create", "deployment", "web", "--image="+BusyboxImage, "--replicas=3",
		"--", "sleep", "1000000")
	webPods := func(p browser.Page) map[string]browser.Pod {
		out := map[string]browser.Pod{}
		for _, n := range p.Nodes {
			for _, pod := range n.Pods {
				if strings.HasPrefix(pod.Name, "web-") {
					pod.Name = n.Name + "/" + pod.Name
					out[pod.Name] = pod
				}
			}
		}
		return out
	}
	p, err = browser.WaitFor(pctx, 3*time.Minute, func(p browser.Page) bool {
		running := 0
		for _, pod := range webPods(p) {
			if pod.Phase == "Running" {
				running++
			}
		}
		return running == 3
	})
	if err != nil {
		t.Fatalf("3 web pods Running in the nodes' boxes: %v\n%s\nstderr:\n%s", err, p.Dump(), w.stderrText())
	}
	t.Logf("the page:\n%s", p.Dump())

	// Where the pods really run, as kubectl says: each is drawn in that node's box.
	wide := e.ok(ctx, "kubectl", "--name", name, "--", "get", "pods", "-l", "app=web", "-o", "wide", "--no-headers").Stdout
	nodeOf := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(wide), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			t.Fatalf("kubectl get pods -o wide: %q", line)
		}
		nodeOf[f[0]] = f[6]
	}
	drawn := webPods(p)
	for pod, node := range nodeOf {
		if _, ok := drawn[node+"/"+pod]; !ok {
			t.Errorf("pod %s runs on %s, the page does not draw it in that node's box", pod, node)
		}
	}
	if len(nodeOf) != 3 || len(drawn) != 3 {
		t.Errorf("kubectl lists %d web pods, the page draws %d", len(nodeOf), len(drawn))
	}

	// The timeline, in order: kubectl's create, the ReplicaSet, the Pods, the bindings.
	tl := p.Timeline
	at := func(from int, ok func(browser.Entry) bool) int {
		for i := from; i < len(tl); i++ {
			if ok(tl[i]) {
				return i
			}
		}
		return -1
	}
	create := at(0, func(x browser.Entry) bool {
		return x.Component == "kubectl" && x.Verb == "create" && x.Resource == "deployments" && x.Name == "web"
	})
	if create < 0 {
		t.Fatalf("no create of deployment web by kubectl in the timeline:\n%s", p.Dump())
	}
	rsi := at(create+1, func(x browser.Entry) bool {
		return x.Component == "deployment-controller" && x.Verb == "create" && x.Resource == "replicasets" && strings.HasPrefix(x.Name, "web-")
	})
	if rsi < 0 {
		t.Fatalf("no ReplicaSet created by the deployment controller after kubectl's create:\n%s", p.Dump())
	}
	for pod, node := range nodeOf {
		pi := at(rsi+1, func(x browser.Entry) bool {
			return x.Component == "replicaset-controller" && x.Verb == "create" && x.Resource == "pods" && x.Name == pod
		})
		if pi < 0 {
			t.Errorf("no create of pod %s by the replicaset controller after the ReplicaSet's", pod)
			continue
		}
		bi := at(pi+1, func(x browser.Entry) bool { return x.Resource == "pods/binding" && x.Name == pod })
		if bi < 0 {
			t.Errorf("no binding of pod %s after its create", pod)
			continue
		}
		if b := tl[bi]; b.Component != "scheduler" || b.Node != node {
			t.Errorf("pod %s runs on %s, the timeline's binding says %s by %s", pod, node, b.Node, b.Component)
		}
	}
	// Each of those steps was animated (the component to the API server, then to etcd).
	if n := p.Stats.Animated - animated; n < 2*(1+1+3+3) {
		t.Errorf("%d animations for the deployment's steps", n)
	}
	if t.Failed() {
		t.Fatalf("the page:\n%s", p.Dump())
	}

	t.Run("a stopped cluster is waited for, then followed again", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "stop", "--name", name)
		p, err := browser.WaitFor(pctx, 2*time.Minute, func(p browser.Page) bool {
			down := 0
			for _, n := range p.Nodes {
				if n.Down {
					down++
				}
			}
			return p.Status == "waiting" && down == len(nodes)
		})
		if err != nil {
			t.Fatalf("after stop: want status waiting and every node greyed: %v\n%s\nstderr:\n%s", err, p.Dump(), w.stderrText())
		}
		e.ok(ctx, "start", "--name", name)
		before := len(p.Timeline)
		p, err = browser.WaitFor(pctx, 3*time.Minute, func(p browser.Page) bool {
			// Following again: the kubelets' reports of the pods restarted with their nodes arrive.
			kubelet := false
			for _, x := range p.Timeline[min(before, len(p.Timeline)):] {
				kubelet = kubelet || (x.Component == "kubelet" && strings.HasPrefix(x.Name, "web-"))
			}
			return p.Status == "following" && kubelet
		})
		if err != nil {
			t.Fatalf("after start: want status following and the kubelets' reports: %v\n%s\nstderr:\n%s", err, p.Dump(), w.stderrText())
		}
	})
}
