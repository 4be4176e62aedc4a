// Package config reads kubeforge's cluster file (`kubeforge start --config cluster.yaml`): a
// versioned YAML format (apiVersion kubeforge.dev/v1alpha1, kind Cluster) that Apply turns into a
// spec.Cluster. The spec stays the one validated model; this package only maps the file onto it
// and points errors at the file's lines.
package config

import (
	"strings"

	"kubeforge.dev/kubeforge/internal/versions"

	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"kubeforge.dev/kubeforge/internal/strictyaml"
)

// The version of the file format this package reads.
const (
	APIVersion = "kubeforge.dev/v1alpha1"
	Kind       = "Cluster"
)

// MaxSize bounds a config file (a real one is a few KiB).
const MaxSize = 1 << 20

//go:embed example.yaml
var exampleTemplate string

// Example is a commented config file that sets every field (the supported Kubernetes versions
// come from internal/versions).
var Example = strings.NewReplacer(
	"${DEFAULT_VERSION}", versions.Default().Kubernetes,
	"${DEFAULT_MINOR}", versions.Default().Minor(),
	"${VERSIONS}", strings.Join(versions.Names(), ", "),
).Replace(exampleTemplate)

// Cluster is the file's content.
type Cluster struct {
	APIVersion         string                       `json:"apiVersion"`
	Kind               string                       `json:"kind"`
	Name               string                       `json:"name,omitempty"`
	KubernetesVersion  string                       `json:"kubernetesVersion,omitempty"`
	Image              string                       `json:"image,omitempty"`
	APIServerPort      int                          `json:"apiServerPort,omitempty"`
	Wait               Scalar                       `json:"wait,omitempty"`
	PodEvictionTimeout Scalar                       `json:"podEvictionTimeout,omitempty"`
	PodSubnet          string                       `json:"podSubnet,omitempty"`
	ServiceSubnet      string                       `json:"serviceSubnet,omitempty"`
	FeatureGates       map[string]Scalar            `json:"featureGates,omitempty"`
	ExtraArgs          map[string]map[string]Scalar `json:"extraArgs,omitempty"`
	Ports              []Port                       `json:"ports,omitempty"`
	Nodes              []Node                       `json:"nodes,omitempty"`
	Addons             []string                     `json:"addons,omitempty"`
	Registry           Scalar                       `json:"registry,omitempty"`
	Ingress            *Ingress                     `json:"ingress,omitempty"`
}

// Ingress sets the host ports of the ingress add-on (`addons: [ingress]`).
type Ingress struct {
	HTTPPort  int `json:"httpPort,omitempty"`
	HTTPSPort int `json:"httpsPort,omitempty"`
}

// Node is one entry of nodes. Nodes are named after the cluster, by position.
type Node struct {
	Role   string  `json:"role,omitempty"`
	CPUs   Scalar  `json:"cpus,omitempty"`
	Memory Scalar  `json:"memory,omitempty"`
	Mounts []Mount `json:"mounts,omitempty"`
}

// Mount is a host path bind-mounted into a node.
type Mount struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// Port publishes 127.0.0.1:HostPort to NodePort of the first node.
type Port struct {
	HostPort int `json:"hostPort"`
	NodePort int `json:"nodePort"`
}

// File is a parsed config file.
type File struct {
	// Name is the file's name, as errors show it.
	Name    string
	Cluster Cluster
	root    *yaml.Node // the document, for the lines of errors; nil if yaml.v3 could not parse it
}

// Load reads and parses the file at path ("-" reads stdin).
func Load(path string, stdin io.Reader) (*File, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, MaxSize+1))
		path = "<stdin>"
	} else {
		b, err = readFile(path)
	}
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{File: path, Msg: "no such file (`kubeforge config example > " + path + "` writes one to start from)"}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	return b, nil
}

// Parse decodes a config file's content; filename is what errors call it. The apiVersion and
// kind are checked first; then every field must be known and of the right type. Values are
// checked by Apply and spec.Validate.
func Parse(data []byte, filename string) (*File, error) {
	f := &File{Name: filename}
	if len(data) > MaxSize {
		return nil, f.err("", "is larger than %d KiB; a config file is a few lines", MaxSize>>10)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, f.err("", "is empty: a config file starts with apiVersion: %s and kind: %s (see `kubeforge config example`)", APIVersion, Kind)
	}
	root, err := document(data)
	if err != nil {
		var perr *Error
		if errors.As(err, &perr) {
			perr.File = filename
			return nil, perr
		}
		// yaml.v3 refused it: the decoder below reports what is wrong, with a line.
		if derr := strictyaml.Unmarshal(data, &f.Cluster); derr != nil {
			return nil, f.decodeError(derr)
		}
		return nil, f.err("", "is not valid YAML: %v", err)
	}
	f.root = root
	if err := f.checkHeader(); err != nil {
		return nil, err
	}
	if err := strictyaml.Unmarshal(data, &f.Cluster); err != nil {
		return nil, f.decodeError(err)
	}
	return f, nil
}

// document parses data as exactly one YAML document holding a mapping, and returns that mapping.
func document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Error{Line: next.Line, Msg: "holds more than one YAML document: a config file is one (remove the ---)"}
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{Msg: "holds no YAML document"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Line: root.Line, Msg: fmt.Sprintf("is %s, not a mapping of fields: start with apiVersion: %s and kind: %s (see `kubeforge config example`)",
			describeNode(root), APIVersion, Kind)}
	}
	return root, nil
}

// checkHeader checks apiVersion and kind before anything else: another version's fields would
// make every other error misleading.
func (f *File) checkHeader() error {
	for _, h := range []struct{ field, want, missing string }{
		{"apiVersion", APIVersion, "a config file starts with apiVersion: " + APIVersion},
		{"kind", Kind, "a config file says kind: " + Kind},
	} {
		k, v := mapValue(f.root, h.field)
		switch {
		case v == nil:
			return f.err("", "%s is missing: %s", h.field, h.missing)
		case v.Kind != yaml.ScalarNode || v.Tag != "!!str" || v.Value != h.want:
			got := v.Value
			if v.Kind != yaml.ScalarNode {
				got = describeNode(v)
			}
			return &Error{File: f.Name, Line: k.Line, Path: h.field, Msg: fmt.Sprintf("%q is not supported; use %s", got, h.want)}
		}
	}
	return nil
}

// mapValue returns the key and value nodes of key in mapping m, or nils.
func mapValue(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], resolve(m.Content[i+1])
		}
	}
	return nil, nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "not a mapping"
}
