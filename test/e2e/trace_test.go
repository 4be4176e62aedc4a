//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/cluster/trace"
)

// tracer is a `kubeforge trace -o json` running in the background, its steps collected.
type tracer struct {
	*background
	steps   []trace.Step // under background.mu
	bad     []string     // lines that are not a step
	stopped bool
}

// startTrace runs `kubeforge trace -o json ARGS...` and returns once it follows the audit log.
func (e *env) startTrace(ctx context.Context, args ...string) *tracer {
	e.t.Helper()
	following := make(chan struct{})
	once := sync.Once{}
	bg, stdout := e.startBackground(ctx, func(line string) {
		if strings.HasPrefix(line, "Tracing cluster") {
			once.Do(func() { close(following) })
		}
	}, append([]string{"trace", "-o", "json"}, args...)...)
	tr := &tracer{background: bg}
	go func() {
		defer close(tr.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var s trace.Step
			err := json.Unmarshal(sc.Bytes(), &s)
			tr.mu.Lock()
			if err != nil || s.Time.IsZero() || s.Component == "" || s.Verb == "" || s.Resource == "" {
				tr.bad = append(tr.bad, sc.Text())
			} else {
				tr.steps = append(tr.steps, s)
			}
			tr.mu.Unlock()
		}
	}()
	select {
	case <-following:
	case <-tr.done:
		e.t.Fatalf("kubeforge trace ended at once:\n%s", tr.stderrText())
	case <-time.After(time.Minute):
		e.t.Fatalf("kubeforge trace does not follow the audit log after a minute:\n%s", tr.stderrText())
	}
	return tr
}

// background is a kubeforge command running in the background (trace, trace --web): its stderr
// is collected; whoever reads its stdout closes done at the end of it.
type background struct {
	what   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
}

// startBackground starts `kubeforge ARGS...` of this env, collects its stderr (onStderr, if not
// nil, sees each line) and returns it with its stdout.
func (e *env) startBackground(ctx context.Context, onStderr func(string), args ...string) (*background, io.Reader) {
	e.t.Helper()
	b := &background{what: "kubeforge " + strings.Join(args, " "), done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, e.Bin, args...)
	b.cmd.Env = append(os.Environ(), "KUBEFORGE_HOME="+e.Home, "KUBECONFIG="+e.Kubeconfig)
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
			if onStderr != nil {
				onStderr(sc.Text())
			}
		}
	}()
	return b, stdout
}

func (b *background) stderrText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// stop interrupts it as Ctrl-C does: it must end with exit 0.
func (b *background) stop(t *testing.T) {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		t.Errorf("%s did not end 30 s after SIGINT", b.what)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Errorf("%s after SIGINT: %v\n%s", b.what, err, b.stderrText())
	}
}

// snapshot returns the steps so far.
func (tr *tracer) snapshot() []trace.Step {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]trace.Step(nil), tr.steps...)
}

// waitFor waits until ok holds on the steps so far.
func (tr *tracer) waitFor(ctx context.Context, within time.Duration, ok func([]trace.Step) bool) ([]trace.Step, error) {
	var steps []trace.Step
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, within, true, func(context.Context) (bool, error) {
		steps = tr.snapshot()
		return ok(steps), nil
	})
	return steps, err
}

// stop interrupts the trace as Ctrl-C does: it must end with exit 0, having printed only steps.
func (tr *tracer) stop(t *testing.T) {
	t.Helper()
	if tr.stopped {
		return
	}
	tr.stopped = true
	tr.background.stop(t)
	if len(tr.bad) > 0 {
		t.Errorf("lines of trace -o json that are no step:\n%s", strings.Join(tr.bad, "\n"))
	}
}

func dump(steps []trace.Step) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%s  %-26s %s\n", s.Time.Format("15:04:05.000"), trace.Who(s), trace.What(s))
	}
	return b.String()
}

// index returns the index of the first step after from that ok accepts, -1 if none.
func index(steps []trace.Step, from int, ok func(trace.Step) bool) int {
	for i := from; i < len(steps); i++ {
		if ok(steps[i]) {
			return i
		}
	}
	return -1
}

// TestTrace checks `kubeforge trace -o json` on the flow workshops teach: `kubectl create
// deployment web --replicas=3` on a 3-node cluster yields, in causal order, kubectl's create, the
// deployment controller's ReplicaSet, the replicaset controller's 3 Pods, the scheduler's 3
// bindings to the nodes the pods really run on and a Running report by each of those nodes'
// kubelets; a container killed in its node yields its kubelet's restart report; a stopped node
// yields the node lifecycle controller's NotReady, the eviction of its pod, the replicaset
// controller's new pod and the scheduler's binding of it to another node.
func TestTrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-trace"
	e.deleteOnCleanup(name)
	// Pods of a stopped node are evicted 20 s after it stops answering (the subtest below).
	e.ok(ctx, "start", "--name", name, "--nodes", "3", "--pod-eviction-timeout", "20s")
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)

	// --why: the scheduler's reasons too (its verbosity raised while the trace runs).
	tr := e.startTrace(ctx, "--name", name, "--why")
	defer tr.stop(t)
	e.ok(ctx, "kubectl", "--name", name, "--", "create", "deployment", "web", "--image="+BusyboxImage, "--replicas=3",
		"--", "sleep", "1000000")

	// Every step of the flow, up to the third pod reported Running.
	running := func(s trace.Step) bool {
		return s.Component == trace.ComponentKubelet && s.Resource == "pods/status" && s.Phase == "Running" &&
			strings.HasPrefix(s.Name, "web-")
	}
	steps, err := tr.waitFor(ctx, 3*time.Minute, func(steps []trace.Step) bool {
		seen := map[string]bool{}
		for _, s := range steps {
			if running(s) {
				seen[s.Name] = true
			}
		}
		return len(seen) == 3
	})
	if err != nil {
		t.Fatalf("no Running report of 3 web pods in the trace: %v\n%s\nstderr:\n%s", err, dump(steps), tr.stderrText())
	}
	t.Logf("trace:\n%s", dump(steps))

	// Where the pods really run, as kubectl says.
	wide := e.ok(ctx, "kubectl", "--name", name, "--", "get", "pods", "-l", "app=web", "-o", "wide", "--no-headers").Stdout
	nodeOf := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(wide), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			t.Fatalf("kubectl get pods -o wide: %q", line)
		}
		nodeOf[f[0]] = f[6]
	}
	if len(nodeOf) != 3 {
		t.Fatalf("kubectl get pods -o wide lists %d web pods:\n%s", len(nodeOf), wide)
	}

	create := index(steps, 0, func(s trace.Step) bool {
		return s.Component == trace.ComponentKubectl && s.Verb == "create" && s.Resource == "deployments" &&
			s.Namespace == "default" && s.Name == "web"
	})
	if create < 0 {
		t.Fatalf("no create of deployment web by kubectl:\n%s", dump(steps))
	}
	if d := steps[create]; d.EtcdKey != "/registry/deployments/default/web" || d.ResourceVersion == "" {
		t.Errorf("kubectl's create: etcd key %q, resourceVersion %q", d.EtcdKey, d.ResourceVersion)
	}
	rsi := index(steps, create+1, func(s trace.Step) bool {
		return s.Component == trace.ComponentDeploymentController && s.Verb == "create" && s.Resource == "replicasets" &&
			s.Cause != nil && *s.Cause == (trace.Ref{Kind: "Deployment", Name: "web"})
	})
	if rsi < 0 {
		t.Fatalf("no ReplicaSet created by the deployment controller for deployment web after kubectl's create:\n%s", dump(steps))
	}
	rs := steps[rsi].Name
	for pod, node := range nodeOf {
		pi := index(steps, rsi+1, func(s trace.Step) bool {
			return s.Component == trace.ComponentReplicaSetController && s.Verb == "create" && s.Resource == "pods" &&
				s.Name == pod && s.Cause != nil && *s.Cause == (trace.Ref{Kind: "ReplicaSet", Name: rs})
		})
		if pi < 0 {
			t.Errorf("no create of pod %s by the replicaset controller (owner ReplicaSet %s) after the ReplicaSet's:\n%s", pod, rs, dump(steps))
			continue
		}
		if p := steps[pi]; p.EtcdKey != "/registry/pods/default/"+pod || p.ResourceVersion == "" || p.Phase != "Pending" {
			t.Errorf("pod %s's create: %+v", pod, p)
		}
		bi := index(steps, pi+1, func(s trace.Step) bool {
			return s.Resource == "pods/binding" && s.Name == pod
		})
		if bi < 0 {
			t.Errorf("no binding of pod %s after its create:\n%s", pod, dump(steps))
			continue
		}
		if b := steps[bi]; b.Component != trace.ComponentScheduler || b.Node != node {
			t.Errorf("pod %s runs on %s (kubectl get pods -o wide), its binding says %s by %s", pod, node, b.Node, b.Component)
		}
		ri := index(steps, bi+1, func(s trace.Step) bool { return running(s) && s.Name == pod })
		if ri < 0 {
			t.Errorf("no Running report of pod %s after its binding:\n%s", pod, dump(steps))
			continue
		}
		if r := steps[ri]; r.Node != node || r.Actor != "system:node:"+node {
			t.Errorf("pod %s on %s reported Running by %s (%s)", pod, node, r.Actor, trace.Who(r))
		}
		if steps[ri].Time.Before(steps[pi].Time) {
			t.Errorf("pod %s: Running at %s before its create at %s", pod, steps[ri].Time, steps[pi].Time)
		}
	}
	// --why: each pod's decision, by the scheduler: the two workers fit and are scored (the
	// chosen one highest), the tainted control plane is filtered out, and the chosen node is the
	// one the pod runs on.
	for pod, node := range nodeOf {
		di := index(steps, 0, func(s trace.Step) bool { return s.Verb == trace.VerbSchedule && s.Name == pod })
		if di < 0 {
			t.Errorf("no scheduling decision for pod %s (trace --why):\n%s", pod, dump(steps))
			continue
		}
		s, d := steps[di], steps[di].Decision
		if s.Component != trace.ComponentScheduler || s.Node != node || d == nil || d.Evaluated != 3 || d.Feasible != 2 || len(d.Scores) != 2 {
			t.Errorf("pod %s runs on %s; the scheduler's decision: %s %+v", pod, node, trace.What(s), d)
			continue
		}
		if d.Scores[0].Node != node || d.Scores[0].Total < d.Scores[1].Total || len(d.Scores[0].Plugins) == 0 {
			t.Errorf("pod %s on %s: scores %+v, want the chosen node first and highest, with its plugins' parts", pod, node, d.Scores)
		}
		if len(d.Filtered) != 1 || d.Filtered[0].Node != name || d.Filtered[0].Plugin != "TaintToleration" {
			t.Errorf("pod %s: filtered %+v, want the control plane %s by TaintToleration", pod, d.Filtered, name)
		}
	}
	for _, reason := range []string{"Scheduled", "Pulled", "Created", "Started"} {
		if index(steps, 0, func(s trace.Step) bool { return s.Resource == "events" && s.Reason == reason }) < 0 {
			t.Errorf("no %s event in the trace", reason)
		}
	}

	t.Run("a killed container yields its kubelet's restart", func(t *testing.T) {
		e := e.sub(t)
		var pod, node string
		for p, n := range nodeOf {
			pod, node = p, n
			break
		}
		id := strings.TrimSpace(e.ok(ctx, "ssh", "--name", name, node, "--", "crictl", "ps", "-q", "--label", "io.kubernetes.pod.name="+pod).Stdout)
		if id == "" {
			t.Fatalf("no container of pod %s on %s", pod, node)
		}
		from := len(tr.snapshot())
		e.ok(ctx, "ssh", "--name", name, node, "--", "ctr", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id)
		steps, err := tr.waitFor(ctx, 2*time.Minute, func(steps []trace.Step) bool {
			return index(steps, from, func(s trace.Step) bool {
				return running(s) && s.Name == pod && s.Restarts >= 1 && s.Node == node
			}) >= 0
		})
		if err != nil {
			t.Fatalf("no restart report of pod %s by the kubelet of %s: %v\n%s", pod, node, err, dump(steps[from:]))
		}
		t.Logf("after the kill:\n%s", dump(steps[from:]))
	})

	t.Run("a stopped node yields NotReady, the eviction, a new pod and its binding elsewhere", func(t *testing.T) {
		e := e.sub(t)
		var pod, node string
		for p, n := range nodeOf {
			if n != name { // a worker: the control plane keeps answering
				pod, node = p, n
				break
			}
		}
		if pod == "" {
			t.Fatalf("no web pod on a worker: %v", nodeOf)
		}
		from := len(tr.snapshot())
		e.ok(ctx, "node", "stop", node, "--name", name)
		var notReady, evicted, created, bound int
		steps, err := tr.waitFor(ctx, 3*time.Minute, func(steps []trace.Step) bool {
			notReady = index(steps, from, func(s trace.Step) bool {
				return s.Component == trace.ComponentNodeLifecycle && s.Kind == "Node" && s.Name == node &&
					strings.Contains(s.Message, "Ready=Unknown")
			})
			if notReady < 0 {
				return false
			}
			evicted = index(steps, notReady+1, func(s trace.Step) bool {
				return s.Resource == "pods" && s.Verb == "delete" && s.Name == pod
			})
			if evicted < 0 {
				return false
			}
			created = index(steps, evicted+1, func(s trace.Step) bool {
				return s.Component == trace.ComponentReplicaSetController && s.Verb == "create" && s.Resource == "pods" &&
					strings.HasPrefix(s.Name, "web-")
			})
			if created < 0 {
				return false
			}
			bound = index(steps, created+1, func(s trace.Step) bool {
				return s.Resource == "pods/binding" && s.Name == steps[created].Name
			})
			return bound >= 0
		})
		if err != nil {
			t.Fatalf("after node %s stopped, no NotReady by the node lifecycle controller, eviction of pod %s, new pod by the replicaset controller and its binding, in that order: %v\n%s",
				node, pod, err, dump(steps[from:]))
		}
		t.Logf("after the node stop:\n%s", dump(steps[from:]))
		if ev := steps[evicted]; ev.Component == trace.ComponentKubectl || ev.Component == trace.ComponentKubeforge {
			t.Errorf("pod %s deleted by %s, want a controller of the control plane", pod, trace.Who(ev))
		}
		if b := steps[bound]; b.Component != trace.ComponentScheduler || b.Node == node || b.Node == "" {
			t.Errorf("the new pod %s bound by %s to %q, want the scheduler and a node other than the stopped %s", b.Name, b.Component, b.Node, node)
		}
		// --why: the stopped node was turned down (its unreachable taint), the other worker chosen.
		newPod := steps[created].Name
		steps, err = tr.waitFor(ctx, time.Minute, func(steps []trace.Step) bool {
			return index(steps, from, func(s trace.Step) bool { return s.Verb == trace.VerbSchedule && s.Name == newPod && s.Node != "" }) >= 0
		})
		if err != nil {
			t.Fatalf("no scheduling decision for the new pod %s: %v\n%s", newPod, err, dump(steps[from:]))
		}
		d := steps[index(steps, from, func(s trace.Step) bool { return s.Verb == trace.VerbSchedule && s.Name == newPod && s.Node != "" })]
		if d.Node != steps[bound].Node || !slices.ContainsFunc(d.Decision.Filtered, func(r trace.Rejection) bool { return r.Node == node }) {
			t.Errorf("the new pod %s: decision %s, want node %s chosen and the stopped %s filtered out", newPod, trace.What(d), steps[bound].Node, node)
		}
	})

	t.Run("the scheduler's verbosity is set back when the trace ends", func(t *testing.T) {
		e := e.sub(t)
		tr.stop(t)
		e.ok(ctx, "kubectl", "--name", name, "--", "run", "after-trace", "--image="+BusyboxImage, "--", "sleep", "1000000")
		e.ok(ctx, "kubectl", "--name", name, "--", "wait", "--for=condition=PodScheduled", "pod/after-trace", "--timeout=2m")
		logs := e.ok(ctx, "logs", "--name", name, "-c", "kube-scheduler").Stdout
		if !strings.Contains(logs, `"Plugin scored node for pod" pod="default/web-`) {
			t.Fatalf("the scheduler's log has no scores of the web pods: is it the log of the scheduler that ran during the trace?")
		}
		if strings.Contains(logs, `pod="default/after-trace"`) {
			t.Errorf("the scheduler still logs at verbosity 10 after the trace ended:\n%s", grepLines(logs, "after-trace"))
		}
	})
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
