package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
	"kubeforge.dev/kubeforge/provision"
)

// LoadImages copies images from the host's Docker into every running node of the cluster
// (skipping nodes that have them) and remembers them, so that nodes added later get them too.
// An image the host does not have is refused before anything is copied, and only images that
// were loaded are remembered.
func (c *Cluster) LoadImages(ctx context.Context, refs []string) error {
	unlock, err := c.lock(ctx, "image load")
	if err != nil {
		return err
	}
	defer unlock()
	l, err := c.live(ctx)
	if err != nil {
		return err
	}
	d, err := c.p.dockerDriver(ctx)
	if err != nil {
		return err
	}
	for _, r := range refs {
		ok, err := images.Exists(ctx, d.Client(), r)
		if err != nil {
			return err
		}
		if !ok {
			return kferr.Usage("image %s is not in the host's Docker: build it (`docker build -t %s .`) or pull it (`docker pull %s`) first", r, r, r)
		}
	}
	var running []provision.Node
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err == nil && st == provision.StateRunning {
			running = append(running, n)
		} else {
			c.p.log.Warnf("node %s is not running: it will not have the image(s)", n.Name())
		}
	}
	if len(running) == 0 {
		return kferr.Environment(fmt.Sprintf("start a node with `kubeforge node start NAME --name %s`", c.name), "cluster %q has no running node", c.name)
	}
	if err := c.p.loadImages(ctx, running, refs); err != nil {
		return err
	}
	for _, r := range refs {
		if !slices.Contains(l.rec.Images, r) {
			l.rec.Images = append(l.rec.Images, r)
		}
	}
	return l.dir.Save(l.rec)
}

// loadImages copies host images into nodes.
func (p *Provider) loadImages(ctx context.Context, nodes []provision.Node, refs []string) error {
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return err
	}
	return images.Load(ctx, d.Client(), nodes, refs, p.log)
}

// Images lists the images in the cluster's nodes, and which nodes have each.
func (c *Cluster) Images(ctx context.Context) ([]images.NodeImage, error) {
	nodes, err := c.machines(ctx)
	if err != nil {
		return nil, err
	}
	return images.List(ctx, slices.DeleteFunc(nodes, func(n provision.Node) bool {
		return provision.IsLoadBalancer(n) || provision.IsService(n)
	}))
}

// Image kinds for BuildImage.
const (
	ImageDocker = "docker"
	ImageVM     = "vm"
)

// BuildImage builds the node image of kind (ImageDocker, ImageVM) for Kubernetes version from
// the node binaries, unless it is cached, and returns its name: a Docker tag, or a VM image's
// directory.
func (p *Provider) BuildImage(ctx context.Context, kind, version string) (string, error) {
	dir, err := p.ArtifactsDir()
	if err != nil {
		return "", err
	}
	opts := images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: version, Log: p.log}
	switch kind {
	case ImageVM:
		im, err := images.BuildVM(ctx, opts)
		return im.Dir, err
	case ImageDocker:
		d, err := p.dockerDriver(ctx)
		if err != nil {
			return "", err
		}
		opts.Client = d.Client()
		return images.Build(ctx, opts)
	}
	return "", kferr.Usage("--kind %q is not one of docker (the container node image) or vm (the VM node image)", kind)
}

// PruneOptions tune PruneImages.
type PruneOptions struct {
	// LibvirtURI is the hypervisor whose pool is pruned too ("": the local one, skipped quietly
	// when it does not answer).
	LibvirtURI string
}

// Pruned is what PruneImages removed.
type Pruned struct {
	DockerImages []string `json:"dockerImages"`
	VMImages     []string `json:"vmImages"`
	VMVolumes    []string `json:"vmVolumes"`
}

// PruneImages removes the node images this kubeforge's binaries no longer make: Docker's (an
// image a container still uses stays), the cached VM images, and the VM images uploaded to the
// hypervisor's pool that no VM runs from. The images recorded clusters were made from stay:
// `node add` uses them. Docker not answering is a warning; so is a libvirt named by
// o.LibvirtURI.
func (p *Provider) PruneImages(ctx context.Context, o PruneOptions) (Pruned, error) {
	res := Pruned{DockerImages: []string{}, VMImages: []string{}, VMVolumes: []string{}}
	dir, err := p.ArtifactsDir()
	if err != nil {
		return res, err
	}
	opts := images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: versions.Default().Kubernetes, Log: p.log}
	keepVM, err := images.VMImageDir(opts)
	if err != nil {
		return res, err
	}
	recordedDocker, recordedVM, err := p.recordedImages()
	if err != nil {
		return res, err
	}
	if res.VMImages, err = images.PruneVMImages(keepVM, recordedVM); err != nil {
		return res, err
	}
	keepKeys := []string{filepath.Base(keepVM)}
	for _, d := range recordedVM {
		keepKeys = append(keepKeys, filepath.Base(filepath.Clean(d)))
	}
	// Pruning makes no VM: the driver is opened as for emulation, so a host without KVM is not
	// refused.
	vm, err := p.driver(ctx, driverSettings{name: spec.DriverKVM, libvirtURI: o.LibvirtURI, accel: spec.AccelTCG})
	switch {
	case err != nil && o.LibvirtURI != "":
		p.log.Warnf("libvirt's VM image volumes were not pruned: %v", err)
	case err != nil:
		p.log.Debugf("libvirt's VM image volumes were not pruned: %v", err)
	default:
		if pr, ok := vm.(provision.ImagePruner); ok {
			if res.VMVolumes, err = pr.PruneImages(ctx, keepKeys); err != nil {
				return res, err
			}
		}
	}
	d, err := p.dockerDriver(ctx)
	if err != nil {
		p.log.Warnf("Docker's node images were not pruned: %v", err)
		return res, nil
	}
	keep, err := images.Ref(opts)
	if err != nil {
		return res, err
	}
	keepDocker := append(recordedDocker, keep)
	// The current node image of every other supported release whose node binary is built: not
	// an older build's, so not prunable.
	for _, rel := range versions.All()[1:] {
		if _, err := os.Stat(images.NodeBinary(dir, rel.Kubernetes)); err != nil {
			continue
		}
		o := opts
		o.KubernetesVersion = rel.Kubernetes
		if ref, err := images.Ref(o); err == nil {
			keepDocker = append(keepDocker, ref)
		}
	}
	res.DockerImages, err = images.Prune(ctx, d.Client(), keepDocker, p.log)
	if res.DockerImages == nil {
		res.DockerImages = []string{}
	}
	return res, err
}

// recordedImages returns the node images the recorded clusters were made from: Docker image
// references, and VM image directories.
func (p *Provider) recordedImages() (docker, vm []string, err error) {
	recorded, _, err := p.home.Clusters()
	if err != nil {
		return nil, nil, err
	}
	for name, driver := range recorded {
		dir, err := p.home.Dir(name)
		if err != nil {
			continue
		}
		rec, ok, err := dir.Load()
		if err != nil || !ok || rec.Image == "" {
			continue
		}
		if driver == spec.DriverKVM {
			vm = append(vm, rec.Image)
		} else {
			docker = append(docker, rec.Image)
		}
	}
	return docker, vm, nil
}

// ReleaseImage says, for one supported Kubernetes release, what this machine has of it.
type ReleaseImage struct {
	versions.Release
	Default bool `json:"default"`
	// NodeBinary is set when its node binary is built; Image names its Docker node image when
	// Docker has it for the current binaries (empty: built on first use).
	NodeBinary bool   `json:"nodeBinary"`
	Image      string `json:"image,omitempty"`
}

// Releases lists the supported Kubernetes releases, newest (the default) first, with what this
// machine has of each. Docker not answering leaves Image empty.
func (p *Provider) Releases(ctx context.Context) []ReleaseImage {
	dir, _ := p.ArtifactsDir()
	var cli *client.Client
	if dir != "" {
		if d, err := p.dockerDriver(ctx); err == nil {
			cli = d.Client()
		}
	}
	var out []ReleaseImage
	for _, r := range versions.All() {
		ri := ReleaseImage{Release: r, Default: r.IsDefault()}
		if dir != "" {
			if _, err := os.Stat(images.NodeBinary(dir, r.Kubernetes)); err == nil {
				ri.NodeBinary = true
				if ref, err := images.Ref(images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: r.Kubernetes}); err == nil && cli != nil {
					if ok, _ := images.Exists(ctx, cli, ref); ok {
						ri.Image = ref
					}
				}
			}
		}
		out = append(out, ri)
	}
	return out
}

// KubectlFor returns the kubectl to use with cluster name: "" for the one the CLI links, when
// the cluster's version is within kubectl's skew (one minor either way) of it; else a kubectl
// of the cluster's own version, built on first use.
func (p *Provider) KubectlFor(ctx context.Context, name string) (string, error) {
	dir, err := p.home.Dir(name)
	if err != nil {
		return "", err
	}
	rec, ok, err := dir.Load()
	if err != nil || !ok || rec.Spec.KubernetesVersion == "" {
		return "", err
	}
	skew := minorOf(rec.Spec.KubernetesVersion) - minorOf(versions.Default().Kubernetes)
	if skew >= -1 && skew <= 1 {
		return "", nil
	}
	art, err := p.ArtifactsDir()
	if err != nil {
		return "", err
	}
	if err := images.EnsureKubectl(ctx, art, rec.Spec.KubernetesVersion, p.log); err != nil {
		return "", err
	}
	return images.Kubectl(art, rec.Spec.KubernetesVersion), nil
}
