// Package oci makes the small container images preloaded into every node (the pod sandbox's pause
// image, the skeleton the control-plane pods run in, CoreDNS) as docker-archive tarballs that
// `ctr -n k8s.io images import FILE` loads under their repo tag. No registry is involved: each
// image is one layer built here from local files.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image names. They live under kubeforge.local, a registry that does not exist, so that nothing
// ever tries to pull them: they are only ever imported.
const (
	Registry = "kubeforge.local"
	// PauseImage is the pod sandbox image; containerd's sandbox image setting must name it.
	PauseImage = Registry + "/pause:3.10"
	// KubeComponentsRepo is the skeleton image's repository; its tag is the Kubernetes version.
	KubeComponentsRepo = Registry + "/kube-components"
	// CoreDNSRepo is CoreDNS's repository; its tag is the CoreDNS version.
	CoreDNSRepo = Registry + "/coredns"
	// FormatVersion changes whenever what this package writes for the same inputs changes; the
	// node image's tag hashes it.
	FormatVersion = "1"
)

// KubeComponentsImage is the skeleton image for a Kubernetes version ("v1.N.P").
func KubeComponentsImage(kubeVersion string) string { return KubeComponentsRepo + ":" + kubeVersion }

// CoreDNSImage is the CoreDNS image for a CoreDNS version ("v1.13.2").
func CoreDNSImage(version string) string { return CoreDNSRepo + ":" + version }

// Epoch is the time stamp of every file and image made here, so the same inputs give the same
// bytes (and the same image ID).
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Entry is one file, directory or symlink of an image's layer. Files and directories are owned
// by root.
type Entry struct {
	Path     string // absolute or relative to /, e.g. "/etc/passwd"
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     int64  // permission bits (and sticky bit); default 0644 for files, 0755 for directories
	Data     []byte // a file's content, when Source is empty
	Source   string // a host file to copy, instead of Data
	Linkname string // a symlink's target
}

// Spec describes one image.
type Spec struct {
	Ref        string // repository:tag, e.g. "kubeforge.local/pause:3.10"
	Entrypoint []string
	Cmd        []string
	Env        []string // default PATH
	Arch       string   // default runtime.GOARCH
	Entries    []Entry  // parent directories are added when missing
	Labels     map[string]string
}

// DefaultPath is the PATH set in every image.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Pause is the pod sandbox image: /pause, the kubeforge-pause binary.
func Pause(pauseBinary string) Spec {
	return Spec{
		Ref:        PauseImage,
		Entrypoint: []string{"/pause"},
		Entries:    []Entry{{Path: "/pause", Type: tar.TypeReg, Mode: 0o755, Source: pauseBinary}},
	}
}

// KubeComponents is the skeleton image the control-plane and kube-proxy pods run in. It holds no
// binaries: those pods mount the node's /usr read-only at /usr, so the usrmerge symlinks (bin,
// sbin, lib, lib64) find the node binary (/usr/local/bin/kubeforge-node), iptables and their
// libraries there.
func KubeComponents(kubeVersion string) Spec {
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\nnogroup:x:65534:\n"
	nsswitch := "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"
	return Spec{
		Ref: KubeComponentsImage(kubeVersion),
		Entries: []Entry{
			{Path: "/bin", Type: tar.TypeSymlink, Linkname: "usr/bin"},
			{Path: "/sbin", Type: tar.TypeSymlink, Linkname: "usr/sbin"},
			{Path: "/lib", Type: tar.TypeSymlink, Linkname: "usr/lib"},
			{Path: "/lib64", Type: tar.TypeSymlink, Linkname: "usr/lib64"},
			{Path: "/usr", Type: tar.TypeDir},
			{Path: "/etc", Type: tar.TypeDir},
			{Path: "/etc/passwd", Type: tar.TypeReg, Data: []byte(passwd)},
			{Path: "/etc/group", Type: tar.TypeReg, Data: []byte(group)},
			{Path: "/etc/nsswitch.conf", Type: tar.TypeReg, Data: []byte(nsswitch)},
			{Path: "/tmp", Type: tar.TypeDir, Mode: 0o1777},
			{Path: "/run", Type: tar.TypeDir},
			{Path: "/var", Type: tar.TypeDir},
			{Path: "/var/run", Type: tar.TypeSymlink, Linkname: "../run"},
			{Path: "/var/tmp", Type: tar.TypeDir, Mode: 0o1777},
			{Path: "/var/lib", Type: tar.TypeDir},
			{Path: "/root", Type: tar.TypeDir, Mode: 0o700},
			{Path: "/proc", Type: tar.TypeDir},
			{Path: "/sys", Type: tar.TypeDir},
			{Path: "/dev", Type: tar.TypeDir},
		},
	}
}

// CoreDNS is the CoreDNS image: /coredns, and the CA bundle (caBundle, when not empty) at
// /etc/ssl/certs/ca-certificates.crt for its forwarders over TLS.
func CoreDNS(version, corednsBinary, caBundle string) Spec {
	s := Spec{
		Ref:        CoreDNSImage(version),
		Entrypoint: []string{"/coredns"},
		Entries:    []Entry{{Path: "/coredns", Type: tar.TypeReg, Mode: 0o755, Source: corednsBinary}},
	}
	if caBundle != "" {
		s.Entries = append(s.Entries, Entry{Path: "/etc/ssl/certs/ca-certificates.crt", Type: tar.TypeReg, Source: caBundle})
	}
	return s
}

// Program is the image of one static Go program (an add-on's): the binary at /<name>, its
// entrypoint, and a /tmp for programs that write there (a read-only root mounts an emptyDir).
func Program(ref, name, binary string, args ...string) Spec {
	return Spec{
		Ref:        ref,
		Entrypoint: []string{"/" + name},
		Cmd:        args,
		Entries: []Entry{
			{Path: "/" + name, Type: tar.TypeReg, Mode: 0o755, Source: binary},
			{Path: "/tmp", Type: tar.TypeDir, Mode: 0o1777},
		},
	}
}

// Layer returns the uncompressed tar of the spec's files: sorted, with missing parent
// directories added, all owned by root, all dated Epoch.
func Layer(spec Spec) ([]byte, error) {
	entries := map[string]Entry{}
	for _, e := range spec.Entries {
		p := clean(e.Path)
		if p == "" {
			return nil, fmt.Errorf("image %s: bad path %q", spec.Ref, e.Path)
		}
		e.Path = p
		entries[p] = e
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = Entry{Path: dir, Type: tar.TypeDir}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := entries[p]
		hdr := &tar.Header{Name: p, Typeflag: e.Type, ModTime: Epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		var data []byte
		switch e.Type {
		case tar.TypeDir:
			hdr.Name += "/"
			hdr.Mode = orDefault(e.Mode, 0o755)
		case tar.TypeSymlink:
			hdr.Linkname = e.Linkname
			hdr.Mode = 0o777
		case tar.TypeReg:
			hdr.Mode = orDefault(e.Mode, 0o644)
			data = e.Data
			if e.Source != "" {
				b, err := os.ReadFile(e.Source)
				if err != nil {
					return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
				}
				data = b
			}
			hdr.Size = int64(len(data))
		default:
			return nil, fmt.Errorf("image %s: %s: unsupported entry type %q", spec.Ref, p, e.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Image builds the spec as a one-layer image.
func Image(spec Spec) (v1.Image, error) {
	layerTar, err := Layer(spec)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "kubeforge", Comment: "kubeforge " + FormatVersion},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = spec.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: Epoch}
	cf.Author = "kubeforge"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = spec.Env
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{DefaultPath}
	}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = spec.Labels
	return mutate.ConfigFile(img, cf)
}

// Write writes the spec's image to w as a docker-archive tarball (docker save's format) whose
// manifest names the image by spec.Ref.
func Write(w io.Writer, spec Spec) error {
	tag, err := name.NewTag(spec.Ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image name %q: %w", spec.Ref, err)
	}
	img, err := Image(spec)
	if err != nil {
		return err
	}
	return tarball.Write(tag, img, w)
}

// Bytes returns the docker-archive tarball of spec.
func Bytes(spec Spec) ([]byte, error) {
	var buf bytes.Buffer
	if err := Write(&buf, spec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes the docker-archive tarball of spec to a file.
func WriteFile(file string, spec Spec) error {
	b, err := Bytes(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func clean(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" || p == "." {
		return ""
	}
	return p
}

func orDefault(mode, def int64) int64 {
	if mode == 0 {
		return def
	}
	return mode
}
