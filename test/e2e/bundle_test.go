//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBundle saves a classroom bundle (node image, the busybox workload image, a config), then,
// as a machine with no source tree, no Go and no network would: a kubeforge binary alone in a
// directory, a fresh KUBEFORGE_HOME and KUBEFORGE_CACHE, the node image's tag and busybox gone
// from Docker, the Go module proxy and any HTTP(S) proxy unreachable, it loads the bundle, starts
// the cluster from the printed command (no build), loads busybox into it and runs a pod.
func TestBundle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-bundle"
	dir := t.TempDir()

	buildBusybox(ctx, t, e.docker)
	nodeRef := strings.TrimSpace(e.ok(ctx, "image", "build").Stdout)
	nodeInsp, err := e.docker.ImageInspect(ctx, nodeRef)
	if err != nil {
		t.Fatal(err)
	}
	bbInsp, err := e.docker.ImageInspect(ctx, BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfg, []byte("# workshop day 1\napiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nname: "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "class.kfb")

	e.usageErrors(ctx, []usageCase{
		{[]string{"bundle", "save", file, "--image", "kubeforge.local/absent:v0"}, "is not in the host's Docker"},
		{[]string{"bundle", "save", file, "--kubernetes-version", "1.20"}, "--kubernetes-version"},
		{[]string{"bundle", "load", filepath.Join(dir, "absent.kfb")}, "there is no file"},
		{[]string{"bundle", "load", cfg}, "not a usable kubeforge bundle"},
	})
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused save left %s", file)
	}

	t0 := time.Now()
	r := e.ok(ctx, "bundle", "save", file, "--image", BusyboxImage, "--config", cfg, "-o", "json")
	saveTime := time.Since(t0)
	var saved struct {
		Size      int64    `json:"size"`
		NodeImage string   `json:"nodeImage"`
		Images    []string `json:"images"`
		Config    bool     `json:"config"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &saved); err != nil {
		t.Fatalf("bundle save -o json: %v\n%s", err, r.Stdout)
	}
	if saved.NodeImage != nodeRef || len(saved.Images) != 1 || !saved.Config || !strings.Contains(r.Stderr, "✓ Saving node image") {
		t.Fatalf("bundle save: %+v\n%s", saved, r.Stderr)
	}
	t.Logf("bundle: %.1f MB, saved in %s", float64(saved.Size)/1e6, saveTime.Round(time.Millisecond))

	// A cut-short copy is refused before anything changes.
	cut := filepath.Join(dir, "cut.kfb")
	copyPrefix(t, file, cut, saved.Size/2)
	e.usageErrors(ctx, []usageCase{{[]string{"bundle", "load", cut}, "not a usable kubeforge bundle"}})
	os.Remove(cut)

	// The attendee's machine: the node image's tag and busybox are not in Docker. The node
	// image's data stays under a backup tag (other tests and clusters use it); every path
	// out of this test puts both back.
	const backup = "kubeforge.local/node-backup:bundle-e2e"
	if err := e.docker.ImageTag(ctx, nodeInsp.ID, backup); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := e.docker.ImageInspect(ctx, nodeRef); err != nil {
			if err := e.docker.ImageTag(ctx, backup, nodeRef); err != nil {
				t.Errorf("cleanup: tagging %s again: %v", nodeRef, err)
			}
		}
		if _, err := e.docker.ImageRemove(ctx, backup, image.RemoveOptions{}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := e.docker.ImageInspect(ctx, BusyboxImage); err != nil {
			buildBusybox(ctx, t, e.docker)
		}
	})
	for _, ref := range []string{nodeRef, BusyboxImage} {
		if _, err := e.docker.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}

	// kubeforge alone: no bin/kubeforge-node next to it, so nothing could be built.
	alone := filepath.Join(dir, "attendee", "bin", "kubeforge")
	copyPrefix(t, e.Bin, alone, -1)
	if err := os.Chmod(alone, 0o755); err != nil {
		t.Fatal(err)
	}
	a := newEnv(t)
	a.Bin = alone
	offline := []string{
		"KUBEFORGE_CACHE=" + filepath.Join(dir, "attendee", "cache"),
		"KUBEFORGE_ARTIFACTS=",
		"GOPROXY=off", "GOFLAGS=-mod=mod",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9",
		"https_proxy=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", // no /usr/local/go/bin: no Go toolchain
	}
	attendee := func(args ...string) result {
		t.Helper()
		r := a.run(ctx, offline, args...)
		if r.Code != 0 {
			t.Fatalf("kubeforge %v on the attendee's machine failed: %v", args, r)
		}
		return r
	}

	t0 = time.Now()
	r = attendee("bundle", "load", file, "-o", "json")
	loadTime := time.Since(t0)
	var loaded struct {
		Config      string   `json:"config"`
		ClusterName string   `json:"clusterName"`
		NodeImage   string   `json:"nodeImage"`
		Next        []string `json:"next"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &loaded); err != nil {
		t.Fatalf("bundle load -o json: %v\n%s", err, r.Stdout)
	}
	t.Logf("bundle: %.1f MB, loaded in %s", float64(saved.Size)/1e6, loadTime.Round(time.Millisecond))
	for _, step := range []string{"✓ Checking", "✓ Loading node image " + nodeRef, "✓ Loading image " + BusyboxImage} {
		if !strings.Contains(r.Stderr, step) {
			t.Errorf("bundle load showed no %q:\n%s", step, r.Stderr)
		}
	}
	if got, err := e.docker.ImageInspect(ctx, nodeRef); err != nil || got.ID != nodeInsp.ID {
		t.Fatalf("after load, %s is %v (%v), want %s", nodeRef, got.ID, err, nodeInsp.ID)
	}
	if got, err := e.docker.ImageInspect(ctx, BusyboxImage); err != nil || got.ID != bbInsp.ID {
		t.Fatalf("after load, %s is %v (%v), want %s", BusyboxImage, got.ID, err, bbInsp.ID)
	}
	wantNext := []string{"kubeforge start --config " + loaded.Config, "kubeforge image load --name " + name + " " + BusyboxImage}
	if loaded.ClusterName != name || strings.Join(loaded.Next, "\n") != strings.Join(wantNext, "\n") {
		t.Fatalf("bundle load: %+v, want next %q", loaded, wantNext)
	}
	if b, err := os.ReadFile(loaded.Config); err != nil || !strings.Contains(string(b), "image: "+nodeRef) || !strings.Contains(string(b), "workshop day 1") {
		t.Errorf("config %s (%v):\n%s", loaded.Config, err, b)
	}
	// Loading again changes nothing and says so.
	if r := attendee("bundle", "load", file); !strings.Contains(r.Stderr, "already in Docker") || !strings.Contains(r.Stdout, "kubeforge start --config") {
		t.Errorf("second load:\n%v", r)
	}

	a.deleteOnCleanup(name)
	t0 = time.Now()
	r = attendee(strings.Fields(strings.TrimPrefix(loaded.Next[0], "kubeforge "))...)
	t.Logf("start from the bundle: %s", time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(r.Stderr, "✓ Node image") || strings.Contains(r.Stderr, "Building") || strings.Contains(r.Stderr, "Importing node image") {
		t.Errorf("start built something:\n%s", r.Stderr)
	}
	attendee(strings.Fields(strings.TrimPrefix(loaded.Next[1], "kubeforge "))...)

	cs := a.clientset(name)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bb", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "bb", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "echo from-the-bundle; sleep 3600"},
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := podRunning(ctx, cs, "default", "bb", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
		t.Fatal(err)
	}

	attendee("delete", "--name", name)
	if left := a.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
	if _, err := os.Stat(filepath.Join(a.Home, name)); !os.IsNotExist(err) {
		t.Errorf("delete left the state directory: %v", err)
	}
}

// copyPrefix copies the first n bytes of src to dst (all of it when n < 0).
func copyPrefix(t *testing.T, src, dst string, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader = in
	if n >= 0 {
		r = io.LimitReader(in, n)
	}
	if _, err := io.Copy(out, r); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
