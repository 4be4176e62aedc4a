package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/images/rootfs"
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
	if d1 != d2 || !strings.HasPrefix(filepath.Base(d1), "v1.36.3-") || filepath.Dir(d1) != filepath.Join(opts.Rootfs.CacheDir, "vm") {
		t.Errorf("VMImageDir = %s then %s", d1, d2)
	}
	if err := os.WriteFile(filepath.Join(art, "bin", "kubeforge-init"), []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d3, _ := VMImageDir(opts); d3 == d1 {
		t.Error("a changed binary must make a new VM image")
	}
}

func TestLoadVMImage(t *testing.T) {
	if _, err := LoadVMImage(t.TempDir()); err == nil || !strings.Contains(err.Error(), "image build --kind vm") {
		t.Errorf("an empty directory: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, VMImageFile), []byte(`{"key":"k","kernelVersion":"6.1.0"}`), 0o644)
	im, err := LoadVMImage(dir)
	if err != nil || im.Disk != filepath.Join(dir, "disk.qcow2") || im.KernelVersion != "6.1.0" {
		t.Errorf("LoadVMImage = %+v, %v", im, err)
	}
}
