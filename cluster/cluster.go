// Package cluster is kubeforge's library for whole clusters: create (as a list of steps, each
// undone when a later one fails), delete, status and list. It drives a provision.Driver and the
// bootstrap packages; the CLI is a thin layer over it. Nothing here exits the process.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// ImageFunc returns the node image to use, building it when needed.
type ImageFunc func(ctx context.Context, c spec.Cluster) (string, error)

// LoadFunc copies images from the host into nodes (`kubeforge image load`), skipping nodes that
// have them.
type LoadFunc func(ctx context.Context, nodes []provision.Node, refs []string) error

// Provider creates and manages clusters on one driver.
type Provider struct {
	Driver provision.Driver
	// Image returns the node image (the Docker driver builds it when missing).
	Image ImageFunc
	// Load copies host images into nodes; LoadImages and AddNode (which gives a new node the
	// images loaded before) need it.
	Load LoadFunc
	// Home is the state directory (Home()); empty means Home().
	Home string
	// Kubeconfig is the user's kubeconfig to merge contexts into; empty means UserKubeconfig().
	UserKubeconfigPath string
	Log                *ui.Logger
}

func (p *Provider) log() *ui.Logger {
	if p.Log == nil {
		return ui.Discard()
	}
	return p.Log
}

func (p *Provider) dirs(name string) (Dirs, error) {
	home := p.Home
	if home == "" {
		h, err := Home()
		if err != nil {
			return Dirs{}, err
		}
		home = h
	}
	return dirsFor(home, name), nil
}

func (p *Provider) userKubeconfig() string {
	if p.UserKubeconfigPath != "" {
		return p.UserKubeconfigPath
	}
	return UserKubeconfig()
}

// Delete removes every node, the network and the state of cluster name, and its context from the
// user's kubeconfig. It is idempotent: deleting a missing cluster, or re-running after a failed
// delete, succeeds.
func (p *Provider) Delete(ctx context.Context, name string) error {
	nodes, err := p.Driver.Nodes(ctx, name)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := p.Driver.DeleteNode(ctx, name, n.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := p.Driver.DeleteNetwork(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := RemoveFromKubeconfig(p.userKubeconfig(), name); err != nil {
		errs = append(errs, fmt.Errorf("removing context %s from %s: %w", name, p.userKubeconfig(), err))
	}
	if len(errs) == 0 {
		d, err := p.dirs(name)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(d.Root); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting cluster %s (safe to re-run): %w", name, err)
	}
	return nil
}

// Clusters lists the names of the clusters the driver has machines or networks for, and those
// recorded as made with this driver (state only).
func (p *Provider) Clusters(ctx context.Context) ([]string, error) {
	names, err := p.Driver.Clusters(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	recorded, err := RecordedClusters(p.Home)
	if err != nil {
		return nil, err
	}
	for n, d := range recorded {
		if d == p.Driver.Name() {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	IP    string `json:"ip"`
	State string `json:"state"`
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

// Status reports the cluster's nodes and whether its API server answers.
func (p *Provider) Status(ctx context.Context, name string) (Status, error) {
	st := Status{Name: name, Driver: p.Driver.Name(), Nodes: []NodeStatus{}}
	nodes, err := p.Driver.Nodes(ctx, name)
	if err != nil {
		return st, err
	}
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
	if d, err := p.dirs(name); err == nil {
		if rec, err := d.load(); err == nil {
			st.KubernetesVersion = rec.Spec.KubernetesVersion
			if rec.APIServerHost != "" {
				st.APIServer = rec.APIServerURL()
			}
			st.Image = rec.Image
			st.Kubeconfig = d.Kubeconfig()
			if running > 0 {
				st.APIServerReady = apiReady(ctx, d.SuperAdmin(), requestTimeout(rec.Spec))
			}
		}
	}
	if st.State == StateRunning && !st.APIServerReady {
		st.State = StateDegraded
	}
	return st, nil
}

// Kubeconfig returns the cluster's standalone kubeconfig (admin credentials, server on 127.0.0.1).
func (p *Provider) Kubeconfig(name string) ([]byte, error) {
	d, err := p.dirs(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.Kubeconfig())
	if errors.Is(err, os.ErrNotExist) {
		return nil, kferr.Usage("cluster %q does not exist here (no %s): `kubeforge list` shows the clusters", name, d.Kubeconfig())
	}
	return b, err
}

// KubeconfigPath is the file holding the cluster's standalone kubeconfig.
func (p *Provider) KubeconfigPath(name string) (string, error) {
	d, err := p.dirs(name)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(d.Kubeconfig()); err != nil {
		return "", kferr.Usage("cluster %q does not exist here (no %s): `kubeforge list` shows the clusters", name, d.Kubeconfig())
	}
	return d.Kubeconfig(), nil
}
