// Package bundle is the file format of a classroom bundle (`kubeforge bundle save|load`): one
// uncompressed tar whose first member is manifest.json, followed by the members it lists, in that
// order, each with its size and sha256:
//
//	manifest.json            Manifest: format, version, Kubernetes version, the images, members
//	node.tar                 `docker save` of the node image (its kubeforge.local/node tag kept)
//	image-1.tar ...          `docker save` of each workload image named at save time
//	program-<name>.tar       the docker-archive of an add-on's / the registry's program image
//	cluster.yaml             the cluster config given at save time (absent without --config)
//
// Nothing else may be in the file. A reader checks the manifest first (Open), then every member's
// size and sha256 in one pass (Verify) before anything is loaded, and hashes each member again
// while it is consumed (Each), so a damaged, truncated or altered file changes nothing.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Format and Version identify the file; a reader refuses another format or a newer version.
const (
	Format  = "kubeforge.dev/bundle"
	Version = 1
)

// ManifestName is the first member.
const ManifestName = "manifest.json"

// MaxManifest bounds manifest.json (a real one is a few KiB).
const MaxManifest = 1 << 20

// Manifest says what a bundle holds.
type Manifest struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Name is the bundle's name (the saved file's base name): `bundle load` writes its config
	// to $KUBEFORGE_HOME/bundles.d/<Name>/cluster.yaml.
	Name string `json:"name"`
	// KubernetesVersion is the node image's release (exact: a row of internal/versions).
	KubernetesVersion string `json:"kubernetesVersion"`
	// ClusterName is the config's cluster name, empty for the default.
	ClusterName string    `json:"clusterName,omitempty"`
	NodeImage   Image     `json:"nodeImage"`
	Images      []Image   `json:"images"`
	Programs    []Program `json:"programs"`
	// Config is the member holding the cluster config, empty when none was given.
	Config  string   `json:"config,omitempty"`
	Members []Member `json:"members"`
}

// Image is a Docker image held as a `docker save` archive.
type Image struct {
	Ref    string `json:"ref"`
	ID     string `json:"id"`
	Member string `json:"member"`
}

// Program is a program image (images.ProgramImage) held as its docker-archive.
type Program struct {
	Program string `json:"program"`
	Version string `json:"version"`
	Ref     string `json:"ref"`
	ID      string `json:"id"`
	Member  string `json:"member"`
}

// Member is one file of the bundle after the manifest.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// DamagedError is a bundle that is not what its manifest says (or no bundle at all).
type DamagedError struct {
	File, Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is not a usable kubeforge bundle: %s", e.File, e.Reason)
}

func damaged(file, format string, a ...any) error {
	return &DamagedError{File: file, Reason: fmt.Sprintf(format, a...)}
}

var memberName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)

// Check validates a manifest: format, version, member names and sizes, references.
func (m *Manifest) Check() error {
	if m.Format != Format {
		return fmt.Errorf("format %q, want %q", m.Format, Format)
	}
	if m.Version < 1 || m.Version > Version {
		return fmt.Errorf("format version %d: this kubeforge reads version %d (use a newer kubeforge, or save the bundle again with this one)", m.Version, Version)
	}
	if m.KubernetesVersion == "" {
		return errors.New("no kubernetesVersion")
	}
	seen := map[string]bool{ManifestName: true}
	for _, mb := range m.Members {
		if !memberName.MatchString(mb.Name) || seen[mb.Name] {
			return fmt.Errorf("bad or repeated member name %q", mb.Name)
		}
		seen[mb.Name] = true
		if mb.Size < 0 || len(mb.SHA256) != 64 {
			return fmt.Errorf("member %s: bad size or sha256", mb.Name)
		}
		if _, err := hex.DecodeString(mb.SHA256); err != nil {
			return fmt.Errorf("member %s: bad sha256", mb.Name)
		}
	}
	refs := []string{m.NodeImage.Member}
	if m.NodeImage.Ref == "" || m.NodeImage.ID == "" {
		return errors.New("no node image")
	}
	for _, im := range m.Images {
		if im.Ref == "" || im.ID == "" {
			return fmt.Errorf("image %q without a reference or ID", im.Member)
		}
		refs = append(refs, im.Member)
	}
	for _, p := range m.Programs {
		if p.Program == "" || p.Version == "" || p.Ref == "" || p.ID == "" {
			return fmt.Errorf("program image %q incomplete", p.Member)
		}
		refs = append(refs, p.Member)
	}
	if m.Config != "" {
		refs = append(refs, m.Config)
	}
	for _, r := range refs {
		if !seen[r] || r == ManifestName {
			return fmt.Errorf("it refers to member %q, which it does not list", r)
		}
	}
	return nil
}

// Stager writes members into a directory (next to the bundle being saved), hashing them.
type Stager struct {
	Dir     string
	Members []Member
}

// Add writes member name with fill and records its size and sha256.
func (s *Stager) Add(name string, fill func(w io.Writer) error) (Member, error) {
	if !memberName.MatchString(name) {
		return Member{}, fmt.Errorf("bad member name %q", name)
	}
	f, err := os.Create(filepath.Join(s.Dir, name))
	if err != nil {
		return Member{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	ferr := fill(cw)
	if cerr := f.Close(); ferr == nil {
		ferr = cerr
	}
	if ferr != nil {
		return Member{}, ferr
	}
	m := Member{Name: name, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}
	s.Members = append(s.Members, m)
	return m, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Write writes the bundle to w: m (its Members set from the stager) then each staged member.
func (s *Stager) Write(w io.Writer, m Manifest) error {
	m.Format, m.Version = Format, Version
	m.Members = s.Members
	if m.Images == nil {
		m.Images = []Image{}
	}
	if m.Programs == nil {
		m.Programs = []Program{}
	}
	if err := m.Check(); err != nil {
		return fmt.Errorf("bundle manifest: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(header(ManifestName, int64(len(b)), m.Created)); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	for _, mb := range s.Members {
		if err := copyMember(tw, filepath.Join(s.Dir, mb.Name), mb, m.Created); err != nil {
			return err
		}
	}
	return tw.Close()
}

func header(name string, size int64, t time.Time) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: t, Format: tar.FormatPAX}
}

func copyMember(tw *tar.Writer, path string, mb Member, t time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(header(mb.Name, mb.Size, t)); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("writing %s into the bundle: %w", mb.Name, err)
	}
	if n != mb.Size {
		return fmt.Errorf("writing %s into the bundle: it changed size", mb.Name)
	}
	return nil
}

// Reader reads a bundle file.
type Reader struct {
	File     string
	Manifest Manifest
	Size     int64
}

// Open reads and checks the manifest of the bundle at file.
func Open(file string) (*Reader, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, damaged(file, "not a regular file")
	}
	tr := tar.NewReader(f)
	hdr, err := tr.Next()
	if err != nil {
		return nil, damaged(file, "not a tar file (%v)", err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return nil, damaged(file, "its first member is %q, not %s", hdr.Name, ManifestName)
	}
	if hdr.Size > MaxManifest {
		return nil, damaged(file, "%s is %d bytes, more than %d", ManifestName, hdr.Size, MaxManifest)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, damaged(file, "reading %s: %v", ManifestName, err)
	}
	r := &Reader{File: file, Size: st.Size()}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.Manifest); err != nil {
		return nil, damaged(file, "%s: %v", ManifestName, err)
	}
	if err := r.Manifest.Check(); err != nil {
		return nil, damaged(file, "%s: %v", ManifestName, err)
	}
	return r, nil
}

// Each calls fn for every member in order with its content, hashing it as fn reads; fn must read
// it to its end (Each drains what it leaves). A member whose size or sha256 differs from the
// manifest's, a missing member or an extra one ends Each with a *DamagedError, after fn was
// called for the member (the caller undoes what it did with it).
func (r *Reader) Each(fn func(m Member, content io.Reader) error) error {
	f, err := os.Open(r.File)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	if _, err := tr.Next(); err != nil { // the manifest, read by Open
		return damaged(r.File, "%v", err)
	}
	for _, mb := range r.Manifest.Members {
		hdr, err := tr.Next()
		if err == io.EOF {
			return damaged(r.File, "member %s is missing (a cut-short copy?)", mb.Name)
		}
		if err != nil {
			return damaged(r.File, "before member %s: %v", mb.Name, err)
		}
		if hdr.Name != mb.Name || hdr.Typeflag != tar.TypeReg {
			return damaged(r.File, "found member %q where %s should be", hdr.Name, mb.Name)
		}
		if hdr.Size != mb.Size {
			return damaged(r.File, "member %s is %d bytes, the manifest says %d", mb.Name, hdr.Size, mb.Size)
		}
		h := sha256.New()
		content := io.TeeReader(tr, h)
		if fn != nil {
			if err := fn(mb, content); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, content); err != nil {
			return damaged(r.File, "reading member %s: %v (a cut-short copy?)", mb.Name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != mb.SHA256 {
			return damaged(r.File, "member %s has sha256 %s, the manifest says %s", mb.Name, got, mb.SHA256)
		}
	}
	if hdr, err := tr.Next(); err != io.EOF {
		if err != nil {
			return damaged(r.File, "after the last member: %v", err)
		}
		return damaged(r.File, "it has a member %q its manifest does not list", hdr.Name)
	}
	return nil
}

// Verify reads the whole file and checks every member's size and sha256.
func (r *Reader) Verify() error { return r.Each(nil) }
