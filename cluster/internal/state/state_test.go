package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/internal/kferr"
)

func TestDirRefusesBadNames(t *testing.T) {
	h := Home(t.TempDir())
	for _, bad := range []string{"..", ".", "", "a/b", "../x", "A", "x\x00"} {
		if _, err := h.Dir(bad); err == nil || kferr.Code(err) != kferr.ExitUsage {
			t.Errorf("Dir(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestLoadDamagedRecord(t *testing.T) {
	h := Home(t.TempDir())
	d, _ := h.Dir("x")
	if _, ok, err := d.Load(); ok || err != nil {
		t.Fatalf("no record: ok %v, err %v", ok, err)
	}
	os.MkdirAll(d.Root, 0o700)
	os.WriteFile(d.RecordFile(), []byte(`{"spec":`), 0o600)
	_, ok, err := d.Load()
	if ok || err == nil || !strings.Contains(kferr.Hint(err), "kubeforge delete --name x") {
		t.Fatalf("damaged record: ok %v, err %v (hint %q)", ok, err, kferr.Hint(err))
	}
	rec, unreadable, err := h.Clusters()
	if err != nil || len(rec) != 0 || len(unreadable) != 1 || unreadable[0] != "x" {
		t.Errorf("Clusters = %v, %v, %v", rec, unreadable, err)
	}
	if err := d.Save(Record{Image: "i"}); err != nil {
		t.Fatal(err)
	}
	rec, unreadable, _ = h.Clusters()
	if rec["x"] != "docker" || len(unreadable) != 0 {
		t.Errorf("Clusters = %v, %v", rec, unreadable)
	}
	if fi, _ := os.Stat(d.RecordFile()); fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode())
	}
}

func TestLockWaitsAndTimesOut(t *testing.T) {
	h := Home(t.TempDir())
	d, _ := h.Dir("c")
	unlock, err := d.Lock(context.Background(), "start", nil)
	if err != nil {
		t.Fatal(err)
	}
	var waited atomic.Int32
	var holder string
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = d.Lock(ctx, "node add", func(h string) { waited.Add(1); holder = h })
	if err == nil || kferr.Code(err) != kferr.ExitTimeout || !strings.Contains(err.Error(), "kubeforge start") {
		t.Fatalf("second lock: %v", err)
	}
	if waited.Load() != 1 || !strings.Contains(holder, "kubeforge start") {
		t.Errorf("waiting called %d times with %q", waited.Load(), holder)
	}
	// Released while the other waits: it gets the lock.
	done := make(chan error)
	go func() {
		u, err := d.Lock(context.Background(), "stop", nil)
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(150 * time.Millisecond)
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock after unlock")
	}
	// Nothing but the lock was made: nothing is left.
	if _, err := os.Stat(d.Root); !os.IsNotExist(err) {
		t.Errorf("an empty state directory was left: %v", err)
	}
}

// TestLockWaitCancelled: a wait ended by a cancelled context (Ctrl-C) is the cancellation, not
// the timeout "cluster is busy"; a wait that reaches the context's deadline is the timeout.
func TestLockWaitCancelled(t *testing.T) {
	d, _ := Home(t.TempDir()).Dir("c")
	unlock, err := d.Lock(context.Background(), "start", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	_, err = d.Lock(ctx, "stop", func(string) {})
	if !errors.Is(err, context.Canceled) || kferr.Code(err) == kferr.ExitTimeout || strings.Contains(err.Error(), "busy") {
		t.Errorf("cancelled wait: %v (exit code %d), want context.Canceled", err, kferr.Code(err))
	}
	// Cancelled with a deadline still ahead: the cancellation too.
	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	time.AfterFunc(150*time.Millisecond, cancel)
	if _, err = d.Lock(ctx, "stop", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait with a deadline: %v, want context.Canceled", err)
	}
	// A parent's deadline is a timeout.
	parent, cancelParent := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancelParent()
	ctx, cancel = context.WithCancel(parent)
	defer cancel()
	if _, err = d.Lock(ctx, "stop", nil); kferr.Code(err) != kferr.ExitTimeout || errors.Is(err, context.Canceled) {
		t.Errorf("wait past the deadline: %v (exit code %d), want a timeout", err, kferr.Code(err))
	}
}

func TestLockSurvivesRemovedDirectory(t *testing.T) {
	h := Home(t.TempDir())
	d, _ := h.Dir("c")
	unlock, err := d.Lock(context.Background(), "delete", nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Root, "cluster.json"), []byte("{}"), 0o600)
	got := make(chan func())
	go func() {
		u, err := d.Lock(context.Background(), "start", nil)
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	time.Sleep(150 * time.Millisecond)
	if err := d.Remove(); err != nil { // the delete removes everything, lock file included
		t.Fatal(err)
	}
	unlock()
	u := <-got
	// The waiter holds the lock of the new file: a third one must wait.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := d.Lock(ctx, "stop", nil); err == nil {
		t.Fatal("two holders of one cluster's lock")
	}
	u()
}

func TestRecordRoundTrip(t *testing.T) {
	d, _ := Home(t.TempDir()).Dir("x")
	r := Record{Image: "img", APIServerPort: 1234, Complete: true, Images: []string{"a:1"}}
	if err := d.Save(r); err != nil {
		t.Fatal(err)
	}
	got, ok, err := d.Load()
	if err != nil || !ok || got.Image != r.Image || got.APIServerPort != r.APIServerPort || !got.Complete || len(got.Images) != 1 {
		t.Fatalf("got %+v, %v, %v; want %+v", got, ok, err, r)
	}
}
