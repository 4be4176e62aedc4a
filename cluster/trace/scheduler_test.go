package trace

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSchedulerLog reads a real kube-scheduler log at verbosity 10 (a 3-replica Deployment on a
// control plane and two workers, then a pod whose node selector no node has) into one step per
// attempt: the chosen node, the plugins' scores of both workers, the tainted control plane
// filtered out.
func TestSchedulerLog(t *testing.T) {
	f, err := os.Open("testdata/scheduler.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := NewSchedulerLog(2026)
	var steps []Step
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if s, ok := l.Line(sc.Text()); ok {
			steps = append(steps, s)
		}
	}
	if len(steps) != 4 {
		t.Fatalf("%d steps, want 4: %+v", len(steps), steps)
	}
	wantNodes := []string{"kfv-m02", "kfv-m03", "kfv-m02", ""}
	for i, s := range steps[:3] {
		d := s.Decision
		if s.Verb != VerbSchedule || s.Component != ComponentScheduler || s.Namespace != "default" || !strings.HasPrefix(s.Name, "web-") ||
			s.Node != wantNodes[i] || d == nil || d.Evaluated != 3 || d.Feasible != 2 || len(d.Scores) != 2 {
			t.Fatalf("step %d: %+v %+v", i, s, d)
		}
		if d.Scores[0].Node != s.Node || d.Scores[0].Total < d.Scores[1].Total {
			t.Errorf("step %d: chose %s, scores %+v: the chosen node scores highest, first", i, s.Node, d.Scores)
		}
		var sum int64
		for _, v := range d.Scores[0].Plugins {
			sum += v
		}
		if sum != d.Scores[0].Total || d.Scores[0].Plugins["TaintToleration"] != 300 {
			t.Errorf("step %d: plugins %v sum to %d, total %d", i, d.Scores[0].Plugins, sum, d.Scores[0].Total)
		}
		if len(d.Filtered) != 1 || d.Filtered[0].Node != "kfv" || d.Filtered[0].Plugin != "TaintToleration" ||
			!strings.Contains(d.Filtered[0].Reason, "node-role.kubernetes.io/control-plane") {
			t.Errorf("step %d: filtered %+v", i, d.Filtered)
		}
		if s.Time.Year() != 2026 || s.Time.Month() != time.December || s.Time.Day() != 7 {
			t.Errorf("step %d: time %s", i, s.Time)
		}
		t.Logf("%s %s", Who(s), What(s))
	}
	// The first pod: kfv-m02 594 against kfv-m03 591.
	if d := steps[0].Decision; d.Scores[0].Total != 594 || d.Scores[1].Node != "kfv-m03" || d.Scores[1].Total != 591 {
		t.Errorf("first pod: %+v", d.Scores)
	}
	nf := steps[3]
	if nf.Name != "nofit" || nf.Node != "" || !strings.Contains(nf.Message, "no node fits: 0/3 nodes are available") ||
		!strings.Contains(What(nf), "found no node for Pod default/nofit") || len(nf.Decision.Filtered) != 1 {
		t.Errorf("unschedulable pod: %+v %+v", nf, nf.Decision)
	}
	t.Logf("%s %s", Who(nf), What(nf))
}

func TestParseKlog(t *testing.T) {
	l, ok := parseKlog(`I1207 21:56:36.581670       1 taint_toleration.go:132] "node had \"untolerated\" taints" logger="A.Filter.B" pod="default/x" node="kfv" untoleratedTaint={"key":"a b","effect":"NoSchedule"} n=3 list=[1, 2] tail`, 2026)
	if !ok || l.Msg != `node had "untolerated" taints` || l.KV["logger"] != "A.Filter.B" || l.KV["node"] != "kfv" ||
		l.KV["untoleratedTaint"] != `{"key":"a b","effect":"NoSchedule"}` || l.KV["n"] != "3" || l.KV["list"] != "[1, 2]" {
		t.Errorf("%+v %v", l, ok)
	}
	if want := time.Date(2026, 12, 7, 21, 56, 36, 581670000, time.UTC); !l.Time.Equal(want) {
		t.Errorf("time %s, want %s", l.Time, want)
	}
	for _, bad := range []string{"", "\t00000010  69 6e 67", `I1207 21:56:36.581670       1 x.go:1] unstructured`, "> headers"} {
		if _, ok := parseKlog(bad, 2026); ok {
			t.Errorf("parseKlog(%q) accepted", bad)
		}
	}
}

// TestSchedulerLogTieAndPasses: among equal totals the chosen node comes first; a filter
// plugin's line about a node that fits (VolumeBinding's) or about a node that was scored is no
// rejection; preemption's dry runs are not either.
func TestSchedulerLogTieAndPasses(t *testing.T) {
	const h = `I1207 10:00:00.000000       1 x.go:1] `
	lines := []string{
		h + `"Attempting to schedule pod" pod="ns/p"`,
		h + `"FindPodVolumes" logger="FilterWithNominatedPods.Filter.VolumeBinding" pod="ns/p" node="b"`,
		h + `"node had untolerated taints" logger="FilterWithNominatedPods.Filter.TaintToleration" pod="ns/p" node="c" untoleratedTaint={}`,
		h + `"node had untolerated taints" logger="FilterWithNominatedPods.Filter.TaintToleration" pod="ns/p" node="c" untoleratedTaint={}`,
		h + `"odd" logger="PostFilter.DefaultPreemption.FilterWithNominatedPods.Filter.NodePorts" pod="ns/p" node="d"`,
		h + `"Plugin scored node for pod" pod="ns/p" plugin="A" node="a" score=10`,
		h + `"Plugin scored node for pod" pod="ns/p" plugin="A" node="b" score=10`,
		h + `"Calculated node's final score for pod" pod="ns/p" node="a" score=10`,
		h + `"Calculated node's final score for pod" pod="ns/p" node="b" score=10`,
		h + `"Successfully bound pod to node" pod="ns/p" node="b" evaluatedNodes=3 feasibleNodes=2`,
	}
	l := NewSchedulerLog(2026)
	var got []Step
	for _, line := range lines {
		if s, ok := l.Line(line); ok {
			got = append(got, s)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d steps: %+v", len(got), got)
	}
	d := got[0].Decision
	if d.Scores[0].Node != "b" || len(d.Filtered) != 1 || d.Filtered[0].Node != "c" {
		t.Errorf("scores %+v filtered %+v: want b (chosen) first and only c filtered", d.Scores, d.Filtered)
	}
}
