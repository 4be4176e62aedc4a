package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/addons/gatewayapi"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// The add-ons' releases (images/images.mk builds the same; a test checks).
const (
	MetricsServerVersion = "v0.8.0"
	TraefikVersion       = "v3.7.13"
)

// IngressAddon names the ingress add-on (Traefik: Ingress and Gateway API).
const IngressAddon = "ingress"

// addon is an optional cluster service: its pod images (built here from Go modules), its
// objects, and what "it works" means.
type addon struct {
	name, description, version string
	images                     []images.ProgramImage
	// objects are the add-on's objects for a cluster of spec s.
	objects func(s *spec.Cluster) ([]runtime.Object, error)
	// ready waits until the add-on serves (for `addons enable` and `start --addons`).
	ready func(ctx context.Context, k *kube, s *spec.Cluster) error
	// kept names what disabling the add-on leaves in the cluster, if anything.
	kept string
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
	traefik := images.ProgramImage{
		Program: "traefik", Version: TraefikVersion,
		Estimate: "about 15 minutes on 2 cores, a minute with a warm Go build cache",
		Spec: func(bin string) oci.Spec {
			return oci.Program(oci.Registry+"/traefik:"+TraefikVersion, "traefik", bin)
		},
	}
	return []addon{{
		name:        "metrics-server",
		description: "resource metrics of nodes and pods: kubectl top, HorizontalPodAutoscalers",
		version:     MetricsServerVersion,
		images:      []images.ProgramImage{ms},
		objects: func(*spec.Cluster) ([]runtime.Object, error) {
			return addons.MetricsServer(ms.Ref()), nil
		},
		ready: func(ctx context.Context, k *kube, _ *spec.Cluster) error { return metricsServing(ctx, k) },
	}, {
		name:        IngressAddon,
		description: "Traefik " + TraefikVersion + ": Ingress and Gateway API " + gatewayapi.Version + " (HTTPRoute, GRPCRoute, TLSRoute) on 127.0.0.1:80 and :443",
		version:     TraefikVersion,
		images:      []images.ProgramImage{traefik},
		objects: func(s *spec.Cluster) ([]runtime.Object, error) {
			crds, err := addons.GatewayAPICRDs()
			if err != nil {
				return nil, err
			}
			http, https := s.Ingress.Ports()
			return append(crds, addons.Traefik(traefik.Ref(), http, https)...), nil
		},
		ready: ingressServing,
		kept:  "the Gateway API CRDs stay (deleting them would delete every Gateway and route in the cluster)",
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
// ingress, when not nil, sets the ingress add-on's host ports (kept in the record; enabling an
// enabled ingress again with other ports moves it).
func (c *Cluster) EnableAddons(ctx context.Context, names []string, ingress *spec.IngressPorts) error {
	if _, err := findAddons(names); err != nil {
		return err
	}
	unlock, err := c.lock(ctx, "addons enable")
	if err != nil {
		return err
	}
	defer unlock()
	return c.enableAddons(ctx, names, ingress)
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
func (c *Cluster) enableAddons(ctx context.Context, names []string, ingress *spec.IngressPorts) error {
	as, err := findAddons(names)
	if err != nil {
		return err
	}
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	if ingress != nil {
		l.rec.Spec.Ingress = ingress
		if err := l.rec.Spec.Validate(); err != nil {
			return err
		}
	}
	k, err := c.running(ctx, l)
	if err != nil {
		return err
	}
	for _, a := range as {
		err := c.p.enableAddon(ctx, l.runningNodes(ctx), k, a, &l.rec.Spec, true)
		if err == nil && a.name == IngressAddon && hasCloudProvider(l.rec.Spec.Driver) {
			// Other host ports make the load balancer again: wait for the new one.
			err = c.waitServiceLB(ctx, k, metav1.NamespaceSystem, addons.TraefikName)
		}
		if err != nil {
			if !slices.Contains(l.rec.Spec.Addons, a.name) {
				// Leave nothing half-made: the objects go again (the images may stay).
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
				defer cancel()
				dyn, derr := k.dynamic()
				var objs []runtime.Object
				if derr == nil {
					objs, derr = a.objects(&l.rec.Spec)
				}
				if derr == nil {
					derr = addons.Delete(uctx, dyn, objs)
				}
				if derr != nil {
					c.p.log.Warnf("removing %s's objects after the failure: %v", a.name, derr)
				}
			}
			return err
		}
		if !slices.Contains(l.rec.Spec.Addons, a.name) || ingress != nil {
			if !slices.Contains(l.rec.Spec.Addons, a.name) {
				l.rec.Spec.Addons = append(l.rec.Spec.Addons, a.name)
			}
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
		objs, err := a.objects(&l.rec.Spec)
		if err != nil {
			return err
		}
		st := c.p.log.Step("Disabling " + a.name)
		if err := st.Done(addons.Delete(ctx, dyn, objs)); err != nil {
			return err
		}
		if a.kept != "" {
			c.p.log.Infof("%s: %s", a.name, a.kept)
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
func (p *Provider) enableAddon(ctx context.Context, nodes []provision.Node, k *kube, a addon, s *spec.Cluster, wait bool) error {
	objs, err := a.objects(s)
	if err != nil {
		return err
	}
	if err := p.addonImages(ctx, nodes, a); err != nil {
		return err
	}
	dyn, err := k.dynamic()
	if err != nil {
		return err
	}
	st := p.log.Step("Enabling " + a.name)
	if err := addons.ApplyUntil(ctx, dyn, objs, time.Second); err != nil {
		return st.Done(err)
	}
	if wait && a.ready != nil {
		if err := a.ready(ctx, k, s); err != nil {
			return st.Done(kferr.WithHint(fmt.Errorf("%s does not serve: %w", a.name, err), kferr.ExitTimeout,
				"look at its pods: kubectl -n kube-system get pods; kubectl -n kube-system logs deploy/"+a.name))
		}
	}
	return st.Done(nil)
}

// addonImages builds add-on a's images when missing and imports them into the nodes that lack
// them.
func (p *Provider) addonImages(ctx context.Context, nodes []provision.Node, a addon) error {
	for _, im := range a.images {
		archive, id, err := p.programImage(ctx, im)
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

// prepareAddonImages makes the images of the named add-ons that are missing (nothing to do when
// they are cached or come from a bundle): `start --addons` does it before its wait starts.
func (p *Provider) prepareAddonImages(ctx context.Context, names []string) error {
	as, err := findAddons(names)
	if err != nil {
		return err
	}
	for _, a := range as {
		for _, im := range a.images {
			if _, _, err := p.programImage(ctx, im); err != nil {
				return err
			}
		}
	}
	return nil
}

// stepAddons enables the spec's add-ons at the end of a start (the images into every node, the
// objects applied; wait: until they serve).
func stepAddons(s *spec.Cluster, wait bool) step {
	return step{run: func(ctx context.Context, b *build) error {
		as, err := findAddons(s.Addons)
		if err != nil {
			return err
		}
		for _, a := range as {
			if err := b.p.enableAddon(ctx, b.nodes, b.kube, a, s, wait); err != nil {
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

// ingressServing waits until Traefik serves: its Deployment available, the GatewayClass
// accepted and the default Gateway programmed by it, and (where kubeforge has a load-balancer
// provider) its Service given an address.
func ingressServing(ctx context.Context, k *kube, s *spec.Cluster) error {
	dyn, err := k.dynamic()
	if err != nil {
		return err
	}
	gw := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1"}
	condition := func(u *unstructured.Unstructured, typ string) bool {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == typ && m["status"] == "True" {
				return true
			}
		}
		return false
	}
	var last string
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		dep, err := k.cs.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, addons.TraefikName, metav1.GetOptions{})
		if err != nil || dep.Status.AvailableReplicas < 1 {
			last = "the traefik Deployment has no available pod"
			return false, nil
		}
		gc, err := dyn.Resource(gw.GroupVersion().WithResource("gatewayclasses")).Get(ctx, addons.GatewayClassName, metav1.GetOptions{})
		if err != nil || !condition(gc, "Accepted") {
			last = "GatewayClass " + addons.GatewayClassName + " is not Accepted"
			return false, nil
		}
		g, err := dyn.Resource(gw.GroupVersion().WithResource("gateways")).Namespace(metav1.NamespaceSystem).Get(ctx, addons.DefaultGatewayName, metav1.GetOptions{})
		if err != nil || !condition(g, "Programmed") {
			last = "Gateway kube-system/" + addons.DefaultGatewayName + " is not Programmed"
			return false, nil
		}
		if s.Driver == spec.DriverDocker {
			svc, err := k.cs.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, addons.TraefikName, metav1.GetOptions{})
			if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
				last = "Service kube-system/traefik has no load-balancer address"
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

// equalIngress reports whether a and b give the same host ports.
func equalIngress(a, b *spec.IngressPorts) bool {
	ah, ahs := a.Ports()
	bh, bhs := b.Ports()
	return ah == bh && ahs == bhs
}

// programImage is the archive and ID of a program image: built (or found cached) from its binary
// when the binary is here or can be built, else the one a classroom bundle loaded
// (`kubeforge bundle load`, on a machine without the source tree or Go).
func (p *Provider) programImage(ctx context.Context, im images.ProgramImage) (archive, id string, err error) {
	artifacts, aerr := p.ArtifactsDir()
	if aerr == nil {
		if _, err := os.Stat(images.ProgramBinary(artifacts, im)); err == nil {
			return images.EnsureProgramImage(ctx, artifacts, im, p.log)
		}
	}
	if archive, id, ok := images.BundledProgramImage(im); ok {
		p.log.Debugf("image %s: from a bundle (%s)", im.Ref(), archive)
		return archive, id, nil
	}
	if aerr != nil {
		return "", "", aerr
	}
	return images.EnsureProgramImage(ctx, artifacts, im, p.log)
}
