package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	IP    string `json:"ip"`
	State string `json:"state"`
	// Version is the node's kubelet version, when the API server answers (during an upgrade the
	// nodes differ).
	Version string `json:"version,omitempty"`
}

// Status is what `kubeforge status` shows.
type Status struct {
	Name              string       `json:"name"`
	Driver            string       `json:"driver"`
	State             string       `json:"state"` // Running, Stopped, Degraded, Missing
	KubernetesVersion string       `json:"kubernetesVersion,omitempty"`
	Image             string       `json:"image,omitempty"`
	APIServer         string       `json:"apiServer,omitempty"`
	APIServerReady    bool         `json:"apiServerReady"`
	Kubeconfig        string       `json:"kubeconfig,omitempty"`
	Nodes             []NodeStatus `json:"nodes"`
}

// Cluster states.
const (
	StateRunning  = "Running"
	StateStopped  = "Stopped"
	StateDegraded = "Degraded"
	StateMissing  = "Missing"
)

// Status reports the cluster's machines, as its driver's labels say, and whether its API server
// answers. It works without a record (then it knows less).
func (c *Cluster) Status(ctx context.Context) (Status, error) {
	st := Status{Name: c.name, Driver: c.driver.Name(), Nodes: []NodeStatus{}}
	nodes, err := c.driver.Nodes(ctx, c.name)
	if err != nil {
		return st, err
	}
	// The cloud provider and the Services' load balancers are not nodes (nor the cluster's state).
	nodes = slices.DeleteFunc(nodes, provision.IsService)
	running := 0
	for _, n := range nodes {
		s, err := n.State(ctx)
		if err != nil {
			return st, err
		}
		if s == provision.StateRunning {
			running++
		}
		ip := ""
		if n.IP().IsValid() {
			ip = n.IP().String()
		}
		st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name(), Role: n.Role(), IP: ip, State: string(s)})
		if port := n.APIServerHostPort(); port != 0 && st.APIServer == "" {
			st.APIServer = fmt.Sprintf("https://127.0.0.1:%d", port)
		}
	}
	switch {
	case len(nodes) == 0:
		st.State = StateMissing
	case running == len(nodes):
		st.State = StateRunning
	case running == 0:
		st.State = StateStopped
	default:
		st.State = StateDegraded
	}
	if c.hasRec {
		st.KubernetesVersion = c.rec.Spec.KubernetesVersion
		if c.rec.APIServerHost != "" {
			st.APIServer = c.rec.APIServerURL()
		}
		st.Image = c.rec.Image
		st.Kubeconfig = c.dir.Kubeconfig()
		if running > 0 {
			st.APIServerReady = c.apiUp(ctx, requestTimeout(c.rec.Spec))
		}
		if st.APIServerReady {
			c.nodeVersions(ctx, st.Nodes)
		}
	}
	if st.State == StateRunning && !st.APIServerReady {
		st.State = StateDegraded
	}
	return st, nil
}

// Kubeconfig returns cluster name's standalone kubeconfig (admin credentials). It needs only the
// state directory, no driver.
func (p *Provider) Kubeconfig(name string) ([]byte, error) {
	path, err := p.KubeconfigPath(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// KubeconfigPath is the file holding cluster name's standalone kubeconfig.
func (p *Provider) KubeconfigPath(name string) (string, error) {
	dir, err := p.home.Dir(name)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(dir.Kubeconfig()); err != nil {
		return "", kferr.Usage("cluster %q does not exist here (no %s): `kubeforge list` shows the clusters", name, dir.Kubeconfig())
	}
	return dir.Kubeconfig(), nil
}

// nodeVersions fills in the kubelet version of each node the API server lists.
func (c *Cluster) nodeVersions(ctx context.Context, nodes []NodeStatus) {
	k, err := c.kube(requestTimeout(c.rec.Spec))
	if err != nil {
		return
	}
	list, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range nodes {
		for _, o := range list.Items {
			if o.Name == nodes[i].Name {
				nodes[i].Version = o.Status.NodeInfo.KubeletVersion
			}
		}
	}
}
