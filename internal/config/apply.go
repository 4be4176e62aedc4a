package config

import (
	"kubeforge.dev/kubeforge/internal/versions"

	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"kubeforge.dev/kubeforge/internal/spec"
)

// Scalar is a value that may be written as a string, a number or a boolean (cpus: 2 and
// cpus: "2" are the same); what it means depends on the field.
type Scalar struct{ raw []byte }

// UnmarshalJSON keeps the value as written; Apply checks it, knowing its path.
func (s *Scalar) UnmarshalJSON(b []byte) error {
	s.raw = bytes.Clone(b)
	return nil
}

// MarshalJSON writes the value back as it was read.
func (s Scalar) MarshalJSON() ([]byte, error) {
	if len(s.raw) == 0 {
		return []byte("null"), nil
	}
	return s.raw, nil
}

// IsSet says whether the file gave the field a value (not left out, not null).
func (s Scalar) IsSet() bool { return len(s.raw) > 0 && string(s.raw) != "null" }

// text is the value as written: a string's content, a number's or a boolean's text.
func (s Scalar) text() (string, error) {
	if !s.IsSet() {
		return "", errors.New(`has no value (write "" for an empty one)`)
	}
	switch s.raw[0] {
	case '"':
		var v string
		if err := json.Unmarshal(s.raw, &v); err != nil {
			return "", fmt.Errorf("is not a string: %v", err)
		}
		return v, nil
	case '{':
		return "", errors.New("got a mapping, want a string, a number or a boolean")
	case '[':
		return "", errors.New("got a list, want a string, a number or a boolean")
	}
	return string(s.raw), nil
}

// boolean is the value as true or false (the strings "true" and "false" too).
func (s Scalar) boolean() (bool, error) {
	t, err := s.text()
	if err != nil {
		return false, err
	}
	switch t {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", t)
}

// duration is the value as a duration ("30s", "5m", "1h30m").
func (s Scalar) duration() (time.Duration, error) {
	t, err := s.text()
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number and a unit, e.g. 30s, 5m or 1h30m", t)
	}
	return d, nil
}

// Apply sets on c what the file sets, and leaves the rest; c is usually spec.Default(""). Nodes
// are named after the cluster. The result is not validated yet: flags may still change it, then
// spec.Validate checks it (and Explain points its errors at the file).
func (f *File) Apply(c *spec.Cluster) error {
	fc := f.Cluster
	var errs []error
	fail := func(path string, err error) { errs = append(errs, f.err(path, "%v", err)) }
	if fc.Name != "" {
		c.Name = fc.Name
	}
	if fc.KubernetesVersion != "" {
		if r, err := versions.Resolve(fc.KubernetesVersion); err != nil {
			fail("kubernetesVersion", err)
		} else {
			c.KubernetesVersion = r.Kubernetes
		}
	}
	if fc.Image != "" {
		c.Image = fc.Image
	}
	if fc.APIServerPort != 0 {
		c.APIServerPort = fc.APIServerPort
	}
	if fc.Wait.IsSet() {
		d, err := fc.Wait.duration()
		if err == nil && d <= 0 {
			err = fmt.Errorf("%s: use a positive duration such as 5m", d)
		}
		if err != nil {
			fail("wait", err)
		}
		c.Wait = d
	}
	if fc.PodEvictionTimeout.IsSet() {
		d, err := fc.PodEvictionTimeout.duration()
		if err != nil {
			fail("podEvictionTimeout", err)
		}
		c.PodEvictionTimeout = d
	}
	if fc.PodSubnet != "" {
		c.PodSubnet = fc.PodSubnet
	}
	if fc.ServiceSubnet != "" {
		c.ServiceSubnet = fc.ServiceSubnet
	}
	c.FeatureGates = mergeGates(c.FeatureGates, fc.FeatureGates, fail)
	c.ExtraArgs = mergeArgs(c.ExtraArgs, fc.ExtraArgs, fail)
	if len(fc.Ports) > 0 {
		c.Ports = make([]spec.PortMapping, len(fc.Ports))
		for i, p := range fc.Ports {
			c.Ports[i] = spec.PortMapping{HostPort: p.HostPort, NodePort: p.NodePort}
		}
	}
	if len(fc.Nodes) > 0 {
		c.Nodes = nodes(fc.Nodes, fail)
	}
	for _, a := range fc.Addons {
		if !slices.Contains(c.Addons, a) {
			c.Addons = append(c.Addons, a)
		}
	}
	if fc.Registry.IsSet() {
		on, err := fc.Registry.boolean()
		if err != nil {
			fail("registry", err)
		}
		c.Registry = on
	}
	if fc.Ingress != nil {
		c.Ingress = &spec.IngressPorts{HTTP: fc.Ingress.HTTPPort, HTTPS: fc.Ingress.HTTPSPort}
	}
	*c = c.WithName(c.Name)
	return errors.Join(errs...)
}

func mergeGates(into map[string]bool, gates map[string]Scalar, fail func(string, error)) map[string]bool {
	for _, name := range slices.Sorted(maps.Keys(gates)) {
		on, err := gates[name].boolean()
		if err != nil {
			fail("featureGates."+name, err)
			continue
		}
		if into == nil {
			into = map[string]bool{}
		}
		into[name] = on
	}
	return into
}

func mergeArgs(into map[string]map[string]string, args map[string]map[string]Scalar, fail func(string, error)) map[string]map[string]string {
	for _, component := range slices.Sorted(maps.Keys(args)) {
		// Even an empty entry names a component, which spec.Validate checks.
		if into == nil {
			into = map[string]map[string]string{}
		}
		if into[component] == nil {
			into[component] = map[string]string{}
		}
		for _, flag := range slices.Sorted(maps.Keys(args[component])) {
			v, err := args[component][flag].text()
			if err != nil {
				fail("extraArgs."+component+"."+flag, err)
				continue
			}
			into[component][flag] = v
		}
	}
	return into
}

// nodes are the file's nodes as spec nodes (named later). A node without a role is a control
// plane if it is the first, else a worker.
func nodes(ns []Node, fail func(string, error)) []spec.Node {
	out := make([]spec.Node, len(ns))
	for i, n := range ns {
		p := fmt.Sprintf("nodes[%d]", i)
		sn := spec.Node{Role: spec.Role(n.Role)}
		if sn.Role == "" {
			sn.Role = spec.RoleWorker
			if i == 0 {
				sn.Role = spec.RoleControlPlane
			}
		}
		var err error
		if n.CPUs.IsSet() {
			if sn.CPUs, err = n.CPUs.text(); err != nil {
				fail(p+".cpus", err)
			}
		}
		if n.Memory.IsSet() {
			if sn.Memory, err = n.Memory.text(); err != nil {
				fail(p+".memory", err)
			}
		}
		for _, m := range n.Mounts {
			sn.Mounts = append(sn.Mounts, spec.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
		}
		out[i] = sn
	}
	return out
}

// ToSpec is the spec the file describes on its own (no flags): spec.Default with the file's
// settings, validated, errors pointing at the file.
func (f *File) ToSpec() (spec.Cluster, error) {
	c := spec.Default("")
	if err := f.Apply(&c); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, f.Explain(err, nil)
	}
	return c, nil
}
