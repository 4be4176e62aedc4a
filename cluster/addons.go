package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// MetricsServerVersion is the metrics-server add-on's release (images/images.mk builds the same).
const MetricsServerVersion = "v0.8.0"

// addon is an optional cluster service: its pod images (built here from Go modules), its
// objects, and what "it works" means.
type addon struct {
	name, description, version string
	images                     []images.ProgramImage
	objects                    func() []runtime.Object
	// ready waits until the add-on serves (for `addons enable` and `start --addons`).
	ready func(ctx context.Context, k *kube) error
}

// catalog is every add-on kubeforge has, by name.
func catalog() []addon {
	ms := images.ProgramImage{
		Program: "metrics-server", Version: MetricsServerVersion,
		Estimate: "about 2 minutes on 2 cores, seconds with a warm Go build cache",
		Spec: func(bin string) oci.Spec {
			return oci.Program(oci.Registry+"/metrics-server:"+MetricsServerVersion, "metrics-server", bin)
		},
	}
	return []addon{{
		name:        "metrics-server",
		description: "resource metrics of nodes and pods: kubectl top, HorizontalPodAutoscalers",
		version:     MetricsServerVersion,
		images:      []images.ProgramImage{ms},
		objects:     func() []runtime.Object { return addons.MetricsServer(ms.Ref()) },
		ready:       metricsServing,
	}}
}

// AddonNames lists the add-ons' names, sorted (for errors and shell completion).
func AddonNames() []string {
	var out []string
	for _, a := range catalog() {
		out = append(out, a.name)
	}
	sort.Strings(out)
	return out
}

// findAddons returns the add-ons of names, refusing an unknown one with the list of known ones.
func findAddons(names []string) ([]addon, error) {
	var out []addon
	for _, n := range names {
		i := slices.IndexFunc(catalog(), func(a addon) bool { return a.name == n })
		if i < 0 {
			return nil, kferr.Usage("there is no add-on %q: the add-ons are %s (`kubeforge addons list`)", n, strings.Join(AddonNames(), ", "))
		}
		out = append(out, catalog()[i])
	}
	return out, nil
}

// ValidateAddons refuses unknown add-on names (for flags and config files, before a start).
func ValidateAddons(names []string) error {
	_, err := findAddons(names)
	return err
}

// AddonInfo describes an add-on, as `kubeforge addons list` shows it.
type AddonInfo struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	Enabled     bool     `json:"enabled"`
	Images      []string `json:"images"`
}

// Addons lists every add-on, and whether the cluster has it enabled (as recorded).
func (c *Cluster) Addons() []AddonInfo {
	var out []AddonInfo
	for _, a := range catalog() {
		info := AddonInfo{Name: a.name, Version: a.version, Description: a.description, Enabled: slices.Contains(c.rec.Spec.Addons, a.name)}
		for _, im := range a.images {
			info.Images = append(info.Images, im.Ref())
		}
		out = append(out, info)
	}
	return out
}

// EnableAddons enables add-ons in a running cluster: their images are built when missing and
// copied into every running node, their objects applied, and it returns once they serve. They
// are recorded: nodes added later get their images, and a restart applies them again.
func (c *Cluster) EnableAddons(ctx context.Context, names []string) error {
	if _, err := findAddons(names); err != nil {
		return err
	}
	unlock, err := c.lock(ctx, "addons enable")
	if err != nil {
		return err
	}
	defer unlock()
	return c.enableAddons(ctx, names)
}

// missing returns the names of want that have does not hold.
func missing(want, have []string) []string {
	var out []string
	for _, n := range want {
		if !slices.Contains(have, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// enableAddons is EnableAddons with the cluster's lock held.
func (c *Cluster) enableAddons(ctx context.Context, names []string) error {
	as, err := findAddons(names)
	if err != nil {
		return err
	}
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	k, err := c.running(ctx, l)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := c.p.enableAddon(ctx, l.runningNodes(ctx), k, a, true); err != nil {
			if !slices.Contains(l.rec.Spec.Addons, a.name) {
				// Leave nothing half-made: the objects go again (the images may stay).
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
				defer cancel()
				if dyn, derr := k.dynamic(); derr == nil {
					if derr := addons.Delete(uctx, dyn, a.objects()); derr != nil {
						c.p.log.Warnf("removing %s's objects after the failure: %v", a.name, derr)
					}
				}
			}
			return err
		}
		if !slices.Contains(l.rec.Spec.Addons, a.name) {
			l.rec.Spec.Addons = append(l.rec.Spec.Addons, a.name)
			if err := l.dir.Save(l.rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// DisableAddons deletes the add-ons' objects from a running cluster (their images stay in the
// nodes, as pulled images do) and takes them out of the record.
func (c *Cluster) DisableAddons(ctx context.Context, names []string) error {
	as, err := findAddons(names)
	if err != nil {
		return err
	}
	unlock, err := c.lock(ctx, "addons disable")
	if err != nil {
		return err
	}
	defer unlock()
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	k, err := c.running(ctx, l)
	if err != nil {
		return err
	}
	dyn, err := k.dynamic()
	if err != nil {
		return err
	}
	for _, a := range as {
		st := c.p.log.Step("Disabling " + a.name)
		if err := st.Done(addons.Delete(ctx, dyn, a.objects())); err != nil {
			return err
		}
		l.rec.Spec.Addons = slices.DeleteFunc(l.rec.Spec.Addons, func(n string) bool { return n == a.name })
		if err := l.dir.Save(l.rec); err != nil {
			return err
		}
	}
	return nil
}

// running returns a client of the cluster's API server, or an error naming `start` when it does
// not answer.
func (c *Cluster) running(ctx context.Context, l *live) (*kube, error) {
	if _, err := l.runningControlPlane(ctx, ""); err != nil || !c.apiUp(ctx, 15*time.Second) {
		return nil, kferr.Environment(fmt.Sprintf("start it first: kubeforge start --name %s", c.name), "cluster %q is not running", c.name)
	}
	return c.kube(0)
}

// runningNodes are the cluster's nodes whose machines run.
func (l *live) runningNodes(ctx context.Context) []provision.Node {
	var out []provision.Node
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
			out = append(out, n)
		}
	}
	return out
}

// enableAddon puts add-on a's images into nodes, applies its objects and, when wait is set,
// waits until it serves.
func (p *Provider) enableAddon(ctx context.Context, nodes []provision.Node, k *kube, a addon, wait bool) error {
	if err := p.addonImages(ctx, nodes, a); err != nil {
		return err
	}
	dyn, err := k.dynamic()
	if err != nil {
		return err
	}
	st := p.log.Step("Enabling " + a.name)
	if err := addons.ApplyUntil(ctx, dyn, a.objects(), time.Second); err != nil {
		return st.Done(err)
	}
	if wait && a.ready != nil {
		if err := a.ready(ctx, k); err != nil {
			return st.Done(kferr.WithHint(fmt.Errorf("%s does not serve: %w", a.name, err), kferr.ExitTimeout,
				"look at its pods: kubectl -n kube-system get pods; kubectl -n kube-system logs deploy/"+a.name))
		}
	}
	return st.Done(nil)
}

// addonImages builds add-on a's images when missing and imports them into the nodes that lack
// them.
func (p *Provider) addonImages(ctx context.Context, nodes []provision.Node, a addon) error {
	artifacts, err := p.ArtifactsDir()
	if err != nil {
		return err
	}
	for _, im := range a.images {
		archive, id, err := images.EnsureProgramImage(ctx, artifacts, im, p.log)
		if err != nil {
			return err
		}
		st := p.log.Step(fmt.Sprintf("Loading image %s into %d node(s)", im.Ref(), len(nodes)))
		if err := st.Done(images.ImportArchive(ctx, nodes, im.Ref(), id, archive)); err != nil {
			return err
		}
	}
	return nil
}

// stepAddons enables the spec's add-ons at the end of a start (the images into every node, the
// objects applied; wait: until they serve).
func stepAddons(names []string, wait bool) step {
	return step{run: func(ctx context.Context, b *build) error {
		as, err := findAddons(names)
		if err != nil {
			return err
		}
		for _, a := range as {
			if err := b.p.enableAddon(ctx, b.nodes, b.kube, a, wait); err != nil {
				return err
			}
		}
		return nil
	}}
}

// metricsServing waits until the metrics API answers with a sample of every Ready node: then
// `kubectl top nodes` shows them all.
func metricsServing(ctx context.Context, k *kube) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		raw, err := k.cs.RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
		if err != nil {
			last = "the metrics API: " + err.Error()
			return false, nil
		}
		var list struct {
			Items []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			last = "the metrics API: " + err.Error()
			return false, nil
		}
		have := map[string]bool{}
		for _, it := range list.Items {
			have[it.Metadata.Name] = true
		}
		for i := range nodes.Items {
			n := &nodes.Items[i]
			if ready.NodeReady(n) && !have[n.Name] {
				last = "no metrics of node " + n.Name + " yet"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", last, err)
	}
	return nil
}
