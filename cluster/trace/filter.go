package trace

import (
	"fmt"
	"strings"
)

// Filter selects the steps of a namespace and, optionally, of one object and everything its
// controllers make from it (the owner references of the stored objects, followed as they appear).
type Filter struct {
	// Namespace selects the steps of one namespace ("" for every namespace); steps of
	// cluster-scoped objects (nodes) are always kept.
	Namespace string
	// follow holds the followed objects (lower-case kind "/" name); nil follows everything.
	follow map[string]bool
	// kind and name are the object asked for; kind "" matches any kind.
	kind, name string
}

// kindAliases maps what users type (kubectl's names) to kinds.
var kindAliases = map[string]string{
	"deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
	"replicaset": "ReplicaSet", "replicasets": "ReplicaSet", "rs": "ReplicaSet",
	"pod": "Pod", "pods": "Pod", "po": "Pod",
	"node": "Node", "nodes": "Node", "no": "Node",
}

// NewFilter returns the filter of namespace and object: "" (everything), NAME (any kind) or
// KIND/NAME (deployment/web, rs/web-5d8f7, pod/x, node/y).
func NewFilter(namespace, object string) (*Filter, error) {
	f := &Filter{Namespace: namespace}
	if object == "" {
		return f, nil
	}
	kind, name, found := strings.Cut(object, "/")
	if !found {
		kind, name = "", object
	} else {
		k, ok := kindAliases[strings.ToLower(kind)]
		if !ok {
			return nil, fmt.Errorf("%q: trace follows deployment/NAME, replicaset/NAME, pod/NAME, node/NAME or NAME", object)
		}
		kind = k
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%q: give KIND/NAME or NAME", object)
	}
	f.kind, f.name = kind, name
	f.follow = map[string]bool{}
	return f, nil
}

func key(kind, name string) string { return strings.ToLower(kind) + "/" + name }

// Keep says whether s is shown, and remembers the objects s shows were made by a followed one.
func (f *Filter) Keep(s Step) bool {
	if f.Namespace != "" && s.Namespace != "" && s.Namespace != f.Namespace {
		return false
	}
	if f.follow == nil {
		return true
	}
	if s.Name == f.name && (f.kind == "" || s.Kind == f.kind) {
		f.follow[key(s.Kind, s.Name)] = true
		return true
	}
	if f.follow[key(s.Kind, s.Name)] {
		return true
	}
	if s.Cause != nil && f.follow[key(s.Cause.Kind, s.Cause.Name)] && s.Resource != "events" {
		f.follow[key(s.Kind, s.Name)] = true
		return true
	}
	return false
}
