package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
	"kubeforge.dev/kubeforge/provision/docker"
	"kubeforge.dev/kubeforge/provision/libvirt"
)

// env is what a command works with: the driver and the cluster provider on it. docker is the
// Docker client's driver, also used by a VM cluster for images on the host (image load).
type env struct {
	driver   provision.Driver
	docker   *docker.Driver
	vm       *libvirt.Driver // nil unless the driver is kvm
	provider *cluster.Provider
}

// driverSel names a driver and its settings.
type driverSel struct {
	name, libvirtURI, accel string
}

func (s driverSel) emulated() bool {
	return spec.Cluster{Driver: s.name, Accel: s.accel}.Emulated()
}

// selFor is the driver of cluster name as recorded when it was made (docker when unrecorded).
func selFor(name string) (driverSel, error) {
	rec, ok, err := cluster.LoadRecord("", name)
	if err != nil || !ok || rec.Spec.Driver == "" {
		return driverSel{name: spec.DriverDocker}, err
	}
	return driverSel{name: rec.Spec.Driver, libvirtURI: rec.Spec.LibvirtURI, accel: rec.Spec.Accel}, nil
}

// env returns the environment of the Docker driver.
func (g *globals) env(ctx context.Context) (*env, error) {
	return g.envWith(ctx, driverSel{name: spec.DriverDocker})
}

// envWith returns the environment of the selected driver.
func (g *globals) envWith(ctx context.Context, sel driverSel) (*env, error) {
	d, err := docker.New(ctx)
	if err != nil {
		return nil, err
	}
	e := &env{driver: d, docker: d}
	if sel.name == spec.DriverKVM {
		vm, err := libvirt.New(libvirt.Options{URI: sel.libvirtURI, Accel: sel.accel, Log: g.log(),
			KeysDir: func(c string) string {
				dir, _ := cluster.MachineDir("", c)
				return dir
			}})
		if err != nil {
			d.Close()
			return nil, err
		}
		e.driver, e.vm = vm, vm
	}
	e.provider = &cluster.Provider{Driver: e.driver, Log: g.log(), Image: e.nodeImage(g),
		Load: func(ctx context.Context, nodes []provision.Node, refs []string) error {
			return images.Load(ctx, d.Client(), nodes, refs, g.log())
		}}
	return e, nil
}

// pingedEnv is env after checking that the driver's backend answers.
func (g *globals) pingedEnv(ctx context.Context) (*env, error) {
	return g.pingedEnvWith(ctx, driverSel{name: spec.DriverDocker})
}

func (g *globals) pingedEnvWith(ctx context.Context, sel driverSel) (*env, error) {
	e, err := g.envWith(ctx, sel)
	if err != nil {
		return nil, err
	}
	if err := e.driver.Ping(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// clusterEnv validates the cluster name, then returns the pinged environment of the cluster's
// driver.
func (g *globals) clusterEnv(ctx context.Context, name string) (*env, error) {
	if _, err := clusterName(name); err != nil {
		return nil, err
	}
	sel, err := selFor(name)
	if err != nil {
		return nil, err
	}
	return g.pingedEnvWith(ctx, sel)
}

// clusterRef is one cluster for forEachCluster: its name, its driver's name, and that driver's
// environment, or why the driver could not be reached (env nil).
type clusterRef struct {
	name, driver string
	env          *env
	err          error
}

// forEachCluster calls fn, in name order, for every cluster: those recorded in the state
// directory (each with the driver it was made with) and those Docker has containers or networks
// of. Each driver's environment is opened (and pinged) once; a cluster whose driver does not
// answer still gets its call, with the error, so one unreachable hypervisor or a stopped Docker
// hides nothing else. Clusters whose state was removed are seen only through Docker.
func (g *globals) forEachCluster(ctx context.Context, fn func(clusterRef) error) error {
	recorded, err := cluster.RecordedClusters("")
	if err != nil {
		return err
	}
	sels := map[string]driverSel{}
	for n := range recorded {
		if sels[n], err = selFor(n); err != nil {
			return err
		}
	}
	type opened struct {
		env *env
		err error
	}
	envs := map[driverSel]opened{}
	defer func() {
		for _, o := range envs {
			if o.env != nil {
				o.env.close()
			}
		}
	}()
	open := func(s driverSel) opened {
		o, ok := envs[s]
		if !ok {
			o.env, o.err = g.pingedEnvWith(ctx, s)
			envs[s] = o
		}
		return o
	}
	dockerSel := driverSel{name: spec.DriverDocker}
	if de := open(dockerSel); de.err == nil {
		names, err := de.env.provider.Clusters(ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			if _, ok := sels[n]; !ok {
				sels[n] = dockerSel
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(sels)) {
		o := open(sels[n])
		if err := fn(clusterRef{name: n, driver: sels[n].name, env: o.env, err: o.err}); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) close() {
	if e.vm != nil {
		e.vm.Close()
	}
	e.docker.Close()
}

// onCluster runs fn with the environment of cluster name (name checked, driver pinged).
func (g *globals) onCluster(cmd *cobra.Command, name string, fn func(*env) error) error {
	e, err := g.clusterEnv(cmd.Context(), name)
	if err != nil {
		return err
	}
	defer e.close()
	return fn(e)
}

// nodeImage returns the ImageFunc of the Docker driver: the image the user named (it must be in
// Docker), or the node image for the binaries next to this executable, built when missing.
func (e *env) nodeImage(g *globals) cluster.ImageFunc {
	return func(ctx context.Context, c spec.Cluster) (string, error) {
		if e.vm != nil {
			return vmImage(ctx, g, c)
		}
		if c.Image != "" {
			ok, err := images.Exists(ctx, e.docker.Client(), c.Image)
			if err != nil {
				return "", err
			}
			if !ok {
				return "", kferr.Usage("image %s is not in Docker: build it with `kubeforge image build` or load it with `docker load`", c.Image)
			}
			return c.Image, nil
		}
		dir, err := artifactsDir()
		if err != nil {
			return "", err
		}
		return images.Build(ctx, images.BuildOptions{
			ArtifactsDir: dir, KubernetesVersion: c.KubernetesVersion,
			Client: e.docker.Client(), Log: g.log(),
		})
	}
}

// vmImage is the VM node image's directory: the one --image names, or the one built (when
// missing) from the binaries next to this executable.
func vmImage(ctx context.Context, g *globals, c spec.Cluster) (string, error) {
	if c.Image != "" {
		im, err := vmimage.Load(c.Image)
		return im.Dir, err
	}
	dir, err := artifactsDir()
	if err != nil {
		return "", err
	}
	im, err := images.BuildVM(ctx, images.BuildOptions{ArtifactsDir: dir, KubernetesVersion: c.KubernetesVersion, Log: g.log()})
	return im.Dir, err
}

// artifactsDir finds the directory whose bin/ holds the node binaries: $KUBEFORGE_ARTIFACTS, else
// the parent of this executable's directory (bin/kubeforge, as `make` builds it).
func artifactsDir() (string, error) {
	if d := os.Getenv("KUBEFORGE_ARTIFACTS"); d != "" {
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

// clusterName validates --name.
func clusterName(name string) (string, error) {
	if err := spec.ValidateName(name); err != nil {
		return "", kferr.Usage("--name: %v", err)
	}
	return name, nil
}

func printJSON(g *globals, v any) error {
	b, err := jsonIndent(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.streams.Out, string(b))
	return err
}
