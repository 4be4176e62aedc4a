// Package cluster is kubeforge's library for whole clusters, the top of the host side: it
// creates a cluster as a list of named steps over one state value (each undone when a later one
// fails), starts and stops it, adds and removes nodes, reads logs, saves and restores etcd, and
// deletes it. It drives the machines through a provision.Driver, chosen per cluster from a small
// registry (drivers.go), renders the nodes' files with bootstrap, and keeps its state in
// $KUBEFORGE_HOME (internal/state). The CLI is a thin layer over it: flags -> spec -> a call
// here. Nothing here exits the process; errors carry an exit code and a fix (internal/kferr).
//
//	p, _ := cluster.New(cluster.Options{})
//	defer p.Close()
//	res, err := p.Create(ctx, spec.Default("dev"), cluster.CreateOptions{})
//	c, err := p.Open(ctx, "dev")   // then c.Status, c.Stop, c.AddNode, c.Delete...
package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// Options configure a Provider.
type Options struct {
	// Home is the state directory; empty means $KUBEFORGE_HOME, else ~/.kubeforge.
	Home string
	// UserKubeconfig is the kubeconfig contexts are merged into; empty means the first file of
	// $KUBECONFIG, else ~/.kube/config.
	UserKubeconfig string
	// Artifacts is the directory whose bin/ holds the node binaries node images are built from;
	// empty means found next to this executable (see ArtifactsDir).
	Artifacts string
	Log       *ui.Logger
}

// Provider works on every cluster of one state directory, each on the driver it was made with.
// It opens drivers as they are needed; Close closes them.
type Provider struct {
	home       state.Home
	kubeconfig string
	artifacts  string
	log        *ui.Logger

	mu      sync.Mutex
	drivers map[driverKey]*openDriver
}

// New returns a Provider; it opens no driver yet.
func New(o Options) (*Provider, error) {
	home := o.Home
	if home == "" {
		h, err := state.DefaultHome()
		if err != nil {
			return nil, err
		}
		home = h
	}
	kc := o.UserKubeconfig
	if kc == "" {
		kc = UserKubeconfig()
	}
	log := o.Log
	if log == nil {
		log = ui.Discard()
	}
	return &Provider{home: state.Home(home), kubeconfig: kc, artifacts: o.Artifacts, log: log, drivers: map[driverKey]*openDriver{}}, nil
}

// Close closes the drivers the Provider opened.
func (p *Provider) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.drivers {
		if d.driver != nil {
			d.close()
		}
	}
	p.drivers = map[driverKey]*openDriver{}
}

// UserKubeconfigPath is the kubeconfig contexts are merged into.
func (p *Provider) UserKubeconfigPath() string { return p.kubeconfig }

// Cluster is one cluster, opened: its record as read once, and its driver, answering.
type Cluster struct {
	p      *Provider
	name   string
	dir    state.Dir
	rec    state.Record
	hasRec bool
	driver provision.Driver
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Driver is the name of the driver the cluster runs on.
func (c *Cluster) Driver() string { return c.driver.Name() }

// Open returns cluster name with its driver opened and answering. Its record says which driver;
// a cluster without one (what remains of an interrupted start) or whose record is damaged is
// looked for on every local driver (see unrecordedDrivers), with a warning for the latter, so
// that it can still be deleted.
func (p *Provider) Open(ctx context.Context, name string) (*Cluster, error) {
	dir, err := p.home.Dir(name)
	if err != nil {
		return nil, kferr.Usage("--name: %v", errors.Unwrap(err))
	}
	rec, ok, err := dir.Load()
	var d provision.Driver
	switch {
	case err != nil:
		p.log.Warnf("%v; looking for its machines", err)
		d, err = p.findUnrecorded(ctx, name)
	case ok:
		d, err = p.driver(ctx, settingsOf(rec.Spec))
	default:
		d, err = p.findUnrecorded(ctx, name)
	}
	if err != nil {
		return nil, err
	}
	return &Cluster{p: p, name: name, dir: dir, rec: rec, hasRec: ok, driver: d}, nil
}

// unrecordedDrivers are where machines of a cluster without a (readable) record are looked for:
// Docker, then the local libvirt daemon. A cluster made through a remote libvirt URI is always
// recorded: its record is written before any machine is made.
func unrecordedDrivers() []driverSettings {
	return []driverSettings{{name: spec.DriverDocker}, {name: spec.DriverKVM}}
}

// findUnrecorded returns the driver that has machines of cluster name, else Docker (there is
// nothing to find, and commands say so). Docker not answering is an error (the machines may be
// there: the user must see why kubeforge cannot tell); a local libvirt daemon that does not answer
// is passed over, as List does: most users have none, and a missing cluster must still be
// reported as missing (and deleting it must succeed) without one.
func (p *Provider) findUnrecorded(ctx context.Context, name string) (provision.Driver, error) {
	var first provision.Driver
	for i, s := range unrecordedDrivers() {
		d, err := p.driver(ctx, s)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			p.log.Debugf("looking for cluster %s on %s: %v", name, s.name, err)
			continue
		}
		nodes, err := d.Nodes(ctx, name)
		if err != nil {
			return nil, err
		}
		if len(nodes) > 0 {
			return d, nil
		}
		if first == nil {
			first = d
		}
	}
	return first, nil
}

// Listed is one cluster of List: its status, or why it could not be read (its driver does not
// answer, say).
type Listed struct {
	Name   string
	Driver string
	Status Status
	Err    error
}

// List returns every cluster, in name order: those recorded in the state directory (each on the
// driver it was made with), those whose record is damaged, and those Docker has machines or
// networks of. Each driver is opened once; a cluster whose driver does not answer is listed with
// the error, so an unreachable hypervisor or a stopped Docker hides nothing else.
func (p *Provider) List(ctx context.Context) ([]Listed, error) { return p.list(ctx, false) }

// Names lists the clusters as List does, without their status (for shell completion).
func (p *Provider) Names(ctx context.Context) ([]string, error) {
	all, err := p.list(ctx, true)
	var out []string
	for _, l := range all {
		out = append(out, l.Name)
	}
	return out, err
}

func (p *Provider) list(ctx context.Context, namesOnly bool) ([]Listed, error) {
	recorded, damaged, err := p.home.Clusters()
	if err != nil {
		return nil, err
	}
	sels := map[string]driverSettings{}
	for n := range recorded {
		dir, err := p.home.Dir(n)
		if err != nil {
			continue
		}
		if rec, ok, err := dir.Load(); err == nil && ok {
			sels[n] = settingsOf(rec.Spec)
		}
	}
	for _, n := range damaged {
		sels[n] = driverSettings{name: spec.DriverDocker}
	}
	// Machines no record names (what an interrupted start left): on Docker (whose error is the
	// user's to see) and on the local libvirt daemon when one answers.
	for i, s := range unrecordedDrivers() {
		d, err := p.driver(ctx, s)
		if err != nil {
			continue
		}
		names, err := d.Clusters(ctx)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			p.log.Warnf("listing the VMs of %s: %v", d.Name(), err)
			continue
		}
		for _, n := range names {
			if _, ok := sels[n]; !ok && spec.ValidateName(n) == nil {
				sels[n] = s
			}
		}
	}
	var out []Listed
	for _, n := range sortedKeys(sels) {
		if namesOnly {
			out = append(out, Listed{Name: n, Driver: sels[n].name})
			continue
		}
		l := Listed{Name: n, Driver: sels[n].name}
		c, err := p.Open(ctx, n)
		if err == nil {
			l.Status, err = c.Status(ctx)
		}
		l.Err = err
		out = append(out, l)
	}
	return out, nil
}

// DeleteAll deletes every cluster List finds; each is deleted whatever happens to the others,
// and the failures are returned together. deleting is called before each.
func (p *Provider) DeleteAll(ctx context.Context, deleting func(name string) func(error) error) (int, error) {
	all, err := p.List(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, l := range all {
		done := deleting(l.Name)
		c, err := p.Open(ctx, l.Name)
		if err != nil {
			done(err)
			errs = append(errs, fmt.Errorf("cluster %s was not deleted: %w", l.Name, err))
		} else if err := done(c.Delete(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", l.Name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return len(all), errors.Join(errs...)
}
