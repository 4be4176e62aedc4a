package trace

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// EtcdPrefix is the API server's --etcd-prefix (its default, which kubeforge keeps).
const EtcdPrefix = "/registry"

// etcdResource maps the resources whose etcd directory is not their name.
var etcdResource = map[string]string{
	"nodes":    "minions",
	"services": "services/specs",
}

// EtcdKey is the key the API server stores an object of resource (without subresource) under.
func EtcdKey(resource, namespace, name string) string {
	if name == "" {
		return ""
	}
	dir := resource
	if d, ok := etcdResource[resource]; ok {
		dir = d
	}
	if namespace == "" {
		return EtcdPrefix + "/" + dir + "/" + name
	}
	return EtcdPrefix + "/" + dir + "/" + namespace + "/" + name
}

// ParseAudit decodes one line of the API server's JSON audit log.
func ParseAudit(line []byte) (auditv1.Event, error) {
	var ev auditv1.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return ev, fmt.Errorf("reading an audit event: %w", err)
	}
	return ev, nil
}

// kinds maps resources to their kinds, for people.
var kinds = map[string]string{
	"pods": "Pod", "deployments": "Deployment", "replicasets": "ReplicaSet", "nodes": "Node",
	"events": "Event",
}

// object is what trace reads of a request's or response's object: the metadata of any object, a
// Binding's target, a pod's status, an Event's fields (core/v1 and events.k8s.io/v1).
type object struct {
	Kind     string            `json:"kind"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	// Binding.
	Target *corev1.ObjectReference `json:"target"`
	// Pod (nodeName), Node (taints).
	Spec *struct {
		NodeName string         `json:"nodeName"`
		Taints   []corev1.Taint `json:"taints"`
		Replicas *int32         `json:"replicas"`
	} `json:"spec"`
	// Status of a pod, a Deployment or ReplicaSet, a Node: decoded by the resource's kind.
	Status json.RawMessage `json:"status"`
	// Event (core/v1, events.k8s.io/v1).
	InvolvedObject *corev1.ObjectReference `json:"involvedObject"`
	Regarding      *corev1.ObjectReference `json:"regarding"`
	Reason         string                  `json:"reason"`
	Message        string                  `json:"message"`
	Note           string                  `json:"note"`
	Source         *corev1.EventSource     `json:"source"`
	ReportingComp  string                  `json:"reportingComponent"`
	ReportingCtrl  string                  `json:"reportingController"`
	ReportingInst  string                  `json:"reportingInstance"`
}

// FromAudit turns an audit event into a step; ok is false for events that are no step (other
// stages than ResponseComplete, reads, requests without an object).
func FromAudit(ev auditv1.Event) (s Step, ok bool) {
	if ev.Stage != auditv1.StageResponseComplete || ev.ObjectRef == nil || ev.ObjectRef.Resource == "" {
		return s, false
	}
	switch ev.Verb {
	case "create", "update", "patch", "delete":
	default:
		return s, false
	}
	ref := ev.ObjectRef
	s = Step{
		Time:      ev.StageTimestamp.Time,
		Actor:     ev.User.Username,
		Verb:      ev.Verb,
		Resource:  ref.Resource,
		Namespace: ref.Namespace,
		Name:      ref.Name,
		Kind:      kinds[ref.Resource],
	}
	if s.Time.IsZero() {
		s.Time = ev.RequestReceivedTimestamp.Time
	}
	s.Component, s.Node = Component(ev.User.Username, ev.UserAgent)
	if ref.Subresource != "" {
		s.Resource += "/" + ref.Subresource
	}
	if st := ev.ResponseStatus; st != nil && st.Code >= 300 {
		s.Code = int(st.Code)
		s.Message = st.Message
	}
	req, resp := unknown(ev.RequestObject), unknown(ev.ResponseObject)
	if resp != nil && resp.Kind != "Status" {
		// The stored object: the name the API server generated, the version it stored.
		if resp.Metadata.Name != "" {
			s.Name = resp.Metadata.Name
		}
		s.ResourceVersion = resp.Metadata.ResourceVersion
		if c := metav1.GetControllerOfNoCopy(&resp.Metadata); c != nil {
			s.Cause = &Ref{Kind: c.Kind, Name: c.Name}
		}
	} else if req != nil && req.Metadata.Name != "" && s.Name == "" {
		s.Name = req.Metadata.Name
	}
	s.EtcdKey = EtcdKey(ref.Resource, ref.Namespace, s.Name)
	if s.Code != 0 {
		return s, true
	}
	switch {
	case ref.Resource == "events":
		fromEvent(&s, req, resp)
	case ref.Resource == "pods" && ref.Subresource == "binding":
		if req != nil && req.Target != nil {
			s.Node = req.Target.Name
		}
	case ref.Resource == "pods":
		var st corev1.PodStatus
		if resp != nil && resp.Kind != "Status" && decodeStatus(resp, &st) {
			s.Phase = string(st.Phase)
			for _, cs := range st.ContainerStatuses {
				s.Restarts += cs.RestartCount
			}
			s.Message = podStatus(resp, st)
		}
		if ev.Verb == "delete" && resp != nil && resp.Kind != "Status" && resp.Metadata.DeletionTimestamp != nil {
			s.Message = strings.TrimSuffix("marked for deletion; "+s.Message, "; ")
		}
	case ref.Resource == "deployments" || ref.Resource == "replicasets":
		if resp != nil && resp.Kind != "Status" {
			if ref.Subresource == "status" {
				s.Message = workloadStatus(resp)
			} else if resp.Spec != nil && resp.Spec.Replicas != nil {
				s.Message = fmt.Sprintf("wants %d replicas", *resp.Spec.Replicas)
			}
		}
	case ref.Resource == "nodes":
		if req != nil {
			s.Message = nodeChange(req)
		}
	}
	return s, true
}

// unknown decodes an audit event's request or response object, nil when there is none.
func unknown(u *runtime.Unknown) *object {
	if u == nil || len(u.Raw) == 0 {
		return nil
	}
	var o object
	if err := json.Unmarshal(u.Raw, &o); err != nil {
		return nil // a patch body or an object trace does not read: no details, the step stays
	}
	return &o
}

func fromEvent(s *Step, req, resp *object) {
	e := resp
	if e == nil {
		e = req
	}
	if e == nil {
		return
	}
	about := e.InvolvedObject
	if about == nil || about.Name == "" {
		about = e.Regarding
	}
	if about != nil {
		s.Kind, s.Namespace, s.Name = about.Kind, about.Namespace, about.Name
	}
	s.Reason = e.Reason
	s.Message = e.Message
	if s.Message == "" {
		s.Message = e.Note
	}
	// The event's reporter: kubelets report with their node's name.
	if e.Source != nil && e.Source.Host != "" && s.Node == "" {
		s.Node = e.Source.Host
	}
}

func decodeStatus(o *object, into any) bool {
	return len(o.Status) > 0 && json.Unmarshal(o.Status, into) == nil
}

// podStatus describes a pod's status as stored: its phase, node and each container's state.
func podStatus(p *object, st corev1.PodStatus) string {
	parts := []string{"phase " + string(st.Phase)}
	if p.Spec != nil && p.Spec.NodeName != "" {
		parts[0] += " on " + p.Spec.NodeName
	}
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			ready := "Ready=" + string(c.Status)
			if c.Reason != "" {
				ready += " (" + c.Reason + ")"
			}
			parts = append(parts, ready)
		}
	}
	for _, cs := range st.ContainerStatuses {
		var state string
		switch {
		case cs.State.Running != nil:
			state = "running since " + cs.State.Running.StartedAt.Time.Local().Format(time.TimeOnly)
		case cs.State.Waiting != nil:
			state = "waiting (" + cs.State.Waiting.Reason + ")"
		case cs.State.Terminated != nil:
			state = fmt.Sprintf("terminated (%s, exit code %d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		default:
			state = "no state yet"
		}
		if cs.RestartCount > 0 {
			state += fmt.Sprintf(", restarts %d", cs.RestartCount)
		}
		parts = append(parts, "container "+cs.Name+" "+state)
	}
	return strings.Join(parts, "; ")
}

// workloadStatus describes a Deployment's or ReplicaSet's replicas as stored.
func workloadStatus(o *object) string {
	var st struct {
		Replicas          *int32 `json:"replicas"`
		ReadyReplicas     int32  `json:"readyReplicas"`
		AvailableReplicas int32  `json:"availableReplicas"`
		UpdatedReplicas   int32  `json:"updatedReplicas"`
	}
	if !decodeStatus(o, &st) || st.Replicas == nil {
		return ""
	}
	return fmt.Sprintf("replicas %d, ready %d, available %d", *st.Replicas, st.ReadyReplicas, st.AvailableReplicas)
}

// nodeChange describes what a write to a Node asked to change: its taints, its conditions.
func nodeChange(o *object) string {
	var parts []string
	if o.Spec != nil && o.Spec.Taints != nil {
		var ts []string
		for _, t := range o.Spec.Taints {
			ts = append(ts, t.ToString())
		}
		if len(ts) == 0 {
			ts = []string{"none"}
		}
		parts = append(parts, "taints "+strings.Join(ts, ", "))
	}
	var st struct {
		Conditions []corev1.NodeCondition `json:"conditions"`
	}
	if decodeStatus(o, &st) {
		for _, c := range st.Conditions {
			if c.Status == "" {
				continue // a heartbeat of an unchanged condition
			}
			cond := fmt.Sprintf("%s=%s", c.Type, c.Status)
			if c.Reason != "" {
				cond += " (" + c.Reason + ")"
			}
			parts = append(parts, cond)
		}
	}
	return strings.Join(parts, "; ")
}
