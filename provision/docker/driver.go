// Package docker is kubeforge's Docker driver: each node is a container and each cluster has a
// bridge network of its own, kubeforge-<cluster>, on a private /24.
//
// A node container runs kubeforge's own PID 1 (no docker-init) with the flags measured to run
// Kubernetes on a Docker 20.10 host without --privileged: all capabilities but SYS_RESOURCE,
// seccomp, AppArmor and SELinux labelling off (what --privileged implies on hosts that have them),
// a private cgroup namespace, tmpfs on /run and /tmp, /dev/kmsg, and a named
// volume <node>-var on /var (containerd's overlay snapshotter cannot use the container's own
// overlay filesystem as upperdir). The container restarts with the Docker daemon
// (unless-stopped) and its API server port, if any, is published on 127.0.0.1 only.
//
// Everything the driver creates carries the provision labels, so that listing and deleting find
// exactly what belongs to a cluster, including what an interrupted create left behind.
//
// Files under /run and /tmp are tmpfs inside a running node: Docker's archive API (CopyTar,
// ReadFile) does not see them, so CopyTar refuses them and ReadFile reads them with cat.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// DriverName is the driver's name as users type it (--driver docker).
const DriverName = "docker"

// MinAPIVersion is the oldest Docker Engine API the driver works with (Docker 20.10): private
// cgroup namespaces need it.
const MinAPIVersion = "1.41"

// Driver is the Docker driver. It is safe for concurrent use.
type Driver struct {
	cli *client.Client
	log *ui.Logger

	// kept are the node volumes CreateNode refused to reuse (left by an earlier node of the same
	// name): this driver's DeleteNode and DeleteNetwork leave them, so that the rollback of the
	// create that refused them does not wipe them behind the user's back. An explicit delete
	// (another driver, another command) removes them.
	keptMu sync.Mutex
	kept   map[string]bool
}

var _ provision.Driver = (*Driver)(nil)

// New returns a driver talking to the Docker daemon named by the environment (DOCKER_HOST and
// friends, else the local socket). It does not contact the daemon: call Ping for that.
func New(ctx context.Context) (*Driver, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, kferr.Environment("check DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH",
			"docker client: %w", err)
	}
	return &Driver{cli: cli, log: ui.Discard(), kept: map[string]bool{}}, nil
}

// SetLog sets where the driver reports what it skips (at debug level); by default nowhere.
func (d *Driver) SetLog(l *ui.Logger) {
	if l == nil {
		l = ui.Discard()
	}
	d.log = l
}

// Client returns the Docker client the driver uses (for image loading and tests).
func (d *Driver) Client() *client.Client { return d.cli }

// Close releases the client's connections.
func (d *Driver) Close() error { return d.cli.Close() }

// Name returns "docker".
func (d *Driver) Name() string { return DriverName }

// Ping checks that the Docker daemon answers and is recent enough. Its error is a kferr
// environment error whose hint says how to start Docker or fix socket permissions.
func (d *Driver) Ping(ctx context.Context) error {
	host := d.cli.DaemonHost()
	p, err := d.cli.Ping(ctx)
	if err != nil {
		return pingError(host, err)
	}
	if v := p.APIVersion; v != "" && versions.LessThan(v, MinAPIVersion) {
		return kferr.Environment("upgrade Docker to 20.10 or newer",
			"docker at %s speaks API %s; kubeforge needs %s or newer", host, v, MinAPIVersion)
	}
	return nil
}

// pingError turns a failed ping into advice.
func pingError(host string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("docker at %s did not answer: %w", host, err)
	}
	if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
		return kferr.Environment(
			"add yourself to the docker group (sudo usermod -aG docker $USER, then log in again), or run kubeforge with sudo",
			"cannot use the Docker socket at %s: %w", host, err)
	}
	hint := "start Docker: sudo systemctl start docker, or sudo dockerd &; check DOCKER_HOST"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		hint += fmt.Sprintf(" (now %q)", h)
	} else {
		hint += " (unset: using " + host + ")"
	}
	if client.IsErrConnectionFailed(err) {
		return kferr.Environment(hint, "docker is not reachable at %s: %w", host, err)
	}
	return kferr.Environment(hint, "docker at %s does not answer properly: %w", host, err)
}

// HostCapacity is the Docker host's CPUs and memory: what the kubelet of a container node reads
// from /proc, whatever the container's limits.
func (d *Driver) HostCapacity(ctx context.Context) (provision.Capacity, error) {
	info, err := d.cli.Info(ctx)
	if err != nil {
		return provision.Capacity{}, fmt.Errorf("docker info: %w", err)
	}
	return provision.Capacity{MilliCPUs: int64(info.NCPU) * 1000, MemoryBytes: info.MemTotal}, nil
}
