package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/versions"
)

func TestVMRootfsOptions(t *testing.T) {
	o := VMRootfsOptions(rootfs.Options{})
	for _, p := range append(slices.Clone(rootfs.DefaultPackages), VMPackages...) {
		if !slices.Contains(o.Packages, p) {
			t.Errorf("the VM rootfs lacks %s", p)
		}
	}
	if rootfs.Key(o) == rootfs.Key(rootfs.Options{}) {
		t.Error("the VM rootfs must be cached apart from the container rootfs")
	}
}

func TestVMImageDirFollowsInputs(t *testing.T) {
	art := fakeArtifacts(t)
	opts := testOptions(t, art)
	d1, err := VMImageDir(opts)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := VMImageDir(opts)
	if d1 != d2 || !strings.HasPrefix(filepath.Base(d1), versions.Default().Kubernetes+"-") || filepath.Dir(d1) != filepath.Join(opts.Rootfs.CacheDir, "vm") {
		t.Errorf("VMImageDir = %s then %s", d1, d2)
	}
	if err := os.WriteFile(filepath.Join(art, "bin", "kubeforge-init"), []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d3, _ := VMImageDir(opts); d3 == d1 {
		t.Error("a changed binary must make a new VM image")
	}
}

func TestPruneVMImages(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "vm")
	mk := func(name string, image bool) string {
		dir := filepath.Join(cache, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if image {
			if err := os.WriteFile(filepath.Join(dir, vmimage.File), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	keep := mk("v1.99.0-aaaaaaaaaaaa", true)
	old := mk("v1.99.0-bbbbbbbbbbbb", true)
	recorded := mk("v1.98.0-dddddddddddd", true) // a cluster was made from it
	building := mk(".build-v1.99.0-cccccccccccc-123", true)
	other := mk("not-an-image", false)
	removed, err := PruneVMImages(keep, []string{recorded + "/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != old {
		t.Errorf("removed %v, want [%s]", removed, old)
	}
	for _, d := range []string{keep, recorded, building, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s is gone: %v", d, err)
		}
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("%s is still there", old)
	}
	// No cache yet: nothing to do.
	if removed, err := PruneVMImages(filepath.Join(t.TempDir(), "vm", "x"), nil); err != nil || len(removed) != 0 {
		t.Errorf("empty cache: %v, %v", removed, err)
	}
}
