package docker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/go-connections/nat"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// The local registry is one host-level container shared by every cluster. It carries its own
// label, not the cluster label, so that no cluster's delete (nor a prune of a cluster's
// machines) ever removes it.
const (
	RegistryName   = "kubeforge-registry"
	RegistryVolume = "kubeforge-registry-data"
	// LabelRegistry marks the registry's container and volume.
	LabelRegistry = "dev.kubeforge.registry"
	// RegistryPort is the port the registry listens on in its container (and on the clusters'
	// networks).
	RegistryPort = 5000
	// RegistryDataDir is where its volume is mounted (the registry's filesystem storage).
	RegistryDataDir = "/var/lib/registry"
)

// Registry is the registry's container as Docker sees it.
type Registry struct {
	ID    string
	Image string
	// State is Docker's: running, exited, created, restarting...
	State string
	// HostPort is the port published on 127.0.0.1 (0 when none).
	HostPort int
	// Networks are the networks it is connected to, with its address on each.
	Networks map[string]netip.Addr
}

// Running says whether the registry's container runs.
func (r Registry) Running() bool { return r.State == "running" }

// NetworkNames are the networks the registry is connected to, sorted.
func (r Registry) NetworkNames() []string {
	var out []string
	for n := range r.Networks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// FindRegistry returns the registry's container, or ok false when there is none. A container of
// that name without the registry label is an error naming what to do.
func (d *Driver) FindRegistry(ctx context.Context) (Registry, bool, error) {
	c, err := d.cli.ContainerInspect(ctx, RegistryName)
	if cerrdefs.IsNotFound(err) || (err == nil && strings.TrimPrefix(c.Name, "/") != RegistryName) {
		return Registry{}, false, nil
	}
	if err != nil {
		return Registry{}, false, fmt.Errorf("inspect container %s: %w", RegistryName, err)
	}
	if c.Config == nil || c.Config.Labels[LabelRegistry] != "1" {
		return Registry{}, false, kferr.Environment(fmt.Sprintf("remove or rename that container (docker rm -f %s) if you do not need it", RegistryName),
			"a container named %s exists and was not made by kubeforge (no %s label); not touching it", RegistryName, LabelRegistry)
	}
	r := Registry{ID: c.ID, Networks: map[string]netip.Addr{}}
	if c.Config != nil {
		r.Image = c.Config.Image
	}
	if c.State != nil {
		r.State = c.State.Status
	}
	if c.HostConfig != nil {
		for _, b := range c.HostConfig.PortBindings[nat.Port(fmt.Sprintf("%d/tcp", RegistryPort))] {
			if p, err := strconv.Atoi(b.HostPort); err == nil {
				r.HostPort = p
			}
		}
	}
	if c.NetworkSettings != nil {
		for name, ep := range c.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			a, _ := netip.ParseAddr(ep.IPAddress)
			if ep.IPAMConfig != nil {
				if fixed, err := netip.ParseAddr(ep.IPAMConfig.IPv4Address); err == nil {
					a = fixed
				}
			}
			r.Networks[name] = a
		}
	}
	return r, true, nil
}

// RegistryPortInUse is the error of a host port that is taken.
func RegistryPortInUse(port int) error {
	return kferr.Environment("choose another port with --port, or free it",
		"port 127.0.0.1:%d is already in use: choose another with `kubeforge registry create --port N`, or free it", port)
}

// CreateRegistry makes and starts the registry's container from image, publishing its port on
// 127.0.0.1:hostPort, its storage on the volume RegistryVolume (made when missing, kept when
// there: the images pushed before). The caller has checked that no registry exists; it holds
// LockRegistry.
func (d *Driver) CreateRegistry(ctx context.Context, image string, hostPort int) (Registry, error) {
	if hostPort < 1 || hostPort > 65535 {
		return Registry{}, kferr.Usage("--port must be between 1 and 65535, got %d", hostPort)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)))
	if err != nil {
		return Registry{}, RegistryPortInUse(hostPort)
	}
	l.Close()
	labels := map[string]string{LabelRegistry: "1"}
	v, err := d.cli.VolumeInspect(ctx, RegistryVolume)
	switch {
	case err == nil && v.Labels[LabelRegistry] != "1":
		return Registry{}, kferr.Environment(fmt.Sprintf("remove it (docker volume rm %s) if you do not need it", RegistryVolume),
			"a Docker volume named %s exists and was not made by kubeforge (no %s label); not using it", RegistryVolume, LabelRegistry)
	case err != nil && !cerrdefs.IsNotFound(err):
		return Registry{}, fmt.Errorf("inspect volume %s: %w", RegistryVolume, err)
	case err != nil:
		if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: RegistryVolume, Labels: labels}); err != nil {
			return Registry{}, fmt.Errorf("create volume %s: %w", RegistryVolume, err)
		}
	}
	port := nat.Port(fmt.Sprintf("%d/tcp", RegistryPort))
	conf := &container.Config{
		Image:        image,
		Labels:       labels,
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	host := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		PortBindings:  nat.PortMap{port: {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(hostPort)}}},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: RegistryVolume, Target: RegistryDataDir,
			VolumeOptions: &mount.VolumeOptions{Labels: labels}}},
	}
	sctx, cancel := settling(ctx)
	resp, err := d.cli.ContainerCreate(sctx, conf, host, nil, nil, RegistryName)
	cancel()
	if err == nil && ctx.Err() != nil { // made, but interrupted meanwhile: no container left unstarted
		if rerr := d.removeContainer(context.WithoutCancel(ctx), resp.ID); rerr != nil {
			d.log.Warnf("removing container %s, made as the create was interrupted: %v", RegistryName, rerr)
		}
		err = ctx.Err()
	}
	if err != nil {
		return Registry{}, fmt.Errorf("create container %s: %w", RegistryName, err)
	}
	if err := d.cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		// Docker checks the host port only now: leave no container that cannot start.
		_ = d.cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
		if s := err.Error(); strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use") {
			return Registry{}, RegistryPortInUse(hostPort)
		}
		return Registry{}, fmt.Errorf("start container %s: %w", RegistryName, err)
	}
	r, ok, err := d.FindRegistry(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("container %s vanished after its start", RegistryName)
	}
	return r, err
}

// StartRegistry starts the registry's container when it is not running.
func (d *Driver) StartRegistry(ctx context.Context) error {
	if err := d.cli.ContainerStart(ctx, RegistryName, container.StartOptions{}); err != nil {
		if s := err.Error(); strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use") {
			return kferr.Environment("free that port, or make the registry anew on another: kubeforge registry delete; kubeforge registry create --port N",
				"start container %s: its host port is taken: %v", RegistryName, err)
		}
		return fmt.Errorf("start container %s: %w", RegistryName, err)
	}
	return nil
}

// ConnectRegistry connects the registry to network with the fixed address ip. Connected there
// already with that address, it does nothing; with another, it is connected again.
func (d *Driver) ConnectRegistry(ctx context.Context, netName string, ip netip.Addr) error {
	r, ok, err := d.FindRegistry(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("connect the registry to %s: container %s is missing", netName, RegistryName)
	}
	if have, on := r.Networks[netName]; on {
		if have == ip {
			return nil
		}
		if err := d.cli.NetworkDisconnect(ctx, netName, RegistryName, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("disconnect %s from %s: %w", RegistryName, netName, err)
		}
	}
	err = d.cli.NetworkConnect(ctx, netName, RegistryName, &network.EndpointSettings{
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip.String()},
		Aliases:    []string{RegistryName},
	})
	if err != nil {
		return fmt.Errorf("connect %s to network %s at %s: %w", RegistryName, netName, ip, err)
	}
	return nil
}

// DisconnectRegistry disconnects the registry from network; a missing registry, or one not on
// that network, is nothing to do.
func (d *Driver) DisconnectRegistry(ctx context.Context, netName string) error {
	r, ok, err := d.FindRegistry(ctx)
	if err != nil || !ok {
		return err
	}
	if _, on := r.Networks[netName]; !on {
		return nil
	}
	if err := d.cli.NetworkDisconnect(ctx, netName, RegistryName, true); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("disconnect %s from network %s: %w", RegistryName, netName, err)
	}
	return nil
}

// DeleteRegistry disconnects the registry from every network, removes its container and, unless
// keepData, its volume. It returns whether there was anything to remove.
func (d *Driver) DeleteRegistry(ctx context.Context, keepData bool) (bool, error) {
	r, ok, err := d.FindRegistry(ctx)
	if err != nil {
		return false, err
	}
	if ok {
		for _, n := range r.NetworkNames() {
			if n == "bridge" {
				continue
			}
			if err := d.cli.NetworkDisconnect(ctx, n, r.ID, true); err != nil && !cerrdefs.IsNotFound(err) {
				return true, fmt.Errorf("disconnect %s from network %s: %w", RegistryName, n, err)
			}
		}
		if err := d.cli.ContainerRemove(ctx, r.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return true, fmt.Errorf("remove container %s: %w", RegistryName, err)
		}
	}
	if keepData {
		return ok, nil
	}
	v, err := d.cli.VolumeInspect(ctx, RegistryVolume)
	switch {
	case cerrdefs.IsNotFound(err):
		return ok, nil
	case err != nil:
		return ok, fmt.Errorf("inspect volume %s: %w", RegistryVolume, err)
	case v.Labels[LabelRegistry] != "1":
		return ok, kferr.Environment(fmt.Sprintf("remove it yourself if you do not need it: docker volume rm %s", RegistryVolume),
			"volume %s was not made by kubeforge (no %s label); not removing it", RegistryVolume, LabelRegistry)
	}
	if err := d.cli.VolumeRemove(ctx, RegistryVolume, false); err != nil && !cerrdefs.IsNotFound(err) {
		return true, fmt.Errorf("remove volume %s: %w", RegistryVolume, err)
	}
	return true, nil
}

// RegistryVolumeExists says whether the registry's data volume is there.
func (d *Driver) RegistryVolumeExists(ctx context.Context) (bool, error) {
	_, err := d.cli.VolumeInspect(ctx, RegistryVolume)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// LockRegistry takes the host-wide lock under which the shared registry is made, connected and
// removed, so that two kubeforge processes do not both make it.
func LockRegistry() (unlock func()) { return hostLock("kubeforge-registry.lock") }

// LoadImage loads a docker-archive tarball into the daemon (docker load) unless the image ref is
// there with the ID id already.
func (d *Driver) LoadImage(ctx context.Context, ref, id string, archive io.Reader) error {
	if insp, err := d.cli.ImageInspect(ctx, ref); err == nil && insp.ID == id {
		return nil
	}
	resp, err := d.cli.ImageLoad(ctx, archive)
	if err != nil {
		return fmt.Errorf("docker load of %s: %w", ref, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("docker load of %s: %w", ref, err)
	}
	if strings.Contains(string(b), `"error"`) {
		return fmt.Errorf("docker load of %s: %s", ref, strings.TrimSpace(string(b)))
	}
	insp, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("docker load of %s: the image is not there afterwards: %w", ref, err)
	}
	if insp.ID != id {
		return fmt.Errorf("docker load of %s: got image ID %s, want %s", ref, insp.ID, id)
	}
	return nil
}
