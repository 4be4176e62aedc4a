package cluster

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
	"kubeforge.dev/kubeforge/provision/docker"
	"kubeforge.dev/kubeforge/provision/libvirt"
)

// driverSettings select a driver and its settings (a cluster's, from its spec).
type driverSettings struct {
	name, libvirtURI, accel string
}

type driverKey = driverSettings

func settingsOf(c spec.Cluster) driverSettings {
	s := driverSettings{name: c.Driver, libvirtURI: c.LibvirtURI, accel: c.Accel}
	if s.name == "" {
		s.name = spec.DriverDocker
	}
	return s
}

// driverKind is one entry of the registry: how to open the driver, and the node image of a
// cluster on it (built when missing).
type driverKind struct {
	open      func(ctx context.Context, p *Provider, s driverSettings) (provision.Driver, func(), error)
	nodeImage func(ctx context.Context, p *Provider, c spec.Cluster) (string, error)
}

// registry lists the drivers kubeforge knows, by the name users give --driver.
func registry() map[string]driverKind {
	return map[string]driverKind{
		spec.DriverDocker: {open: openDocker, nodeImage: dockerNodeImage},
		spec.DriverKVM:    {open: openLibvirt, nodeImage: vmNodeImage},
	}
}

// DriverNames are the names of the drivers kubeforge knows.
func DriverNames() []string { return slices.Sorted(maps.Keys(registry())) }

type openDriver struct {
	driver provision.Driver
	close  func()
	err    error
}

// driver returns the driver of settings s, opened once per Provider and pinged.
func (p *Provider) driver(ctx context.Context, s driverSettings) (provision.Driver, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o, ok := p.drivers[s]; ok {
		return o.driver, o.err
	}
	kind, ok := registry()[s.name]
	if !ok {
		return nil, kferr.Usage("unknown driver %q: use one of %v", s.name, DriverNames())
	}
	o := &openDriver{}
	o.driver, o.close, o.err = kind.open(ctx, p, s)
	if o.err == nil {
		if o.err = o.driver.Ping(ctx); o.err != nil {
			o.close()
			o.driver = nil
		}
	}
	p.drivers[s] = o
	return o.driver, o.err
}

func openDocker(ctx context.Context, p *Provider, _ driverSettings) (provision.Driver, func(), error) {
	d, err := docker.New(ctx)
	if err != nil {
		return nil, nil, err
	}
	d.SetLog(p.log)
	return d, func() { d.Close() }, nil
}

func openLibvirt(_ context.Context, p *Provider, s driverSettings) (provision.Driver, func(), error) {
	d, err := libvirt.New(libvirt.Options{URI: s.libvirtURI, Accel: s.accel, Log: p.log,
		KeysDir: func(cluster string) string {
			dir, err := p.home.Dir(cluster)
			if err != nil {
				return ""
			}
			return dir.Machines()
		}})
	if err != nil {
		return nil, nil, err
	}
	return d, func() { d.Close() }, nil
}

// dockerDriver returns the Docker driver, the source of host images (`image load`) whatever
// driver a cluster runs on.
func (p *Provider) dockerDriver(ctx context.Context) (*docker.Driver, error) {
	d, err := p.driver(ctx, driverSettings{name: spec.DriverDocker})
	if err != nil {
		return nil, err
	}
	return d.(*docker.Driver), nil
}

// dockerNodeImage is the image the user named (it must be in Docker), or the node image for the
// binaries in the artifacts directory, built when missing.
func dockerNodeImage(ctx context.Context, p *Provider, c spec.Cluster) (string, error) {
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return "", err
	}
	if c.Image != "" {
		ok, err := images.Exists(ctx, d.Client(), c.Image)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", kferr.Usage("image %s is not in Docker: build it with `kubeforge image build` or load it with `docker load`", c.Image)
		}
		return c.Image, nil
	}
	dir, err := p.ArtifactsDir()
	if err != nil {
		return "", err
	}
	return images.Build(ctx, images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: c.KubernetesVersion, Client: d.Client(), Log: p.log})
}

// vmNodeImage is the VM node image's directory: the one the user named, or the one built (when
// missing) from the binaries in the artifacts directory.
func vmNodeImage(ctx context.Context, p *Provider, c spec.Cluster) (string, error) {
	if c.Image != "" {
		im, err := vmimage.Load(c.Image)
		return im.Dir, err
	}
	dir, err := p.ArtifactsDir()
	if err != nil {
		return "", err
	}
	im, err := images.BuildVM(ctx, images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: c.KubernetesVersion, Log: p.log})
	return im.Dir, err
}

// ArtifactsEnv names the directory holding bin/ with the node binaries.
const ArtifactsEnv = "KUBEFORGE_ARTIFACTS"

// ArtifactsDir finds the directory whose bin/ holds the node binaries: Options.Artifacts,
// $KUBEFORGE_ARTIFACTS, else the parent of this executable's directory (bin/kubeforge, as `make`
// builds it).
func (p *Provider) ArtifactsDir() (string, error) {
	if p.artifacts != "" {
		return p.artifacts, nil
	}
	if d := os.Getenv(ArtifactsEnv); d != "" {
		return d, nil
	}
	exe, err := os.Executable()
	if err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dir := filepath.Dir(filepath.Dir(exe))
			if _, err := os.Stat(filepath.Join(dir, "bin", "kubeforge-node")); err == nil {
				return dir, nil
			}
		}
	}
	return "", kferr.Environment("run `make` in the kubeforge source tree (it builds bin/kubeforge-node next to bin/kubeforge), set KUBEFORGE_ARTIFACTS to the directory holding that bin/, or pass --image",
		"the node image is not built and no node binaries were found next to %s", exeName())
}

func exeName() string {
	exe, err := os.Executable()
	if err != nil {
		return "kubeforge"
	}
	return exe
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
