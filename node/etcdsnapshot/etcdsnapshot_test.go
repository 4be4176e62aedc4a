package etcdsnapshot

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd on loopback with its data in dir.
func startEtcd(t *testing.T, dir, name, peer string) (*clientv3.Client, func()) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = name, dir, "error"
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	p, _ := url.Parse(peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	cfg.InitialCluster = name + "=" + peer
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd did not start")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() { c.Close(); e.Close() }
}

// TestSnapshotRestore: a snapshot of a real etcd is checked, restored into a data directory in
// place of the member's data, and an etcd started on it has the keys, at a bumped revision.
func TestSnapshotRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	c, stop := startEtcd(t, filepath.Join(dir, "etcd"), "dev", peer)
	if _, err := c.Put(ctx, "/registry/kept", "v1"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "backup.db")
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second}, file); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/registry/later", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "/registry/kept"); err != nil {
		t.Fatal(err)
	}
	stop()

	st, err := Check(file)
	if err != nil || st.Revision < 2 || st.TotalKeys < 1 {
		t.Fatalf("Check = %+v, %v", st, err)
	}
	if _, err := Check(filepath.Join(dir, "etcd", "member", "wal")); err == nil {
		t.Error("a directory passed as a snapshot")
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, bytes.Repeat([]byte("x"), 4096), 0o644)
	if _, err := Check(junk); err == nil {
		t.Error("a junk file passed as a snapshot")
	}

	if err := Restore(file, filepath.Join(dir, "etcd"), "dev", peer); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member.before-restore")); err != nil {
		t.Errorf("previous data not kept: %v", err)
	}
	c, stop = startEtcd(t, filepath.Join(dir, "etcd"), "dev", peer)
	defer stop()
	kept, err := c.Get(ctx, "/registry/kept")
	if err != nil || len(kept.Kvs) != 1 || string(kept.Kvs[0].Value) != "v1" {
		t.Errorf("after the restore, /registry/kept = %v %v", kept, err)
	}
	if later, err := c.Get(ctx, "/registry/later"); err != nil || len(later.Kvs) != 0 {
		t.Errorf("a key written after the snapshot survived the restore: %v %v", later, err)
	}
	if kept.Header.Revision < RevisionBump {
		t.Errorf("revision after the restore %d, want bumped past %d", kept.Header.Revision, RevisionBump)
	}
}
