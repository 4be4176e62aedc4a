//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// TestImagePrune: `image prune` removes node images of other kubeforge builds (an old tag in
// Docker, an old cached VM image) and keeps the current ones.
func TestImagePrune(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newEnv(t)
	current := strings.TrimSpace(e.ok(ctx, "image", "build").Stdout)
	// Two node images of older builds, one of them what a recorded cluster was made from.
	const old, recorded = "kubeforge.local/node:v0.0.0-000000000000", "kubeforge.local/node:v0.0.0-111111111111"
	for _, tag := range []string{old, recorded} {
		if err := e.docker.ImageTag(ctx, current, tag); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.docker.ImageRemove(context.Background(), tag, image.RemoveOptions{}) })
	}
	// The VM image cache of this run only: an old image, a recorded cluster's, a build in progress.
	cache := t.TempDir()
	oldVM := filepath.Join(cache, "vm", "v0.0.0-000000000000")
	recordedVM := filepath.Join(cache, "vm", "v0.0.0-222222222222")
	building := filepath.Join(cache, "vm", ".build-v0.0.0-333333333333-1")
	for _, d := range []string{oldVM, recordedVM, building} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "vm-image.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, rec := range map[string]string{
		"recdock": `{"spec":{"name":"recdock","driver":"docker"},"image":"` + recorded + `"}`,
		"recvm":   `{"spec":{"name":"recvm","driver":"kvm"},"image":"` + recordedVM + `"}`,
	} {
		if err := os.MkdirAll(filepath.Join(e.Home, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.Home, name, "cluster.json"), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// libvirt: a socket nobody serves (this tier leaves the machine's libvirt alone).
	noLibvirt := "--libvirt-uri=qemu+unix:///system?socket=" + filepath.Join(cache, "no-libvirt.sock")
	r := e.run(ctx, []string{"KUBEFORGE_CACHE=" + cache}, "image", "prune", noLibvirt, "-o", "json")
	var res struct{ DockerImages, VMImages []string }
	if err := json.Unmarshal([]byte(r.Stdout), &res); r.Code != 0 || err != nil {
		t.Fatalf("image prune -o json: %v: %s", err, r)
	}
	if !slices.Contains(res.DockerImages, old) || slices.Contains(res.DockerImages, current) {
		t.Errorf("removed Docker images %v, want %s and not %s", res.DockerImages, old, current)
	}
	if len(res.VMImages) != 1 || res.VMImages[0] != oldVM {
		t.Errorf("removed VM images %v, want [%s]", res.VMImages, oldVM)
	}
	for _, kept := range []string{current, recorded} {
		if _, err := e.docker.ImageInspect(ctx, kept); err != nil {
			t.Errorf("node image %s is gone: %v", kept, err)
		}
	}
	if _, err := os.Stat(recordedVM); err != nil {
		t.Errorf("the recorded cluster's VM image was removed: %v", err)
	}
	if !strings.Contains(r.Stderr, "libvirt's VM image volumes were not pruned") {
		t.Errorf("no warning about the unreachable libvirt: %s", r)
	}
	if _, err := e.docker.ImageInspect(ctx, old); !client.IsErrNotFound(err) {
		t.Errorf("%s is still in Docker: %v", old, err)
	}
	if _, err := os.Stat(building); err != nil {
		t.Errorf("a VM image build in progress was removed: %v", err)
	}
	// Nothing left to prune: said so.
	if out := e.run(ctx, []string{"KUBEFORGE_CACHE=" + cache}, "image", "prune", noLibvirt).Stdout; !strings.Contains(out, "Nothing to prune") {
		t.Errorf("second image prune: %q", out)
	}
}
