package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"kubeforge.dev/kubeforge/bootstrap/pki"
	"kubeforge.dev/kubeforge/cluster/internal/kubeconfig"
	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// KeepOnFailure keeps what a failed create made, for debugging.
	KeepOnFailure bool
	// DriverGiven says the user chose the spec's driver: an existing cluster on another driver
	// is refused (otherwise it starts again on its own).
	DriverGiven bool
	// WaitGiven says the user chose the spec's Wait: otherwise a stopped cluster of emulated
	// VMs gets spec.EmulatedWait to start again.
	WaitGiven bool
}

// CreateResult says what Create did.
type CreateResult struct {
	// AlreadyRunning is set when the cluster existed and was running: nothing was changed but
	// what Changed lists.
	AlreadyRunning bool
	// Changed says what a start of an existing cluster added to it (add-ons enabled, the local
	// registry wired in), one phrase each.
	Changed []string
	// Resumed is set when the cluster existed, stopped, and was started again.
	Resumed bool
	// Driver is the driver the cluster runs on (an existing cluster keeps its own).
	Driver     string
	Kubeconfig string // the user's kubeconfig the context was merged into
	Context    string
	APIServer  string
}

// build is the one state value the steps of a create, a resume or a node add work on: what the
// cluster is to be, and what the steps made or found so far. Each step reads what earlier ones
// set; the comments say which step sets a field.
type build struct {
	p      *Provider
	spec   spec.Cluster
	dir    state.Dir
	driver provision.Driver
	res    *CreateResult

	image    string             // Node image
	network  provision.Network  // Network
	auth     *pki.Authorities   // Certificates
	port     int                // Load balancer or Nodes: the API server's port on the host
	apiHost  string             // Nodes: empty for 127.0.0.1 (a published port), else the endpoint
	endpoint netip.Addr         // Nodes: where nodes reach the API server (control plane or LB)
	plans    []nodePlan         // Nodes: the nodes to make
	nodes    []provision.Node   // Nodes: the cluster's nodes, in plan order (resume: all of them)
	made     []string           // the machines this run made: the only ones an undo removes
	info     contract.ImageInfo // Nodes: the node image's description
	kube     *kube              // Control plane on: the API server's client
	rec      state.Record       // Nodes: the record written, marked complete by Ready

	// since, when set, is when a resume or node add started: a Ready condition reported before
	// it is stale. restarted (a resume) names the nodes that were started again.
	since     time.Time
	restarted map[string]bool
}

// Create makes cluster c and returns when it is usable: nodes Ready, CoreDNS serving, the
// default ServiceAccount present, the context merged into the user's kubeconfig. A cluster of
// that name that is running is left alone (AlreadyRunning); a stopped one is started again
// (Resumed). The cluster's lock is held throughout: a second start of the same name waits for
// the first and then finds its cluster.
func (p *Provider) Create(ctx context.Context, c spec.Cluster, o CreateOptions) (CreateResult, error) {
	res := CreateResult{Kubeconfig: p.kubeconfig, Context: c.Name, Driver: settingsOf(c).name}
	if err := c.Validate(); err != nil {
		return res, kferr.Usage("%v", err)
	}
	if err := ValidateAddons(c.Addons); err != nil {
		return res, err
	}
	dir, err := p.home.Dir(c.Name)
	if err != nil {
		return res, err
	}
	// The add-ons' programs are built first (once: then cached, or from a bundle), outside the
	// wait: a first Traefik build takes 15-20 min on 2 cores, and --wait bounds the cluster's
	// start, not the compiler.
	if err := p.prepareAddonImages(ctx, c.Addons); err != nil {
		return res, err
	}
	// The wait bounds the whole start, a wait for another kubeforge on the cluster included.
	started := time.Now()
	lockCtx, cancelLock := withWait(ctx, c.Wait)
	defer cancelLock()
	// One start (or other change) of a cluster at a time.
	unlock, err := p.lock(lockCtx, dir, "start")
	if err != nil {
		return res, err
	}
	defer unlock()

	rec, hasRec, err := dir.Load()
	if err != nil {
		return res, err
	}
	// A stopped cluster of emulated VMs gets longer to start again, unless the user chose.
	wait := c.Wait
	if hasRec && rec.Spec.Emulated() && !o.WaitGiven {
		wait = spec.EmulatedWait
	}
	if wait > 0 {
		wait = max(wait-time.Since(started), time.Millisecond)
	}
	ctx, cancel := withWait(ctx, wait)
	defer cancel()
	sel := settingsOf(c)
	if hasRec {
		// An existing cluster starts again on the driver it was made with.
		sel = settingsOf(rec.Spec)
		if o.DriverGiven && sel.name != settingsOf(c).name {
			return res, kferr.Usage("cluster %q runs on the %s driver, not %s: `kubeforge delete --name %s` first to make it anew", c.Name, sel.name, settingsOf(c).name, c.Name)
		}
		res.Driver = sel.name
	}
	if c.Registry && sel.name != spec.DriverDocker {
		return res, kferr.Usage("--registry: the local registry is Docker-only for now, and cluster %q runs on the %s driver (push to a registry of your own, or use `kubeforge image load`)", c.Name, sel.name)
	}
	d, err := p.driver(ctx, sel)
	if err != nil {
		return res, err
	}
	existing, err := d.Nodes(ctx, c.Name)
	if err != nil {
		return res, err
	}
	if len(existing) > 0 || hasRec {
		cl := &Cluster{p: p, name: c.Name, dir: dir, rec: rec, hasRec: hasRec, driver: d}
		fix := fmt.Sprintf("delete it with `kubeforge delete --name %s` and start again", c.Name)
		switch {
		case !hasRec || !rec.Complete:
			return res, kferr.Environment(fix, "cluster %q was not completely created (the remains of a failed or interrupted start)", c.Name)
		case len(existing) == 0:
			return res, kferr.Environment(fix, "cluster %q has no machines left in %s (they were removed outside kubeforge)", c.Name, d.Name())
		}
		st, err := cl.Status(ctx)
		if err != nil {
			return res, err
		}
		if st.State == StateRunning {
			res.AlreadyRunning, res.APIServer = true, st.APIServer
		} else {
			// Stopped (or partly): start its machines again and wait until it is usable.
			res.Resumed = true
			if err := cl.resume(ctx, &res); err != nil {
				return res, err
			}
		}
		// `start --addons` of an existing cluster enables those it lacks.
		more := missing(c.Addons, cl.rec.Spec.Addons)
		if len(more) > 0 {
			if err := cl.enableAddons(ctx, more, c.Ingress); err != nil {
				return res, err
			}
			res.Changed = append(res.Changed, "enabled the add-ons "+strings.Join(more, ", "))
		}
		// Other ingress ports than recorded move the enabled ingress add-on.
		if c.Ingress != nil && !slices.Contains(more, IngressAddon) && slices.Contains(cl.rec.Spec.Addons, IngressAddon) &&
			!equalIngress(c.Ingress, cl.rec.Spec.Ingress) {
			if err := cl.enableAddons(ctx, []string{IngressAddon}, c.Ingress); err != nil {
				return res, err
			}
			h, hs := c.Ingress.Ports()
			res.Changed = append(res.Changed, fmt.Sprintf("moved the ingress to host ports %d and %d", h, hs))
		}
		// `start --registry` of an existing cluster wires the registry in (a resume did already
		// when the cluster had it).
		if c.Registry && cl.rec.Spec.RegistryPort == 0 {
			if err := cl.connectRegistry(ctx); err != nil {
				return res, err
			}
			res.Changed = append(res.Changed, "connected the local registry (`kubeforge registry list` shows where to push)")
		}
		return res, nil
	}
	if err := p.checkNameFree(ctx, d, c.Name); err != nil {
		return res, err
	}
	if err := kubeconfig.Check(p.kubeconfig, c.Name); err != nil {
		return res, err
	}
	b := &build{p: p, spec: c, dir: dir, driver: d, res: &res, port: c.APIServerPort}
	steps := []step{stepImage(), stepNetwork(), stepCertificates()}
	if c.Registry {
		steps = append(steps, stepRegistry())
	}
	if c.ControlPlanes() > 1 {
		steps = append(steps, stepLoadBalancer())
	}
	steps = append(steps, stepNodes(c))
	if hasCloudProvider(d.Name()) {
		steps = append(steps, stepCloudProvider())
	}
	steps = append(steps, stepControlPlane(), stepKubelet(), stepDNS())
	if c.Registry {
		steps = append(steps, stepRegistryHosting())
	}
	if len(c.Addons) > 0 {
		steps = append(steps, stepAddons(&c, true))
	}
	steps = append(steps, stepReady())
	if err := p.runSteps(ctx, b, steps, o.KeepOnFailure); err != nil {
		return res, err
	}
	res.APIServer = state.APIServerURL(b.apiHost, b.port)
	return res, nil
}

// withWait bounds ctx by d (not at all when d is 0).
func withWait(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// lockWait bounds the wait for another kubeforge on a cluster when the caller's context has no
// deadline (the CLI's commands that take the lock all bound theirs with --wait).
const lockWait = 10 * time.Minute

// lock takes cluster dir's lock for op, telling the user when it waits for another kubeforge;
// the wait ends with ctx, or after lockWait when ctx has no deadline.
func (p *Provider) lock(ctx context.Context, dir state.Dir, op string) (func(), error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lockWait)
		defer cancel()
	}
	return dir.Lock(ctx, op, func(holder string) {
		p.log.Infof("Waiting for another kubeforge on cluster %s: %s", dir.Name, holder)
	})
}

// checkNameFree refuses a new cluster whose machines would take the names of another cluster's
// (cluster "kf-m02" next to the worker "kf-m02" of cluster "kf", or "kf" next to a cluster
// "kf-m02"), before anything is made: the two could never both exist, and a failed start must
// never be able to touch the other's machines.
func (p *Provider) checkNameFree(ctx context.Context, d provision.Driver, name string) error {
	others := map[string]bool{}
	recorded, damaged, err := p.home.Clusters()
	if err != nil {
		return err
	}
	for n := range recorded {
		others[n] = true
	}
	for _, n := range damaged {
		others[n] = true
	}
	names, err := d.Clusters(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		others[n] = true
	}
	delete(others, name)
	for _, o := range sortedKeys(others) {
		if spec.MachineNamesCollide(name, o) {
			return kferr.Usage("cluster name %q collides with cluster %q: one cluster's machines (%s, %s-m02..., %s-lb) would take the other's names; choose another --name", name, o, o, o, o)
		}
	}
	return nil
}
