// Package etcdsnapshot saves and restores a control plane's etcd from inside the node
// (`kubeforge-node etcd-snapshot save|status|restore`), with upstream's snapshot code (etcd's
// client and etcdutl). The host drives it through the driver's exec: see cluster/.
package etcdsnapshot

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/v3/snapshot"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/node/etcdmember"
)

// RevisionBump is how far a restore moves etcd's revision past the snapshot's, and the restored
// revision is marked compacted: the API server's and its clients' watches, which know later
// revisions, then relist instead of waiting for revisions that would never come (what etcd's
// and Kubernetes' docs advise for a restore under a running cluster's clients).
const RevisionBump = 1_000_000_000

// Save writes a snapshot of the local member to path.
func Save(ctx context.Context, path string) (contract.SnapshotStatus, error) {
	cfg, err := etcdmember.ClientConfig(ctx)
	if err != nil {
		return contract.SnapshotStatus{}, err
	}
	version, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, path)
	if err != nil {
		return contract.SnapshotStatus{}, fmt.Errorf("saving a snapshot of etcd: %w", err)
	}
	st, err := Check(path)
	st.Version = version
	return st, err
}

// Check reads a snapshot file's status; a file that is not an etcd snapshot is an error.
func Check(path string) (contract.SnapshotStatus, error) {
	ds, err := etcdutl.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return contract.SnapshotStatus{}, fmt.Errorf("%s is not a readable etcd snapshot: %w", path, err)
	}
	return contract.SnapshotStatus{Revision: ds.Revision, TotalKeys: ds.TotalKey, Bytes: ds.TotalSize}, nil
}

// Restore replaces the member data in dataDir (etcd stopped) by the snapshot's, for a single
// member called name at peerURL. The previous data is kept as member.before-restore until the
// next restore.
func Restore(path, dataDir, name, peerURL string) error {
	tmp := filepath.Join(dataDir, ".restore")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	err := etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        path,
		Name:                name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{peerURL},
		InitialCluster:      name + "=" + peerURL,
		InitialClusterToken: "etcd-cluster",
		RevisionBump:        RevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return fmt.Errorf("restoring %s: %w", path, err)
	}
	// Swap inside dataDir, which may be a mount point of its own.
	member, old := filepath.Join(dataDir, "member"), filepath.Join(dataDir, "member.before-restore")
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(member, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "member"), member); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// Main is `kubeforge-node etcd-snapshot save FILE | status FILE | restore FILE --name N
// --peer-url URL [--data-dir DIR]`; save and status print the contract.SnapshotStatus as JSON.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "usage: etcd-snapshot save FILE | status FILE | restore FILE --name NAME --peer-url URL [--data-dir DIR]")
		return 2
	}
	action, file := args[0], args[1]
	fs := flag.NewFlagSet("etcd-snapshot "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "member name (the node name)")
	peer := fs.String("peer-url", "", "the member's peer URL, https://IP:2380")
	dataDir := fs.String("data-dir", "/var/lib/etcd", "etcd's data directory")
	if err := fs.Parse(args[2:]); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		st  contract.SnapshotStatus
		err error
	)
	switch action {
	case "save":
		st, err = Save(ctx, file)
	case "status":
		st, err = Check(file)
	case "restore":
		if *name == "" || *peer == "" {
			fmt.Fprintln(stderr, "etcd-snapshot restore needs --name and --peer-url")
			return 2
		}
		if err := Restore(file, *dataDir, *name, *peer); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	default:
		fmt.Fprintln(stderr, "etcd-snapshot: unknown action "+action)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(st); err != nil {
		return 1
	}
	return 0
}
