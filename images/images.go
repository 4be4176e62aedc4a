// Package images builds kubeforge's node image and loads host images into nodes.
//
// The node image is made without a Dockerfile (no base image can be pulled): the cached Debian
// rootfs tarball (package rootfs), plus kubeforge's binaries, the tools built by images.mk, the
// preloaded pod images (package oci) and a little configuration, streamed as one tar into
// Docker's image import. Its tag carries a hash of every input, so a node is never made from a
// stale image and an unchanged build is skipped.
package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/internal/versions"
)

// NodeRepo is the node image's repository; its tag is "<kubernetes version>-<inputs hash>".
const NodeRepo = oci.Registry + "/node"

// Default tool versions are the default release's (internal/versions); Build prefers the version
// recorded by the make target that built the binary (bin/.<tool>.version).
var (
	DefaultContainerdVersion = versions.Default().Containerd
	DefaultCrictlVersion     = versions.Default().Crictl
	DefaultCoreDNSVersion    = versions.Default().CoreDNS
)

// formatVersion changes whenever the layout of the node image changes for the same inputs.
const formatVersion = "1"

// Paths inside the node.
const (
	NodeBinDir     = "/usr/local/bin"
	PreloadDir     = contract.ImagesDir
	CrictlConfig   = "/etc/crictl.yaml"
	Entrypoint     = contract.InitPath
	containerdSock = "unix://" + contract.ContainerdSocket
)

// Labels on the node image.
const (
	LabelKubernetesVersion = "dev.kubeforge.kubernetes-version"
	LabelContainerdVersion = "dev.kubeforge.containerd-version"
	LabelInputs            = "dev.kubeforge.inputs"
	LabelRootfs            = "dev.kubeforge.rootfs"
)

// nodeBinaries are copied from ArtifactsDir/bin to /usr/local/bin in the node.
var nodeBinaries = []string{"kubeforge-node", "kubeforge-init", "containerd", "containerd-shim-runc-v2", "ctr", "crictl"}

// preloadBinaries are only used to make preloaded images.
var preloadBinaries = []string{"kubeforge-pause", "coredns"}

// BuildOptions say what goes into the node image.
type BuildOptions struct {
	// ArtifactsDir holds bin/ with kubeforge-node, kubeforge-init and the tools built by
	// `make tools` (containerd, containerd-shim-runc-v2, ctr, crictl, coredns, kubeforge-pause).
	ArtifactsDir string
	// KubernetesVersion of the node binary; default versions.Default().Kubernetes.
	KubernetesVersion string
	// Tool versions, for the image's labels, image-info.json and the CoreDNS image's tag.
	// Default: bin/.<tool>.version as written by images.mk, else the Default* constants.
	ContainerdVersion, CrictlVersion, CoreDNSVersion string
	// CABundle is put into the CoreDNS image; default the host's
	// /etc/ssl/certs/ca-certificates.crt when it exists.
	CABundle string
	// Rootfs chooses the Debian rootfs (suite, packages, cache directory).
	Rootfs rootfs.Options
	// Client is the Docker client; Build and Exists need it, Ref does not.
	Client *client.Client
	// Log shows progress; nil shows nothing.
	Log *ui.Logger
}

// overlayFile is one file the node image gets on top of the rootfs.
type overlayFile struct {
	path string // relative to /, no leading slash
	mode int64
	src  string // a host file, or
	data []byte // literal content, or
	gen  func() ([]byte, error)
	key  string // for gen: a digest of everything gen reads
}

// plan is everything a build would do, computed without touching Docker or debootstrap.
type plan struct {
	opts      BuildOptions
	rootfsKey string
	info      contract.ImageInfo
	files     []overlayFile
	hash      string
	ref       string
}

func (o BuildOptions) withDefaults() BuildOptions {
	if o.ArtifactsDir == "" {
		o.ArtifactsDir = "."
	}
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = versions.Default().Kubernetes
	}
	if o.ContainerdVersion == "" {
		o.ContainerdVersion = stampedVersion(o.ArtifactsDir, "containerd", DefaultContainerdVersion)
	}
	if o.CrictlVersion == "" {
		o.CrictlVersion = stampedVersion(o.ArtifactsDir, "crictl", DefaultCrictlVersion)
	}
	if o.CoreDNSVersion == "" {
		o.CoreDNSVersion = stampedVersion(o.ArtifactsDir, "coredns", DefaultCoreDNSVersion)
	}
	if o.CABundle == "" {
		if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			o.CABundle = "/etc/ssl/certs/ca-certificates.crt"
		}
	}
	if o.Log == nil {
		o.Log = ui.Discard()
	}
	o.Rootfs.Log = o.Log
	return o
}

// stampedVersion reads bin/.<tool>.version, written by images.mk when it built the tool.
func stampedVersion(artifacts, tool, def string) string {
	b, err := os.ReadFile(filepath.Join(artifacts, "bin", "."+tool+".version"))
	if v := strings.TrimSpace(string(b)); err == nil && v != "" {
		return v
	}
	return def
}

// Ref returns the tag the node image of opts has: the same as Build would return, without
// building anything (it reads and hashes the input files).
func Ref(opts BuildOptions) (string, error) {
	p, err := makePlan(opts)
	if err != nil {
		return "", err
	}
	return p.ref, nil
}

// Exists tells whether Docker has the image ref.
func Exists(ctx context.Context, cli *client.Client, ref string) (bool, error) {
	_, err := cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case client.IsErrNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("inspecting image %s: %w", ref, err)
	}
}

// Build makes the node image unless Docker already has it, and returns its reference.
func Build(ctx context.Context, opts BuildOptions) (string, error) {
	if err := ensureBinaries(ctx, opts); err != nil {
		return "", err
	}
	p, err := makePlan(opts)
	if err != nil {
		return "", err
	}
	o := p.opts
	if o.Client == nil {
		return "", errors.New("images.Build: no Docker client")
	}
	if ok, err := Exists(ctx, o.Client, p.ref); err != nil {
		return "", err
	} else if ok {
		o.Log.Debugf("node image %s is up to date", p.ref)
		return p.ref, nil
	}
	rootfsTar, err := rootfs.Ensure(ctx, o.Rootfs)
	if err != nil {
		return "", err
	}

	step := o.Log.Step("Making the preloaded pod images")
	err = p.generate()
	if step.Done(err) != nil {
		return "", err
	}

	step = o.Log.Step("Importing node image " + p.ref)
	if err := p.importImage(ctx, rootfsTar); err != nil {
		return "", step.Done(err)
	}
	insp, err := o.Client.ImageInspect(ctx, p.ref)
	if err != nil {
		return "", step.Done(fmt.Errorf("the imported image %s is not there: %w", p.ref, err))
	}
	step.Done(nil)
	o.Log.Debugf("node image %s: %d MB", p.ref, insp.Size/1e6)
	return p.ref, nil
}

func makePlan(opts BuildOptions) (*plan, error) {
	o := opts.withDefaults()
	bin := filepath.Join(o.ArtifactsDir, "bin")
	var missing []string
	for _, b := range append(append([]string{}, nodeBinaries...), preloadBinaries...) {
		file := filepath.Join(bin, b)
		if b == "kubeforge-node" {
			file = NodeBinary(o.ArtifactsDir, o.KubernetesVersion)
		}
		if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, strings.TrimPrefix(file, bin+"/"))
		}
	}
	if len(missing) > 0 {
		return nil, kferr.Environment("build them first: make tools (containerd, ctr, crictl, coredns, kubeforge-pause) and make for kubeforge-node and kubeforge-init",
			"the node image needs %s in %s", strings.Join(missing, ", "), bin)
	}

	p := &plan{opts: o, rootfsKey: rootfs.Key(o.Rootfs)}
	specs := p.preloadSpecs()
	p.info = contract.ImageInfo{
		KubernetesVersion: o.KubernetesVersion,
		ContainerdVersion: o.ContainerdVersion,
		CrictlVersion:     o.CrictlVersion,
		CoreDNSVersion:    o.CoreDNSVersion,
		Rootfs:            p.rootfsKey,
		Images: map[string]string{
			"pause":           oci.PauseImage,
			"kube-components": oci.KubeComponentsImage(o.KubernetesVersion),
			"coredns":         oci.CoreDNSImage(o.CoreDNSVersion),
		},
	}
	for _, b := range nodeBinaries {
		src := filepath.Join(bin, b)
		if b == "kubeforge-node" {
			src = NodeBinary(o.ArtifactsDir, o.KubernetesVersion)
		}
		p.files = append(p.files, overlayFile{path: path.Join(NodeBinDir[1:], b), mode: 0o755, src: src})
	}
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		s := specs[name]
		key, err := specKey(p.cacheDir(), s)
		if err != nil {
			return nil, err
		}
		dir := PreloadDir[1:]
		if bootImages[name] {
			dir = path.Join(dir, contract.BootImagesSubdir)
		}
		file := path.Join(dir, name+".tar")
		p.info.Preload = append(p.info.Preload, "/"+file)
		p.files = append(p.files, overlayFile{path: file, mode: 0o644, key: key, gen: func() ([]byte, error) { return oci.Bytes(s) }})
	}
	infoJSON, err := json.MarshalIndent(p.info, "", "  ")
	if err != nil {
		return nil, err
	}
	crictl := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 10\n", containerdSock, containerdSock)
	p.files = append(p.files,
		overlayFile{path: CrictlConfig[1:], mode: 0o644, data: []byte(crictl)},
		overlayFile{path: contract.ImageInfoPath[1:], mode: 0o644, data: append(infoJSON, '\n')},
	)
	sort.Slice(p.files, func(i, j int) bool { return p.files[i].path < p.files[j].path })

	h := sha256.New()
	fmt.Fprintf(h, "kubeforge node image format %s\nrootfs %s\nkubernetes %s\n", formatVersion, p.rootfsKey, o.KubernetesVersion)
	for _, f := range p.files {
		d, err := f.digest(p.cacheDir())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(h, "%s %o %s\n", f.path, f.mode, d)
	}
	p.hash = hex.EncodeToString(h.Sum(nil))
	p.ref = NodeRepo + ":" + tagSafe(o.KubernetesVersion) + "-" + p.hash[:12]
	return p, nil
}

// bootImages are the preloaded images the kubelet needs before it can start the control plane;
// the node imports them first (bootstrap/containerd).
var bootImages = map[string]bool{"pause": true, "kube-components": true}

// preloadSpecs are the pod images preloaded into every node, by file name.
func (p *plan) preloadSpecs() map[string]oci.Spec {
	bin := filepath.Join(p.opts.ArtifactsDir, "bin")
	return map[string]oci.Spec{
		"pause":           oci.Pause(filepath.Join(bin, "kubeforge-pause")),
		"kube-components": oci.KubeComponents(p.opts.KubernetesVersion),
		"coredns":         oci.CoreDNS(p.opts.CoreDNSVersion, filepath.Join(bin, "coredns"), p.opts.CABundle),
	}
}

// cacheDir is kubeforge's cache directory ($KUBEFORGE_CACHE, ~/.cache/kubeforge).
func (p *plan) cacheDir() string {
	if p.opts.Rootfs.CacheDir != "" {
		return p.opts.Rootfs.CacheDir
	}
	return rootfs.CacheDir()
}

// generate fills in the content of the generated files. They are cached by their key under
// $KUBEFORGE_CACHE/preload, so that a rebuild after a change of the node binary alone does not
// compress CoreDNS again.
func (p *plan) generate() error {
	cacheDir := filepath.Join(p.cacheDir(), "preload")
	for i := range p.files {
		f := &p.files[i]
		if f.gen == nil || f.data != nil {
			continue
		}
		cached := filepath.Join(cacheDir, strings.TrimSuffix(path.Base(f.path), ".tar")+"-"+f.key[:24]+".tar")
		if b, err := os.ReadFile(cached); err == nil {
			f.data = b
			continue
		}
		b, err := f.gen()
		if err != nil {
			return fmt.Errorf("making %s: %w", f.path, err)
		}
		f.data = b
		// The cache is an optimisation: failing to write it is not an error.
		if os.MkdirAll(cacheDir, 0o755) == nil {
			if tmp, err := os.CreateTemp(cacheDir, ".tmp-"); err == nil {
				_, werr := tmp.Write(b)
				if cerr := tmp.Close(); werr == nil && cerr == nil {
					os.Rename(tmp.Name(), cached)
				}
				os.Remove(tmp.Name())
			}
		}
	}
	return nil
}

// nodeTar streams the node's files (the rootfs tar's, then the overlay's) as one tar.
func (p *plan) nodeTar(rootfsTar string) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(safe.Call(func() error {
			f, err := os.Open(rootfsTar)
			if err != nil {
				return err
			}
			defer f.Close()
			return writeNodeTar(pw, f, p.files)
		}))
	}()
	return pr
}

func (p *plan) importImage(ctx context.Context, rootfsTar string) error {
	o := p.opts
	pr := p.nodeTar(rootfsTar)
	changes := []string{
		`ENTRYPOINT ["` + Entrypoint + `"]`,
		`ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
		fmt.Sprintf(`LABEL %s=%q %s=%q %s=%q %s=%q`,
			LabelKubernetesVersion, o.KubernetesVersion, LabelContainerdVersion, o.ContainerdVersion,
			LabelInputs, p.hash, LabelRootfs, p.rootfsKey),
	}
	resp, err := o.Client.ImageImport(ctx, image.ImportSource{Source: pr, SourceName: "-"}, p.ref, image.ImportOptions{
		Changes: changes,
		Message: "kubeforge node image",
	})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker image import: %w", err)
	}
	defer resp.Close()
	if err := readJSONStream(resp); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("docker image import: %w", err)
	}
	return nil
}

// writeNodeTar writes the rootfs tar's entries, less those the overlay replaces, then the
// overlay's files and their missing parent directories, as one tar. Names are written without
// a leading "./".
func writeNodeTar(w io.Writer, rootfsTar io.Reader, files []overlayFile) error {
	replaced := map[string]bool{}
	for _, f := range files {
		replaced[f.path] = true
	}
	dirs := map[string]bool{}
	tw := tar.NewWriter(w)
	tr := tar.NewReader(rootfsTar)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the rootfs tarball: %w", err)
		}
		name := cleanName(hdr.Name)
		if name == "" || replaced[name] {
			continue
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs[name] = true
			hdr.Name = name + "/"
		} else {
			hdr.Name = name
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = cleanName(hdr.Linkname)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.path); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := tw.WriteHeader(&tar.Header{Name: parents[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: oci.Epoch, Uname: "root", Gname: "root"}); err != nil {
				return err
			}
		}
		if err := writeOverlayFile(tw, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeOverlayFile(tw *tar.Writer, f overlayFile) error {
	hdr := &tar.Header{Name: f.path, Typeflag: tar.TypeReg, Mode: f.mode, ModTime: oci.Epoch, Uname: "root", Gname: "root"}
	if f.src == "" {
		if f.data == nil && f.gen != nil {
			return fmt.Errorf("%s was not generated", f.path)
		}
		hdr.Size = int64(len(f.data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(f.data)
		return err
	}
	src, err := os.Open(f.src)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if n, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("copying %s: %w", f.src, err)
	} else if n != hdr.Size {
		return fmt.Errorf("copying %s: it changed size while being copied", f.src)
	}
	return nil
}

// digest identifies the file's content.
func (f overlayFile) digest(cacheDir string) (string, error) {
	switch {
	case f.src != "":
		return fileDigest(cacheDir, f.src)
	case f.gen != nil:
		return "gen:" + f.key, nil
	default:
		s := sha256.Sum256(f.data)
		return hex.EncodeToString(s[:]), nil
	}
}

// specKey is a digest of everything an oci.Spec's image is made of.
func specKey(cacheDir string, s oci.Spec) (string, error) {
	s.Entries = append([]oci.Entry(nil), s.Entries...)
	for i, e := range s.Entries {
		if e.Source != "" {
			d, err := fileDigest(cacheDir, e.Source)
			if err != nil {
				return "", err
			}
			s.Entries[i].Source = "sha256:" + d
		}
	}
	b, err := json.Marshal(struct {
		Format string
		Spec   oci.Spec
	}{oci.FormatVersion, s})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// fileDigest hashes a file. The result is remembered for the same path, size and modification
// time, in memory and, when cacheDir is set, in cacheDir/digests.json: every `start` asks for the
// node image's reference, and hashing the ~350 MB of binaries it is made of took 0.4-1 s of it.
func fileDigest(cacheDir, file string) (string, error) {
	st, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	memoKey := fmt.Sprintf("%s\x00%d\x00%d", file, st.Size(), st.ModTime().UnixNano())
	digestMemo.Lock()
	if cacheDir != "" && !digestMemo.loaded[cacheDir] {
		digestMemo.loaded[cacheDir] = true
		for k, v := range readDigestCache(cacheDir) {
			digestMemo.m[k] = v
		}
	}
	d, ok := digestMemo.m[memoKey]
	digestMemo.Unlock()
	if ok {
		return d, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	d = hex.EncodeToString(h.Sum(nil))
	digestMemo.Lock()
	digestMemo.m[memoKey] = d
	digestMemo.Unlock()
	if cacheDir != "" {
		saveDigest(cacheDir, file, memoKey, d)
	}
	return d, nil
}

var digestMemo = struct {
	sync.Mutex
	m      map[string]string
	loaded map[string]bool
}{m: map[string]string{}, loaded: map[string]bool{}}

const digestCacheFile = "digests.json"

func readDigestCache(cacheDir string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(filepath.Join(cacheDir, digestCacheFile))
	if err == nil {
		_ = json.Unmarshal(b, &m) // a damaged cache is only a slower start
	}
	return m
}

// saveDigest adds a digest to the on-disk cache, dropping the entries of earlier versions of the
// same file; written by rename, so a concurrent reader sees the old or the new cache, and a
// concurrent writer's entry lost is only hashed again. Failures are ignored: it is only a cache.
func saveDigest(cacheDir, file, memoKey, digest string) {
	m := readDigestCache(cacheDir)
	for k := range m {
		if strings.HasPrefix(k, file+"\x00") {
			delete(m, k)
		}
	}
	m[memoKey] = digest
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(cacheDir, digestCacheFile+".*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(cacheDir, digestCacheFile)); err != nil {
		_ = os.Remove(tmp.Name())
	}
}

func cleanName(name string) string {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "." {
		return ""
	}
	return n
}

// tagSafe makes a version usable in a Docker tag ([A-Za-z0-9_.-]).
func tagSafe(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '_'
	}, v)
}

// readJSONStream reads a Docker progress stream to its end and returns the error it reports.
func readJSONStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// ensureBinaries builds the node binary of a non-default release on first use.
func ensureBinaries(ctx context.Context, opts BuildOptions) error {
	o := opts.withDefaults()
	return EnsureNodeBinary(ctx, o.ArtifactsDir, o.KubernetesVersion, o.Log)
}
