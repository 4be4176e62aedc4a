// Package browser drives the headless Chromium of the browser tests (`kubeforge trace --web`'s
// page) through chromedp, and reads what the page shows. hack/ensure-chromium.sh finds the
// browser, installing Debian's chromium as root when it is missing: the tests never skip.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ensureScript finds hack/ensure-chromium.sh above the test's directory.
func ensureScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "hack", "ensure-chromium.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/ensure-chromium.sh above %s", dir)
		}
		dir = parent
	}
}

// Chromium returns the path of a Chromium that starts headless, installed when missing (root,
// Debian); the test fails, with the script's words, when there is none.
func Chromium(t testing.TB) string {
	t.Helper()
	script, err := ensureScript()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("no headless Chromium for the browser test: %s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// New starts a headless Chromium and returns the context chromedp drives it with; it ends with
// the test.
func New(t testing.TB) context.Context {
	t.Helper()
	path := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container: Chromium's sandbox needs user namespaces
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser now, so that a browser that cannot start fails here, clearly.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s headless: %v", path, err)
	}
	return ctx
}

// Pod is a pod drawn on the page.
type Pod struct {
	Name     string `json:"name"`
	Phase    string `json:"phase"`
	Restarts int    `json:"restarts"`
}

// Node is a node's box on the page.
type Node struct {
	Name string `json:"name"`
	Down bool   `json:"down"`
	Pods []Pod  `json:"pods"`
}

// Entry is one line of the page's timeline: the step's fields it carries.
type Entry struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"` // kubectl, controller, scheduler, kubelet, api-server, other
	Component string `json:"component"`
	Verb      string `json:"verb"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node"`
	Phase     string `json:"phase"`
	Text      string `json:"text"`
}

// Page is what the trace's page shows.
type Page struct {
	Boxes    []string          `json:"boxes"`
	Nodes    []Node            `json:"nodes"`
	Pending  []string          `json:"pending"`
	Timeline []Entry           `json:"timeline"`
	Status   string            `json:"status"`
	Detail   map[string]string `json:"detail"`
	Stats    struct {
		Steps    int `json:"steps"`
		Animated int `json:"animated"`
		Applied  int `json:"applied"`
		Replayed int `json:"replayed"`
	} `json:"stats"`
}

const readPage = `(() => ({
  boxes: [...document.querySelectorAll("[data-box]")].map((e) => e.dataset.box),
  nodes: [...document.querySelectorAll("g.node")].map((n) => ({
    name: n.dataset.node, down: n.classList.contains("down"),
    pods: [...n.querySelectorAll("g.pod")].map((p) => ({ name: p.dataset.pod, phase: p.dataset.phase, restarts: Number(p.dataset.restarts) })),
  })),
  pending: [...document.querySelectorAll("#box-pending g.pod")].map((p) => p.dataset.pod),
  timeline: [...document.querySelectorAll("#timeline li")].map((li) => ({
    id: li.dataset.id, kind: li.dataset.kind, component: li.dataset.component, verb: li.dataset.verb,
    resource: li.dataset.resource, namespace: li.dataset.namespace, name: li.dataset.name,
    node: li.dataset.node, phase: li.dataset.phase || "", text: li.textContent,
  })),
  status: document.getElementById("status").dataset.phase,
  detail: Object.fromEntries([...document.querySelectorAll("#detail-fields dd")].map((d) => [d.dataset.field, d.textContent])),
  stats: window.kfTrace || {},
}))()`

// Read returns what the page in ctx shows now.
func Read(ctx context.Context) (Page, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[Page](readPage))
}

// WaitFor reads the page every 200 ms until ok holds, for at most within; it returns the last
// page read.
func WaitFor(ctx context.Context, within time.Duration, ok func(Page) bool) (Page, error) {
	deadline := time.Now().Add(within)
	for {
		p, err := Read(ctx)
		if err == nil && ok(p) {
			return p, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the page did not show it within %s", within)
			}
			return p, err
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Node returns the node box named name, if the page draws it.
func (p Page) Node(name string) (Node, bool) {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Has says whether the page draws the box of each component (kubectl, apiserver, etcd,
// controller-manager, scheduler) named.
func (p Page) Has(boxes ...string) bool {
	for _, b := range boxes {
		found := false
		for _, have := range p.Boxes {
			found = found || have == b
		}
		if !found {
			return false
		}
	}
	return true
}

// Dump is the page's timeline and boxes, for a failure's message.
func (p Page) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %s, boxes %v, stats %+v\n", p.Status, p.Boxes, p.Stats)
	for _, n := range p.Nodes {
		fmt.Fprintf(&b, "node %s (down %v): %+v\n", n.Name, n.Down, n.Pods)
	}
	fmt.Fprintf(&b, "pending: %v\ntimeline:\n", p.Pending)
	for _, e := range p.Timeline {
		fmt.Fprintf(&b, "  %s\n", e.Text)
	}
	return b.String()
}
