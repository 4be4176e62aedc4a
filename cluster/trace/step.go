// Package trace turns the API server's audit events into the steps `kubeforge trace` shows:
// who (kubectl, a controller, the scheduler, a node's kubelet) wrote what (the object, its etcd
// key and the resourceVersion stored), on behalf of what (the owner), and what the kubelets
// reported (pod status, Events). Every step comes from one audit event; nothing is inferred.
package trace

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Step is one line of a trace, one write the API server answered. Its JSON field names are
// stable (`kubeforge trace -o json`).
type Step struct {
	// Time is when the API server finished the request (the audit event's stage timestamp).
	Time time.Time `json:"time"`
	// Component is who acted: kubectl, deployment-controller, replicaset-controller, scheduler,
	// kubelet, node-lifecycle-controller, garbage-collector, controller-manager, api-server,
	// kubeforge, or another client's user agent or user name (Who).
	Component string `json:"component"`
	// Actor is the authenticated user name (system:node:NODE, system:serviceaccount:...).
	Actor string `json:"actor"`
	// Verb is the API verb: create, update, patch, delete; or VerbSchedule.
	Verb string `json:"verb"`
	// Resource is the resource written, with its subresource (pods/binding, pods/status...).
	// For events (resource "events"), Namespace and Name are the object the event is about.
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Kind is the kind of the object Namespace/Name name (Pod, ReplicaSet...).
	Kind string `json:"kind,omitempty"`
	// EtcdKey is the key the object is stored under; ResourceVersion the version the API server
	// answered with (the etcd revision of that write), empty when the answer carries no object
	// (a binding answers with a Status).
	EtcdKey         string `json:"etcdKey,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Node is the node a binding assigns the pod to, or the node of the kubelet that acted.
	Node string `json:"node,omitempty"`
	// Cause is the object's controlling owner: the object whose controller made this one.
	Cause *Ref `json:"cause,omitempty"`
	// Phase is a pod's phase after the write.
	Phase string `json:"phase,omitempty"`
	// Restarts is the sum of a pod's containers' restart counts after the write (kubelet reports).
	Restarts int32 `json:"restarts,omitempty"`
	// Reason is an Event's reason (Scheduled, Pulled, Created, Started, Killing, BackOff...).
	Reason string `json:"reason,omitempty"`
	// Message says what was written, in words.
	Message string `json:"message,omitempty"`
	// Code is the HTTP status of a request the API server refused (409 Conflict...); 0 for success.
	Code int `json:"code,omitempty"`
	// Decision is the scheduler's reasoning, in a step of verb VerbSchedule (`trace --why`).
	Decision *Decision `json:"decision,omitempty"`
}

// Ref names an object.
type Ref struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// WriteJSON writes s as one line of JSON (NDJSON).
func WriteJSON(w io.Writer, s Step) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding a trace step: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText writes s as one line for people: the time (local, milliseconds), who acted, and
// what was written.
func WriteText(w io.Writer, s Step) error {
	_, err := fmt.Fprintf(w, "%s  %-26s %s\n", s.Time.Local().Format("15:04:05.000"), Who(s), What(s))
	return err
}

// Who is the step's actor for people: "kubelet kubeforge-m02", "scheduler"...
func Who(s Step) string {
	if s.Component == ComponentKubelet && s.Node != "" {
		return "kubelet " + s.Node
	}
	return s.Component
}

// What is what the step did, in words.
func What(s Step) string {
	obj := s.Kind
	if obj == "" {
		obj = s.Resource
	}
	obj += " " + qualified(s.Namespace, s.Name)
	var b strings.Builder
	sub := ""
	if i := strings.IndexByte(s.Resource, '/'); i >= 0 {
		sub = s.Resource[i+1:]
	}
	switch {
	case s.Verb == VerbSchedule && s.Node != "":
		fmt.Fprintf(&b, "chose node %s for %s", s.Node, obj)
	case s.Verb == VerbSchedule:
		fmt.Fprintf(&b, "found no node for %s", obj)
	case s.Resource == "events":
		fmt.Fprintf(&b, "event on %s: %s", obj, s.Reason)
	case sub == "binding":
		fmt.Fprintf(&b, "bound %s to node %s", obj, s.Node)
	case sub == "status":
		fmt.Fprintf(&b, "%s status of %s", pastTense(s.Verb), obj)
	case sub != "":
		fmt.Fprintf(&b, "%s %s of %s", pastTense(s.Verb), sub, obj)
	default:
		fmt.Fprintf(&b, "%s %s", pastTense(s.Verb), obj)
	}
	if s.Cause != nil && s.Resource != "events" && s.Verb == "create" {
		fmt.Fprintf(&b, " (owner %s %s)", s.Cause.Kind, s.Cause.Name)
	}
	if s.Code != 0 {
		fmt.Fprintf(&b, " REFUSED %d", s.Code)
	}
	if s.Message != "" {
		b.WriteString(": " + s.Message)
	}
	if s.EtcdKey != "" && s.Resource != "events" {
		b.WriteString("  [" + s.EtcdKey)
		if s.ResourceVersion != "" {
			b.WriteString(" rv " + s.ResourceVersion)
		}
		b.WriteString("]")
	}
	return b.String()
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func pastTense(verb string) string {
	switch verb {
	case "create":
		return "created"
	case "update":
		return "updated"
	case "patch":
		return "patched"
	case "delete":
		return "deleted"
	}
	return verb
}
