package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/versions"
)

// fakeArtifacts makes ArtifactsDir/bin with a small file for every binary the image needs.
func fakeArtifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	for _, b := range append(append([]string{}, nodeBinaries...), preloadBinaries...) {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!fake "+b+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testOptions(t *testing.T, artifacts string) BuildOptions {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, []byte("CA"), 0o644)
	return BuildOptions{
		ArtifactsDir:      artifacts,
		KubernetesVersion: versions.Default().Kubernetes,
		CABundle:          ca,
		Rootfs:            rootfs.Options{CacheDir: t.TempDir()},
	}
}

var refPattern = regexp.MustCompile(`^kubeforge\.local/node:` + regexp.QuoteMeta(versions.Default().Kubernetes) + `-[0-9a-f]{12}$`)

func TestRefIsStable(t *testing.T) {
	opts := testOptions(t, fakeArtifacts(t))
	a, err := Ref(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !refPattern.MatchString(a) {
		t.Fatalf("ref %q does not look like kubeforge.local/node:<version>-<12 hex>", a)
	}
	b, _ := Ref(opts)
	if a != b {
		t.Fatalf("same inputs, two refs: %s, %s", a, b)
	}
	// Touching a file without changing it keeps the tag.
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(opts.ArtifactsDir, "bin", "containerd"), later, later)
	if c, _ := Ref(opts); c != a {
		t.Fatalf("mtime changed the ref: %s -> %s", a, c)
	}
	// The cache directory is not an input.
	opts.Rootfs.CacheDir = t.TempDir()
	if c, _ := Ref(opts); c != a {
		t.Fatalf("cache dir changed the ref: %s -> %s", a, c)
	}
}

func TestRefChangesWithEveryInput(t *testing.T) {
	base := testOptions(t, fakeArtifacts(t))
	ref0, err := Ref(base)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{ref0: "base"}
	check := func(what string, opts BuildOptions) {
		t.Helper()
		r, err := Ref(opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if prev, dup := seen[r]; dup {
			t.Errorf("%s: ref %s is the same as for %s", what, r, prev)
		}
		seen[r] = what
	}
	for _, b := range append(append([]string{}, nodeBinaries...), preloadBinaries...) {
		opts := testOptions(t, fakeArtifacts(t))
		opts.CABundle = base.CABundle
		os.WriteFile(filepath.Join(opts.ArtifactsDir, "bin", b), []byte("changed "+b), 0o755)
		check("changed "+b, opts)
	}
	opts := base
	if all := versions.All(); len(all) > 1 {
		// Another release: its node binary is its own (bin/k8s/<version>/).
		other := all[1].Kubernetes
		opts.KubernetesVersion = other
		bin := NodeBinary(opts.ArtifactsDir, other)
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("node binary "+other), 0o755); err != nil {
			t.Fatal(err)
		}
		if r, err := Ref(opts); err != nil || !strings.HasPrefix(r, NodeRepo+":"+other+"-") {
			t.Errorf("ref %s (%v) does not carry the Kubernetes version", r, err)
		}
		check("kubernetes version", opts)
	}
	opts = base
	opts.ContainerdVersion = "v2.4.1"
	check("containerd version", opts)
	opts = base
	opts.CoreDNSVersion = "v1.13.1"
	check("coredns version", opts)
	opts = base
	opts.Rootfs.Packages = append(append([]string{}, rootfs.DefaultPackages...), "strace")
	check("rootfs packages", opts)
	opts = base
	opts.Rootfs.Suite = "trixie"
	check("rootfs suite", opts)
	ca := filepath.Join(t.TempDir(), "ca2.crt")
	os.WriteFile(ca, []byte("another CA"), 0o644)
	opts = base
	opts.CABundle = ca
	check("CA bundle", opts)
}

func TestVersionsFromStamps(t *testing.T) {
	opts := testOptions(t, fakeArtifacts(t))
	os.WriteFile(filepath.Join(opts.ArtifactsDir, "bin", ".containerd.version"), []byte("v2.9.9\n"), 0o644)
	p, err := makePlan(opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.info.ContainerdVersion != "v2.9.9" || p.info.CrictlVersion != DefaultCrictlVersion || p.info.CoreDNSVersion != DefaultCoreDNSVersion {
		t.Fatalf("versions %+v", p.info)
	}
}

func TestMissingBinaries(t *testing.T) {
	opts := testOptions(t, fakeArtifacts(t))
	os.Remove(filepath.Join(opts.ArtifactsDir, "bin", "kubeforge-node"))
	os.Remove(filepath.Join(opts.ArtifactsDir, "bin", "crictl"))
	_, err := Ref(opts)
	if err == nil || !strings.Contains(err.Error(), "kubeforge-node, crictl") {
		t.Fatalf("err = %v, want it to name kubeforge-node and crictl", err)
	}
}

// The Makefile fragment and the Go defaults must agree (both read the versions table).
func TestMakefileDefaultsMatch(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("no make on PATH: the project is built with make (install it)")
	}
	out, err := exec.Command("make", "-s", "--no-print-directory", "-C", "..", "print-tool-versions").CombinedOutput()
	if err != nil {
		t.Fatalf("make print-tool-versions: %v\n%s", err, out)
	}
	want := DefaultContainerdVersion + " " + DefaultCrictlVersion + " " + DefaultCoreDNSVersion
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("images.mk builds %q, the Go defaults are %q", got, want)
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, r io.Reader) (map[string]tarFile, []string) {
	t.Helper()
	files := map[string]tarFile{}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, order
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if _, dup := files[h.Name]; dup {
			t.Errorf("%s twice in the tar", h.Name)
		}
		files[h.Name] = tarFile{h, b}
		order = append(order, h.Name)
	}
}

// fakeRootfs is a small tar laid out like GNU tar's output of a debootstrapped tree.
func fakeRootfs(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	add(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin", Mode: 0o777}, "")
	add(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./etc/crictl.yaml", Typeflag: tar.TypeReg, Mode: 0o644}, "old")
	add(&tar.Header{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./usr/bin/perl", Typeflag: tar.TypeReg, Mode: 0o755}, "perl")
	add(&tar.Header{Name: "./usr/bin/perl5.36.0", Typeflag: tar.TypeLink, Linkname: "./usr/bin/perl", Mode: 0o755}, "")
	add(&tar.Header{Name: "./usr/local/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./usr/local/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, "")
	tw.Close()
	return buf.Bytes()
}

func TestNodeTarAssembly(t *testing.T) {
	opts := testOptions(t, fakeArtifacts(t))
	p, err := makePlan(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.generate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeNodeTar(&out, bytes.NewReader(fakeRootfs(t)), p.files); err != nil {
		t.Fatal(err)
	}
	files, order := readTar(t, &out)

	// Rootfs entries pass through, renamed without "./", hard links too.
	if f, ok := files["usr/bin/perl5.36.0"]; !ok || f.hdr.Typeflag != tar.TypeLink || f.hdr.Linkname != "usr/bin/perl" {
		t.Errorf("hard link: %+v", f.hdr)
	}
	if f := files["tmp/"]; f.hdr == nil || f.hdr.Mode != 0o1777 {
		t.Errorf("tmp/ lost its mode")
	}
	if f := files["bin"]; f.hdr == nil || f.hdr.Linkname != "usr/bin" {
		t.Errorf("bin symlink lost")
	}
	if _, ok := files["./"]; ok {
		t.Error("root entry copied")
	}
	// The overlay replaces a rootfs file instead of adding a second entry.
	if got := string(files["etc/crictl.yaml"].data); !strings.Contains(got, "runtime-endpoint: unix:///run/containerd/containerd.sock") {
		t.Errorf("etc/crictl.yaml = %q", got)
	}
	for _, b := range nodeBinaries {
		f, ok := files["usr/local/bin/"+b]
		if !ok {
			t.Errorf("usr/local/bin/%s missing", b)
			continue
		}
		if f.hdr.Mode != 0o755 || f.hdr.Uid != 0 || f.hdr.Gid != 0 || string(f.data) != "#!fake "+b+"\n" {
			t.Errorf("usr/local/bin/%s: mode %o owner %d:%d data %q", b, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.data)
		}
	}
	for _, b := range []string{"kubeforge-pause", "coredns"} {
		if _, ok := files["usr/local/bin/"+b]; ok {
			t.Errorf("%s is in the node's PATH; it belongs in its pod image only", b)
		}
	}
	// Missing parents are made, before their children.
	pos := map[string]int{}
	for i, n := range order {
		pos[strings.TrimSuffix(n, "/")] = i
	}
	for _, d := range []string{"kubeforge", "kubeforge/images", "etc/kubeforge"} {
		if f, ok := files[d+"/"]; !ok || f.hdr.Typeflag != tar.TypeDir {
			t.Errorf("directory %s/ missing", d)
		}
	}
	for n := range pos {
		if dir := filepath.Dir(n); dir != "." {
			if _, ok := pos[dir]; ok && pos[dir] > pos[n] {
				t.Errorf("%s comes before its directory", n)
			}
		}
	}
	// The preloaded images are docker archives named as the cluster will ask for them.
	wantTags := map[string]string{
		"pause":           "kubeforge.local/pause:3.10",
		"kube-components": "kubeforge.local/kube-components:" + versions.Default().Kubernetes,
		"coredns":         "kubeforge.local/coredns:" + DefaultCoreDNSVersion,
	}
	// pause and the components are boot images (imported before the kubelet starts).
	wantPath := map[string]string{
		"pause":           "kubeforge/images/boot/pause.tar",
		"kube-components": "kubeforge/images/boot/kube-components.tar",
		"coredns":         "kubeforge/images/coredns.tar",
	}
	for file, tag := range wantTags {
		f, ok := files[wantPath[file]]
		if !ok {
			t.Errorf("%s missing", wantPath[file])
			continue
		}
		inner, _ := readTar(t, bytes.NewReader(f.data))
		var manifest []struct{ RepoTags []string }
		json.Unmarshal(inner["manifest.json"].data, &manifest)
		if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != tag {
			t.Errorf("%s.tar manifest %s, want tag %s", file, inner["manifest.json"].data, tag)
		}
	}
	// image-info.json tells the versions and images.
	var info contract.ImageInfo
	if err := json.Unmarshal(files["etc/kubeforge/image-info.json"].data, &info); err != nil {
		t.Fatal(err)
	}
	if info.KubernetesVersion != versions.Default().Kubernetes || info.ContainerdVersion != DefaultContainerdVersion || info.Images["pause"] != oci.PauseImage || len(info.Preload) != 3 {
		t.Errorf("image-info.json: %+v", info)
	}
}

func TestReadJSONStream(t *testing.T) {
	if err := readJSONStream(strings.NewReader(`{"status":"sha256:abc"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	err := readJSONStream(strings.NewReader(`{"status":"x"}{"errorDetail":{"message":"no space left"},"error":"no space left"}`))
	if err == nil || err.Error() != "no space left" {
		t.Fatalf("err = %v", err)
	}
}

func TestTagSafe(t *testing.T) {
	if got := tagSafe("v1.99.0+kf.1"); got != "v1.99.0_kf.1" {
		t.Fatal(got)
	}
}

func TestGeneratedFilesAreCached(t *testing.T) {
	opts := testOptions(t, fakeArtifacts(t))
	p, err := makePlan(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.generate(); err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(opts.Rootfs.CacheDir, "preload", "*.tar"))
	if len(cached) != 3 {
		t.Fatalf("cached %v, want 3 tarballs", cached)
	}
	// A second plan reads them instead of generating.
	p2, _ := makePlan(opts)
	for i := range p2.files {
		if p2.files[i].gen != nil {
			p2.files[i].gen = func() ([]byte, error) { t.Error("generated again"); return nil, nil }
		}
	}
	if err := p2.generate(); err != nil {
		t.Fatal(err)
	}
	for i, f := range p2.files {
		if !bytes.Equal(f.data, p.files[i].data) {
			t.Errorf("%s differs from the cached copy", f.path)
		}
	}
}

// TestFileDigestCache: a digest is kept on disk for the next process, keyed by path, size and
// modification time; a changed file is hashed again and its old entry dropped.
func TestFileDigestCache(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	file := filepath.Join(dir, "bin")
	if err := os.WriteFile(file, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	d1, err := fileDigest(cache, file)
	if err != nil {
		t.Fatal(err)
	}
	if want := "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"; d1 != want {
		t.Fatalf("digest of %q = %s, want %s", "one", d1, want)
	}
	onDisk := readDigestCache(cache)
	if len(onDisk) != 1 {
		t.Fatalf("cache holds %v, want one entry", onDisk)
	}
	// A new process (empty memory) takes the digest from the disk: plant a marker to see it.
	for k := range onDisk {
		onDisk[k] = "from-disk"
	}
	b, _ := json.Marshal(onDisk)
	if err := os.WriteFile(filepath.Join(cache, digestCacheFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	forgetDigests()
	if d, err := fileDigest(cache, file); err != nil || d != "from-disk" {
		t.Fatalf("after a restart: %q, %v; want the cached entry", d, err)
	}
	// The file changes: hashed again, the old entry replaced.
	if err := os.WriteFile(file, []byte("two!"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2, err := fileDigest(cache, file)
	if err != nil || d2 == "from-disk" || d2 == d1 {
		t.Fatalf("changed file: %q, %v", d2, err)
	}
	if onDisk := readDigestCache(cache); len(onDisk) != 1 {
		t.Fatalf("cache holds %v, want only the new entry", onDisk)
	}
	forgetDigests()
}

func forgetDigests() {
	digestMemo.Lock()
	defer digestMemo.Unlock()
	digestMemo.m, digestMemo.loaded = map[string]string{}, map[string]bool{}
}
