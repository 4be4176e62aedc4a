// Package spec holds the cluster specification: what the user asked for, validated and defaulted.
// Every other package takes a spec and never reads flags or files itself.
package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// KubernetesVersion is the version of the components linked into the node binary. The Makefile's
// KUBE_VERSION stamps the binaries; this is the default the host CLI asks for.
var KubernetesVersion = "v1.36.3"

// DefaultName is the cluster name used when none is given.
const DefaultName = "kubeforge"

// Role of a node.
type Role string

const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// Cluster is a validated, defaulted cluster specification.
type Cluster struct {
	Name              string        `json:"name"`
	KubernetesVersion string        `json:"kubernetesVersion"`
	Driver            string        `json:"driver"`
	Image             string        `json:"image,omitempty"`
	Nodes             []Node        `json:"nodes"`
	PodSubnet         string        `json:"podSubnet"`
	ServiceSubnet     string        `json:"serviceSubnet"`
	DNSDomain         string        `json:"dnsDomain"`
	APIServerPort     int           `json:"apiServerPort,omitempty"` // host port on 127.0.0.1; 0 = pick a free one
	Wait              time.Duration `json:"wait,omitempty"`
}

// Node is one machine of the cluster.
type Node struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// Default returns the spec of a one-node cluster with the given name.
func Default(name string) Cluster {
	if name == "" {
		name = DefaultName
	}
	return Cluster{
		Name:              name,
		KubernetesVersion: KubernetesVersion,
		Driver:            "docker",
		Nodes:             []Node{{Name: NodeName(name, 0), Role: RoleControlPlane}},
		PodSubnet:         "10.244.0.0/16",
		ServiceSubnet:     "10.96.0.0/16",
		DNSDomain:         "cluster.local",
		Wait:              5 * time.Minute,
	}
}

// NodeName is the name of the i-th node (0-based): the cluster name, then <cluster>-m02, -m03...
func NodeName(cluster string, i int) string {
	if i == 0 {
		return cluster
	}
	return fmt.Sprintf("%s-m%02d", cluster, i+1)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks that name can name a cluster: a DNS label short enough to leave room for
// node suffixes.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > 50 || !dnsLabel.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use 1-50 lower-case letters, digits and '-', starting and ending with a letter or digit (a DNS label), e.g. --name dev", name)
	}
	return nil
}

// Validate checks the whole spec.
func (c Cluster) Validate() error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if len(c.Nodes) == 0 {
		return fmt.Errorf("cluster %q has no nodes: a cluster needs at least one control-plane node", c.Name)
	}
	if c.Nodes[0].Role != RoleControlPlane {
		return fmt.Errorf("nodes[0].role: the first node must be %s, got %q", RoleControlPlane, c.Nodes[0].Role)
	}
	for i, n := range c.Nodes {
		if n.Role != RoleControlPlane && n.Role != RoleWorker {
			return fmt.Errorf("nodes[%d].role: %q is not one of %s, %s", i, n.Role, RoleControlPlane, RoleWorker)
		}
	}
	for field, s := range map[string]string{"podSubnet": c.PodSubnet, "serviceSubnet": c.ServiceSubnet} {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%s: %q is not a CIDR (e.g. 10.244.0.0/16): %v", field, s, err)
		}
	}
	if c.APIServerPort < 0 || c.APIServerPort > 65535 {
		return fmt.Errorf("apiServerPort: %d is not a port (1-65535, or 0 to pick a free one)", c.APIServerPort)
	}
	if c.Driver != "docker" {
		return fmt.Errorf("driver: %q is not supported; use --driver docker", c.Driver)
	}
	return nil
}

// ServiceIP returns the n-th address of the service subnet (1 = the kubernetes Service,
// 10 = kube-dns).
func (c Cluster) ServiceIP(n int) (netip.Addr, error) {
	p, err := netip.ParsePrefix(c.ServiceSubnet)
	if err != nil {
		return netip.Addr{}, err
	}
	a := p.Masked().Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	if !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service subnet %s has no address #%d", c.ServiceSubnet, n)
	}
	return a, nil
}
