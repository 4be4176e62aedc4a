package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
	"kubeforge.dev/kubeforge/provision/docker"
)

// The local registry: one container shared by every Docker cluster (provision/docker's
// RegistryName), distribution's registry built from its module.
const (
	// RegistryVersion is distribution's release (images/images.mk builds the same).
	RegistryVersion = "v3.0.0"
	// DefaultRegistryPort is the registry's host port on 127.0.0.1 unless told otherwise (kind's
	// and k3d's examples use 5001: macOS's AirPlay takes 5000).
	DefaultRegistryPort = 5001
)

// registryConfig is the registry's configuration (distribution's cmd/registry/config-example.yml,
// with deletes enabled): filesystem storage on the data volume, plain HTTP on :5000.
const registryConfig = `version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`

// registryConfigPath is where the image holds registryConfig (distribution's default path).
const registryConfigPath = "/etc/distribution/config.yml"

// registryImage is the registry's image, kubeforge.local/registry:<version>, built here.
func registryImage() images.ProgramImage {
	return images.ProgramImage{
		Program: "registry", Version: RegistryVersion,
		Estimate: "about 3 minutes on 2 cores, seconds with a warm Go build cache",
		Spec: func(bin string) oci.Spec {
			s := oci.Program(oci.Registry+"/registry:"+RegistryVersion, "registry", bin, "serve", registryConfigPath)
			// No OpenTelemetry exporter: it would retry an absent collector forever.
			s.Env = []string{oci.DefaultPath, "OTEL_TRACES_EXPORTER=none"}
			s.Entries = append(s.Entries,
				oci.Entry{Path: registryConfigPath, Type: tar.TypeReg, Data: []byte(registryConfig)},
				oci.Entry{Path: docker.RegistryDataDir, Type: tar.TypeDir})
			return s
		},
	}
}

// RegistryInfo is the local registry as `kubeforge registry list` shows it.
type RegistryInfo struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// State is Docker's (running, exited...).
	State string `json:"state"`
	// HostPort is its port on 127.0.0.1: push to localhost:<HostPort>/NAME:TAG.
	HostPort int    `json:"hostPort"`
	Host     string `json:"host"`
	// Clusters are the clusters whose networks it is connected to.
	Clusters []string `json:"clusters"`
	// Repositories are what it holds (its /v2/_catalog); CatalogError says why they are unknown.
	Repositories []string `json:"repositories"`
	CatalogError string   `json:"catalogError,omitempty"`
	Volume       string   `json:"volume"`
}

// registryInfo describes r.
func registryInfo(ctx context.Context, r docker.Registry) RegistryInfo {
	info := RegistryInfo{Name: docker.RegistryName, Image: r.Image, State: r.State, HostPort: r.HostPort,
		Host: fmt.Sprintf("localhost:%d", r.HostPort), Clusters: []string{}, Repositories: []string{}, Volume: docker.RegistryVolume}
	for _, n := range r.NetworkNames() {
		if c, ok := strings.CutPrefix(n, docker.NetworkName("")); ok && spec.ValidateName(c) == nil {
			info.Clusters = append(info.Clusters, c)
		}
	}
	if !r.Running() {
		info.CatalogError = "not running"
		return info
	}
	repos, err := registryCatalog(ctx, r.HostPort)
	if err != nil {
		info.CatalogError = err.Error()
	} else {
		info.Repositories = repos
	}
	return info
}

// registryCatalog lists the registry's repositories (GET /v2/_catalog).
func registryCatalog(ctx context.Context, port int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v2/_catalog?n=1000", port), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v2/_catalog: %s", resp.Status)
	}
	var body struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET /v2/_catalog: %w", err)
	}
	if body.Repositories == nil {
		body.Repositories = []string{}
	}
	return body.Repositories, nil
}

// registryServes waits until the registry answers on its host port (GET /v2/ is 200).
func registryServes(ctx context.Context, port int) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/", port)
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return kferr.Environment("look at its log: docker logs "+docker.RegistryName, "the registry does not answer at %s: %v", url, last)
	}
	return nil
}

// Registry returns the local registry, or ok false when there is none.
func (p *Provider) Registry(ctx context.Context) (RegistryInfo, bool, error) {
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return RegistryInfo{}, false, err
	}
	r, ok, err := d.FindRegistry(ctx)
	if err != nil || !ok {
		return RegistryInfo{}, ok, err
	}
	return registryInfo(ctx, r), true, nil
}

// CreateRegistry makes the local registry on 127.0.0.1:port (built and loaded into Docker the
// first time) and returns once it serves; made says it was not there before. An existing registry
// is started when stopped; one on another port is an error naming the fix.
func (p *Provider) CreateRegistry(ctx context.Context, port int) (info RegistryInfo, made bool, err error) {
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return info, false, err
	}
	defer docker.LockRegistry()()
	r, made, err := p.ensureRegistry(ctx, d, port, true)
	if err != nil {
		return info, made, err
	}
	return registryInfo(ctx, r), made, nil
}

// ensureRegistry returns the running registry, making it on port when missing (made), starting it
// when stopped. An existing registry on another port is an error when strict, else kept (its port
// is the one that counts). The caller holds docker.LockRegistry.
func (p *Provider) ensureRegistry(ctx context.Context, d *docker.Driver, port int, strict bool) (docker.Registry, bool, error) {
	if port == 0 {
		port = DefaultRegistryPort
	}
	r, ok, err := d.FindRegistry(ctx)
	if err != nil {
		return r, false, err
	}
	if ok {
		if strict && r.HostPort != port {
			return r, false, kferr.Usage("the registry already runs on 127.0.0.1:%d: push to localhost:%d, or make it anew on port %d with `kubeforge registry delete`, then `kubeforge registry create --port %d`",
				r.HostPort, r.HostPort, port, port)
		}
		if !r.Running() {
			st := p.log.Step("Starting the registry " + docker.RegistryName)
			if err := st.Done(d.StartRegistry(ctx)); err != nil {
				return r, false, err
			}
		}
		if err := registryServes(ctx, r.HostPort); err != nil {
			return r, false, err
		}
		r, _, err = d.FindRegistry(ctx)
		return r, false, err
	}
	ref, err := p.registryImageInDocker(ctx, d)
	if err != nil {
		return r, false, err
	}
	st := p.log.Step(fmt.Sprintf("Creating the registry %s on 127.0.0.1:%d", docker.RegistryName, port))
	r, err = d.CreateRegistry(ctx, ref, port)
	if err == nil {
		err = registryServes(ctx, port)
	}
	return r, err == nil, st.Done(err)
}

// registryImageInDocker builds the registry's image when missing and loads it into the host's
// Docker (the registry is a host-level container, not a pod); it returns its name.
func (p *Provider) registryImageInDocker(ctx context.Context, d *docker.Driver) (string, error) {
	im := registryImage()
	archive, id, err := p.programImage(ctx, im)
	if err != nil {
		return "", err
	}
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := d.LoadImage(ctx, im.Ref(), id, f); err != nil {
		return "", err
	}
	return im.Ref(), nil
}

// DeleteRegistry disconnects the local registry from every cluster's network and removes it, and
// its data volume unless keepData; existed says there was something to remove. Clusters made with
// --registry get it back (empty) at their next start.
func (p *Provider) DeleteRegistry(ctx context.Context, keepData bool) (existed bool, err error) {
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return false, err
	}
	defer docker.LockRegistry()()
	return d.DeleteRegistry(ctx, keepData)
}

// registryDriver is the Docker driver of a cluster that may have the registry, or an error saying
// the registry is Docker-only.
func registryDriver(d provision.Driver, cluster string) (*docker.Driver, error) {
	dd, ok := d.(*docker.Driver)
	if !ok {
		return nil, kferr.Usage("cluster %q runs on the %s driver: the local registry is Docker-only for now (push to it and `kubeforge image load` into VM clusters instead)", cluster, d.Name())
	}
	return dd, nil
}

// wireRegistry makes the registry when missing (on the spec's port, else the default) and
// connects it to the cluster's network at the network's RegistryIP; it returns the registry and
// whether this call made it.
func (p *Provider) wireRegistry(ctx context.Context, d *docker.Driver, network provision.Network, port int) (docker.Registry, bool, error) {
	ip := network.RegistryIP()
	if !ip.IsValid() {
		return docker.Registry{}, false, fmt.Errorf("network %s (%s) has no room for the registry", network.Name, network.Subnet)
	}
	defer docker.LockRegistry()()
	r, made, err := p.ensureRegistry(ctx, d, port, false)
	if err != nil {
		return r, made, err
	}
	st := p.log.Step(fmt.Sprintf("Connecting the registry to network %s (%s)", network.Name, ip))
	return r, made, st.Done(d.ConnectRegistry(ctx, network.Name, ip))
}

// stepRegistry (start --registry, Docker) makes the registry when missing and connects it to the
// new cluster's network before the nodes are made, whose files then hold containerd's mirrors of
// it. Undo disconnects it (so the network can go) and removes it when this start made it.
func stepRegistry() step {
	made := false
	return step{run: func(ctx context.Context, b *build) error {
		d, err := registryDriver(b.driver, b.spec.Name)
		if err != nil {
			return err
		}
		r, m, err := b.p.wireRegistry(ctx, d, b.network, b.spec.RegistryPort)
		made = m
		if err != nil {
			return err
		}
		b.spec.RegistryPort = r.HostPort
		return nil
	}, undo: func(ctx context.Context, b *build) error {
		d, err := registryDriver(b.driver, b.spec.Name)
		if err != nil {
			return nil
		}
		defer docker.LockRegistry()()
		if made {
			_, err := d.DeleteRegistry(ctx, false)
			return err
		}
		return d.DisconnectRegistry(ctx, b.network.Name)
	}}
}

// stepRegistryHosting publishes the registry in the cluster (KEP-1755's ConfigMap
// kube-public/local-registry-hosting), once the API server serves.
func stepRegistryHosting() step {
	return step{run: func(ctx context.Context, b *build) error {
		return b.registryHosting(ctx)
	}}
}

func (b *build) registryHosting(ctx context.Context) error {
	if b.spec.RegistryPort == 0 {
		return nil
	}
	dyn, err := b.kube.dynamic()
	if err != nil {
		return err
	}
	objs := addons.LocalRegistryHosting(fmt.Sprintf("localhost:%d", b.spec.RegistryPort), bootstrap.RegistryAlias,
		fmt.Sprintf("%s:%d", b.network.RegistryIP(), bootstrap.RegistryPort))
	return addons.ApplyUntil(ctx, dyn, objs, time.Second)
}

// writeRegistryFiles copies containerd's mirror files of the registry into every node (running
// or stopped: containerd reads them at each pull).
func writeRegistryFiles(ctx context.Context, nodes []provision.Node, port int, network provision.Network) error {
	files, err := bootstrap.RegistryFiles(port, network.RegistryIP())
	if err != nil {
		return err
	}
	tarball, err := files.Tar()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := n.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
			errs = append(errs, fmt.Errorf("node %s: writing the registry's mirror files: %w", n.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// stepRegistryAgain (resume, and `start --registry` of an existing cluster) makes the registry
// when it is gone, starts it when stopped, connects it to the cluster's network again and
// rewrites every node's mirror files (a node made anew by an upgrade, a registry made anew on
// another port), then the ConfigMap once the API server serves. The record keeps the port.
func stepRegistryAgain(l *live) step {
	return step{name: "Registry " + docker.RegistryName, run: func(ctx context.Context, b *build) error {
		d, err := registryDriver(b.driver, l.name)
		if err != nil {
			return err
		}
		if b.network, err = d.EnsureNetwork(ctx, l.name); err != nil {
			return err
		}
		r, _, err := b.p.wireRegistry(ctx, d, b.network, l.rec.Spec.RegistryPort)
		if err != nil {
			return err
		}
		if err := writeRegistryFiles(ctx, l.nodes, r.HostPort, b.network); err != nil {
			return err
		}
		b.spec.Registry, b.spec.RegistryPort = true, r.HostPort
		if !l.rec.Spec.Registry || l.rec.Spec.RegistryPort != r.HostPort {
			l.rec.Spec.Registry, l.rec.Spec.RegistryPort = true, r.HostPort
			if err := l.dir.Save(l.rec); err != nil {
				return err
			}
		}
		return b.registryHosting(ctx)
	}}
}

// connectRegistry wires the local registry into a running cluster (`start --registry` of an
// existing cluster). The caller holds the cluster's lock.
func (c *Cluster) connectRegistry(ctx context.Context) error {
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	if _, err := registryDriver(c.driver, c.name); err != nil {
		return err
	}
	k, err := c.running(ctx, l)
	if err != nil {
		return err
	}
	b := &build{p: c.p, spec: c.rec.Spec, dir: c.dir, driver: c.driver, kube: k}
	return c.p.runSteps(ctx, b, []step{stepRegistryAgain(l)}, false)
}

// disconnectRegistry takes the registry off the cluster's network (before the network is
// removed); the registry itself stays, for the other clusters and the images pushed.
func disconnectRegistry(ctx context.Context, d provision.Driver, cluster string) error {
	dd, ok := d.(*docker.Driver)
	if !ok {
		return nil
	}
	defer docker.LockRegistry()()
	return dd.DisconnectRegistry(ctx, docker.NetworkName(cluster))
}
