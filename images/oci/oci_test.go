package oci

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"kubeforge.dev/kubeforge/internal/versions"
)

// readTar returns the headers and contents of a tar.
func readTar(t *testing.T, b []byte) (map[string]*tar.Header, map[string][]byte, []string) {
	t.Helper()
	hdrs := map[string]*tar.Header{}
	data := map[string][]byte{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(tr)
		hdrs[h.Name] = h
		data[h.Name] = d
		order = append(order, h.Name)
	}
	return hdrs, data, order
}

func TestPauseArchive(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kubeforge-pause")
	os.WriteFile(bin, []byte("\x7fELF pause"), 0o700)
	archive, err := Bytes(Pause(bin))
	if err != nil {
		t.Fatal(err)
	}
	// The docker-archive manifest names the image, so `ctr images import` tags it.
	_, files, _ := readTar(t, archive)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != "kubeforge.local/pause:3.10" {
		t.Fatalf("manifest.json = %s", files["manifest.json"])
	}
	if len(manifest[0].Layers) != 1 {
		t.Fatalf("layers = %v, want one", manifest[0].Layers)
	}

	// Read it back as an image: config and layer.
	tag, _ := name.NewTag(PauseImage)
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/pause" {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(rc)
	hdrs, data, _ := readTar(t, lb)
	h := hdrs["pause"]
	if h == nil || string(data["pause"]) != "\x7fELF pause" || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
		t.Fatalf("/pause entry: %+v", h)
	}
}

func TestArchiveIsReproducible(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "coredns")
	os.WriteFile(bin, []byte("coredns"), 0o755)
	a, err := Bytes(CoreDNS("v1.13.2", bin, ""))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Bytes(CoreDNS("v1.13.2", bin, ""))
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same inputs differ")
	}
}

func TestKubeComponentsLayer(t *testing.T) {
	layer, err := Layer(KubeComponents(versions.Default().Kubernetes))
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data, order := readTar(t, layer)
	links := map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64", "var/run": "../run"}
	for p, target := range links {
		if h := hdrs[p]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != target {
			t.Errorf("%s: %+v, want symlink to %s", p, h, target)
		}
	}
	if h := hdrs["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v, want a 1777 directory", h)
	}
	for _, d := range []string{"etc/", "run/", "usr/", "var/"} {
		if h := hdrs[d]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("%s missing", d)
		}
	}
	if !bytes.Contains(data["etc/passwd"], []byte("root:x:0:0:")) || !bytes.Contains(data["etc/passwd"], []byte("nobody:x:65534:")) {
		t.Errorf("etc/passwd = %q", data["etc/passwd"])
	}
	if !bytes.Contains(data["etc/group"], []byte("root:x:0:")) {
		t.Errorf("etc/group = %q", data["etc/group"])
	}
	if !bytes.Contains(data["etc/nsswitch.conf"], []byte("hosts: files dns")) {
		t.Errorf("etc/nsswitch.conf = %q", data["etc/nsswitch.conf"])
	}
	// Parents come before children, every entry is root's.
	seen := map[string]bool{}
	for _, p := range order {
		h := hdrs[p]
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d", p, h.Uid, h.Gid)
		}
		if dir := filepath.Dir(filepath.Clean(p)); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its directory %s", p, dir)
		}
		seen[filepath.Clean(p)] = true
	}
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0 {
			t.Errorf("skeleton holds an executable: %s", h.Name)
		}
	}
}

func TestCoreDNSWithCABundle(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "coredns"), []byte("bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("-----BEGIN CERTIFICATE-----"), 0o644)
	spec := CoreDNS("v1.13.2", filepath.Join(dir, "coredns"), filepath.Join(dir, "ca.crt"))
	if spec.Ref != "kubeforge.local/coredns:v1.13.2" {
		t.Errorf("ref %s", spec.Ref)
	}
	layer, err := Layer(spec)
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data, _ := readTar(t, layer)
	if string(data["etc/ssl/certs/ca-certificates.crt"]) != "-----BEGIN CERTIFICATE-----" {
		t.Error("CA bundle missing")
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/"} {
		if hdrs[d] == nil {
			t.Errorf("parent %s missing", d)
		}
	}
	if h := hdrs["coredns"]; h == nil || h.Mode != 0o755 {
		t.Errorf("coredns: %+v", h)
	}
}

func TestMissingSourceFails(t *testing.T) {
	if _, err := Bytes(Pause("/nonexistent/kubeforge-pause")); err == nil {
		t.Fatal("no error for a missing binary")
	}
}
