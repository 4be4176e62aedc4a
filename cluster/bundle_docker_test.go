//go:build e2e

package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/test/testimage"
)

// TestBundleDocker saves and loads a bundle through the real Docker daemon, with the small test
// image standing in for the node image (named by the spec, as `image:` in a config does): save,
// remove, load into a fresh home and cache, the image back with its ID; a damaged copy is
// refused with nothing loaded.
func TestBundleDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("KUBEFORGE_CACHE", t.TempDir())
	p, err := New(Options{Home: t.TempDir(), Log: ui.New(os.Stderr, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d, err := p.dockerDriver(ctx)
	if err != nil {
		t.Fatalf("no Docker (make e2e starts it with hack/ensure-docker.sh): %v", err)
	}
	cli := d.Client()
	if err := testimage.BuildBusybox(ctx, cli); err != nil {
		t.Fatal(err)
	}
	const node = "kubeforge.local/bundle-test-node:v1"
	if err := cli.ImageTag(ctx, testimage.Busybox, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.ImageRemove(context.Background(), node, image.RemoveOptions{})
		if _, err := cli.ImageInspect(context.Background(), testimage.Busybox); err != nil {
			testimage.BuildBusybox(context.Background(), cli)
		}
	})
	bb, err := cli.ImageInspect(ctx, testimage.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	s := spec.Default("")
	s.Image = node
	file := filepath.Join(t.TempDir(), "class.kfb")
	if _, err := p.SaveBundle(ctx, BundleSaveOptions{File: file, Spec: s, Images: []string{"kubeforge.local/absent:v0"}}); kferr.Code(err) != kferr.ExitUsage {
		t.Fatalf("a missing image: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatal("a refused save left a file")
	}
	saved, err := p.SaveBundle(ctx, BundleSaveOptions{File: file, Spec: s, Images: []string{testimage.Busybox}, Config: []byte("apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nname: class\n")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %+v", saved)
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("save left %v next to the bundle", entries)
	}

	// A damaged copy: refused, nothing loaded.
	whole, _ := os.ReadFile(file)
	bad := filepath.Join(t.TempDir(), "bad.kfb")
	whole[len(whole)-2000] ^= 1
	os.WriteFile(bad, whole, 0o644)
	for _, ref := range []string{node, testimage.Busybox} {
		if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.LoadBundle(ctx, bad); kferr.Code(err) != kferr.ExitUsage {
		t.Fatalf("a damaged bundle: %v", err)
	}
	if _, err := cli.ImageInspect(ctx, node); err == nil {
		t.Fatal("a damaged bundle loaded an image")
	}

	home2 := t.TempDir()
	p2, _ := New(Options{Home: home2, Log: ui.New(os.Stderr, true)})
	defer p2.Close()
	res, err := p2.LoadBundle(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %+v", res)
	for _, ref := range []string{node, testimage.Busybox} {
		got, err := cli.ImageInspect(ctx, ref)
		if err != nil || got.ID != bb.ID {
			t.Errorf("%s after load: %v %v", ref, got.ID, err)
		}
	}
	if res.ClusterName != "class" || res.Config != filepath.Join(home2, "bundles.d", "class", "cluster.yaml") || len(res.Next) != 2 {
		t.Errorf("result %+v", res)
	}
}
