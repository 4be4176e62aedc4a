package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/provision"
)

// Where snapshots pass through a control-plane node, and where the static pods wait during a
// restore.
const (
	nodeSnapshotPath = contract.StateDir + "/etcd-snapshot.db"
	pausedManifests  = contract.ManifestsDir + ".paused-for-restore"
)

// SnapshotStatus is what a saved or restored snapshot holds.
type SnapshotStatus = contract.SnapshotStatus

// SnapshotSave writes a snapshot of the cluster's etcd to file (on the host).
func (c *Cluster) SnapshotSave(ctx context.Context, file string) (SnapshotStatus, error) {
	l, err := c.live(ctx)
	if err != nil {
		return SnapshotStatus{}, err
	}
	n, err := l.runningControlPlane(ctx, "")
	if err != nil {
		return SnapshotStatus{}, err
	}
	var out bytes.Buffer
	if err := n.Run(ctx, provision.Cmd{Args: []string{contract.NodeBinary, "etcd-snapshot", "save", nodeSnapshotPath}, Stdout: &out}); err != nil {
		return SnapshotStatus{}, fmt.Errorf("snapshot of etcd on %s: %w", n.Name(), err)
	}
	defer n.Run(context.WithoutCancel(ctx), provision.Cmd{Args: []string{"rm", "-f", nodeSnapshotPath}})
	var st SnapshotStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("snapshot status from %s: %w (%q)", n.Name(), err, out.String())
	}
	b, err := n.ReadFile(ctx, nodeSnapshotPath)
	if err != nil {
		return st, fmt.Errorf("copying the snapshot from %s: %w", n.Name(), err)
	}
	if err := state.WriteFile(file, b); err != nil {
		return st, fmt.Errorf("writing %s: %w", file, err)
	}
	st.Bytes = int64(len(b))
	return st, nil
}

// SnapshotRestore replaces the cluster's etcd data by the snapshot in file and returns once the
// API server answers again with it. The control-plane pods are stopped meanwhile; the nodes'
// kubelets, kube-proxy and the controllers relist (the restored revision is marked compacted).
// Clusters with one control plane only: an HA cluster's members would all need the snapshot.
func (c *Cluster) SnapshotRestore(ctx context.Context, file string, wait time.Duration) (SnapshotStatus, error) {
	f, err := os.Open(file)
	if err != nil {
		return SnapshotStatus{}, kferr.Usage("snapshot %s: %v", file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return SnapshotStatus{}, kferr.Usage("snapshot %s is not a file: give a file made by `kubeforge etcd snapshot save`", file)
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	unlock, err := c.lock(ctx, "etcd snapshot restore")
	if err != nil {
		return SnapshotStatus{}, err
	}
	defer unlock()
	l, err := c.live(ctx)
	if err != nil {
		return SnapshotStatus{}, err
	}
	name := c.name
	cps := l.controlPlanes()
	if len(cps) != 1 {
		return SnapshotStatus{}, kferr.Usage("cluster %q has %d control planes: restoring a snapshot is supported for one control plane (each etcd member would need it); restore into a new one-control-plane cluster instead", name, len(cps))
	}
	n := cps[0]
	if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
		return SnapshotStatus{}, kferr.Environment(fmt.Sprintf("start it first: `kubeforge start --name %s`", name), "cluster %q is not running", name)
	}
	var st SnapshotStatus
	steps := []step{
		{name: "Copying the snapshot", run: func(ctx context.Context, _ *build) error {
			if err := n.CopyTar(ctx, tarOf(path.Base(nodeSnapshotPath), f, fi.Size(), path.Dir(nodeSnapshotPath))); err != nil {
				return err
			}
			var out bytes.Buffer
			if err := n.Run(ctx, provision.Cmd{Args: []string{contract.NodeBinary, "etcd-snapshot", "status", nodeSnapshotPath}, Stdout: &out}); err != nil {
				return kferr.Usage("%s is not an etcd snapshot (make one with `kubeforge etcd snapshot save FILE`): %v", file, err)
			}
			return json.Unmarshal(out.Bytes(), &st)
		}},
		{name: "Stopping the control plane", run: func(ctx context.Context, _ *build) error {
			return pauseControlPlane(ctx, n)
		}, undo: func(ctx context.Context, _ *build) error {
			return resumeControlPlane(ctx, n)
		}},
		{name: "Restoring etcd", run: func(ctx context.Context, _ *build) error {
			return n.Run(ctx, provision.Cmd{Args: []string{contract.NodeBinary, "etcd-snapshot", "restore", nodeSnapshotPath,
				"--name", n.Name(), "--peer-url", etcdPeerURL(n.IP())}})
		}},
		{name: "Starting the control plane", run: func(ctx context.Context, _ *build) error {
			if err := resumeControlPlane(ctx, n); err != nil {
				return err
			}
			k, err := c.kube(0)
			if err != nil {
				return err
			}
			if err := k.up(ctx, 0, pollInterval(c.rec.Spec)); err != nil {
				return (&build{p: c.p, spec: c.rec.Spec, nodes: []provision.Node{n}}).waitError(ctx, err, "the API server")
			}
			return nil
		}},
	}
	// A failure before etcd's data is replaced puts the control plane back as it was.
	err = c.p.runSteps(ctx, &build{p: c.p, spec: c.rec.Spec}, steps, false)
	n.Run(context.WithoutCancel(ctx), provision.Cmd{Args: []string{"rm", "-f", nodeSnapshotPath}})
	return st, err
}

// pauseControlPlane moves the control plane's static pod manifests aside and waits until the
// kubelet has stopped etcd and the API server.
func pauseControlPlane(ctx context.Context, n provision.Node) error {
	script := fmt.Sprintf("mkdir -p %[2]s && for f in %[1]s/*.yaml; do [ -e \"$f\" ] && mv \"$f\" %[2]s/; done; true", contract.ManifestsDir, pausedManifests)
	if err := n.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", script}}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var out bytes.Buffer
		err := n.Run(ctx, provision.Cmd{Args: []string{"crictl", "ps", "--quiet", "--name", "^(etcd|kube-apiserver)$"}, Stdout: &out})
		return err == nil && strings.TrimSpace(out.String()) == "", nil
	})
}

// resumeControlPlane moves the manifests back; the kubelet starts the pods again.
func resumeControlPlane(ctx context.Context, n provision.Node) error {
	script := fmt.Sprintf("[ -d %[2]s ] || exit 0; for f in %[2]s/*.yaml; do [ -e \"$f\" ] && mv \"$f\" %[1]s/; done; rmdir %[2]s", contract.ManifestsDir, pausedManifests)
	return n.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", script}})
}

// tarOf is a tar stream of one file, size bytes read from r, at dir/name.
func tarOf(name string, r io.Reader, size int64, dir string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(safe.Call(func() error {
			return writeTarFile(pw, strings.TrimPrefix(path.Join(dir, name), "/"), r, size)
		}))
	}()
	return pr
}

// writeTarFile writes a tar holding one regular file (its directory must exist in the target).
func writeTarFile(w io.Writer, name string, r io.Reader, size int64) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: size, ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, size); err != nil {
		return err
	}
	return tw.Close()
}
