package trace

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// VerbSchedule is the verb of a step that is the scheduler's decision for a pod (`trace
// --why`), read from the scheduler's own log, not from the audit log: which nodes it filtered
// out and why, how each plugin scored each node that fits, and the node it chose. The binding
// the API server stored is the step that follows it (or, read later, precedes it).
const VerbSchedule = "schedule"

// SchedulerVerbosity is the log level at which the scheduler writes every plugin's score of
// every node (schedule_one.go: logger.V(10)).
const SchedulerVerbosity = "10"

// Decision is what the scheduler weighed for a pod, as its log says.
type Decision struct {
	// Evaluated and Feasible count the nodes the scheduler looked at and those that passed
	// every filter (0 when the pod could not be scheduled).
	Evaluated int `json:"evaluated"`
	Feasible  int `json:"feasible"`
	// Scores are the feasible nodes' scores, highest total first. None when one node was
	// feasible: the scheduler does not score a lone node.
	Scores []NodeScore `json:"scores,omitempty"`
	// Filtered are the filter verdicts the plugins logged, a node each (not every plugin logs
	// its verdicts: Evaluated-Feasible says how many nodes were filtered out in all).
	Filtered []Rejection `json:"filtered,omitempty"`
}

// NodeScore is a node's score for a pod: the total and each scoring plugin's (weighted) part.
type NodeScore struct {
	Node    string           `json:"node"`
	Total   int64            `json:"total"`
	Plugins map[string]int64 `json:"plugins"`
}

// Rejection is a filter plugin's verdict that a node does not fit a pod.
type Rejection struct {
	Node   string `json:"node"`
	Plugin string `json:"plugin"`
	Reason string `json:"reason"`
}

// SchedulerLog turns the lines of the scheduler's log at SchedulerVerbosity into steps, one per
// scheduling attempt that ended (bound, or no node fits). Feed it the lines in order.
type SchedulerLog struct {
	year    int
	pending map[string]*attempt // by namespace/name
}

type attempt struct {
	decided  time.Time // the last final score: when the node was chosen
	scores   map[string]*NodeScore
	filtered []Rejection
}

// NewSchedulerLog reads lines written in year (klog's header has none).
func NewSchedulerLog(year int) *SchedulerLog {
	return &SchedulerLog{year: year, pending: map[string]*attempt{}}
}

// maxPending bounds the attempts kept while waiting for their end (a pod deleted mid-attempt
// has none).
const maxPending = 1000

// Line reads one line; a step when it ends a scheduling attempt.
func (l *SchedulerLog) Line(line string) (Step, bool) {
	kl, ok := parseKlog(line, l.year)
	if !ok {
		return Step{}, false
	}
	pod := kl.KV["pod"]
	ns, name, ok := strings.Cut(pod, "/")
	if !ok {
		return Step{}, false
	}
	a := l.pending[pod]
	switch kl.Msg {
	case "Attempting to schedule pod":
		if len(l.pending) >= maxPending {
			clear(l.pending)
		}
		l.pending[pod] = &attempt{scores: map[string]*NodeScore{}}
		return Step{}, false
	case "Successfully bound pod to node", "Unable to schedule pod; no fit; waiting",
		"Unable to schedule pod; no nodes are registered to the cluster; waiting",
		"Unable to schedule pod belonging to a pod group; waiting":
		delete(l.pending, pod)
		return l.step(kl, ns, name, a), true
	}
	if a == nil {
		return Step{}, false
	}
	node := kl.KV["node"]
	switch {
	case node == "":
	case kl.Msg == "Plugin scored node for pod":
		score, err := strconv.ParseInt(kl.KV["score"], 10, 64)
		if err == nil && kl.KV["plugin"] != "" {
			a.score(node).Plugins[kl.KV["plugin"]] = score
		}
	case kl.Msg == "Calculated node's final score for pod":
		if score, err := strconv.ParseInt(kl.KV["score"], 10, 64); err == nil {
			a.score(node).Total = score
			a.decided = kl.Time
		}
	case isRejection(kl):
		plugin := kl.KV["logger"][strings.LastIndexByte(kl.KV["logger"], '.')+1:]
		if !slices.ContainsFunc(a.filtered, func(r Rejection) bool { return r.Node == node && r.Plugin == plugin }) {
			a.filtered = append(a.filtered, Rejection{Node: node, Plugin: plugin, Reason: reason(kl)})
		}
	}
	return Step{}, false
}

// passing are messages filter plugins log about a node that fits.
var passing = map[string]bool{
	"FindPodVolumes": true, "PersistentVolume and node matches for pod": true,
	"filtering based on resource claims of the pod": true, "Pod fits on node": true,
}

// isRejection says whether kl is a filter plugin's verdict that a node does not fit, in the
// scheduling cycle (FilterWithNominatedPods.Filter.PLUGIN or Filter.PLUGIN; not preemption's
// dry runs under PostFilter).
func isRejection(kl klogLine) bool {
	lg := kl.KV["logger"]
	return (strings.HasPrefix(lg, "Filter.") || strings.HasPrefix(lg, "FilterWithNominatedPods.Filter.")) && !passing[kl.Msg]
}

// compareBool orders true first.
func compareBool(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return -1
	}
	return 1
}

func (a *attempt) score(node string) *NodeScore {
	s := a.scores[node]
	if s == nil {
		s = &NodeScore{Node: node, Plugins: map[string]int64{}}
		a.scores[node] = s
	}
	return s
}

// reason is a filter verdict in words: the message and its details (pod, node and logger aside).
func reason(kl klogLine) string {
	var keys []string
	for k := range kl.KV {
		if k != "pod" && k != "node" && k != "logger" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b := kl.Msg
	for _, k := range keys {
		b += " " + k + "=" + kl.KV[k]
	}
	return b
}

func (l *SchedulerLog) step(kl klogLine, ns, name string, a *attempt) Step {
	s := Step{Time: kl.Time, Component: ComponentScheduler, Actor: "system:kube-scheduler", Verb: VerbSchedule,
		Resource: "pods", Namespace: ns, Name: name, Kind: "Pod", Node: kl.KV["node"]}
	d := &Decision{}
	d.Evaluated, _ = strconv.Atoi(kl.KV["evaluatedNodes"])
	d.Feasible, _ = strconv.Atoi(kl.KV["feasibleNodes"])
	if a != nil && !a.decided.IsZero() {
		s.Time = a.decided // before the binding, which the log's last line follows
	}
	if a != nil {
		for _, sc := range a.scores {
			d.Scores = append(d.Scores, *sc)
		}
		// Highest first; among equal totals (the scheduler picks one at random) the chosen.
		chosen := kl.KV["node"]
		slices.SortFunc(d.Scores, func(x, y NodeScore) int {
			return cmp.Or(cmp.Compare(y.Total, x.Total), compareBool(x.Node == chosen, y.Node == chosen), strings.Compare(x.Node, y.Node))
		})
		// A node that was scored (or chosen) passed every filter, whatever a plugin logged.
		for _, r := range a.filtered {
			if _, scored := a.scores[r.Node]; !scored && r.Node != chosen {
				d.Filtered = append(d.Filtered, r)
			}
		}
	}
	s.Decision = d
	s.Message = d.words(kl.KV["err"])
	return s
}

// words is the decision in one line: the chosen node's rivals, their scores, the filtered.
func (d *Decision) words(failure string) string {
	var b strings.Builder
	if failure != "" {
		b.WriteString("no node fits: " + failure)
	} else {
		fmt.Fprintf(&b, "%d of %d nodes fit", d.Feasible, d.Evaluated)
	}
	if len(d.Scores) > 0 {
		b.WriteString("; scores:")
		for i, sc := range d.Scores {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %d", sc.Node, sc.Total)
			var parts []string
			for p, v := range sc.Plugins {
				if v != 0 {
					parts = append(parts, fmt.Sprintf("%s %d", p, v))
				}
			}
			slices.Sort(parts)
			if len(parts) > 0 {
				b.WriteString(" (" + strings.Join(parts, ", ") + ")")
			}
		}
	}
	if len(d.Filtered) > 0 {
		b.WriteString("; filtered out:")
		for i, r := range d.Filtered {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s by %s (%s)", r.Node, r.Plugin, r.Reason)
		}
	}
	return b.String()
}
