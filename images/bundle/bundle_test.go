package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// write makes a bundle of a node image, one workload image, one program and a config.
func write(t *testing.T, dir string) (string, Manifest) {
	t.Helper()
	st := &Stager{Dir: t.TempDir()}
	add := func(name, content string) {
		if _, err := st.Add(name, func(w io.Writer) error { _, err := io.WriteString(w, content); return err }); err != nil {
			t.Fatal(err)
		}
	}
	add("node.tar", strings.Repeat("node", 1000))
	add("image-1.tar", "busybox")
	add("program-registry.tar", "registry")
	add("cluster.yaml", "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\n")
	m := Manifest{
		Created: time.Unix(1700000000, 0).UTC(), Name: "class", KubernetesVersion: "v1.99.0",
		NodeImage: Image{Ref: "kubeforge.local/node:v1.99.0-abc", ID: "sha256:1", Member: "node.tar"},
		Images:    []Image{{Ref: "busybox:e2e", ID: "sha256:2", Member: "image-1.tar"}},
		Programs:  []Program{{Program: "registry", Version: "v3.0.0", Ref: "kubeforge.local/registry:v3.0.0", ID: "sha256:3", Member: "program-registry.tar"}},
		Config:    "cluster.yaml",
	}
	file := filepath.Join(dir, "class.kfb")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Write(f, m); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return file, m
}

func TestRoundTrip(t *testing.T) {
	file, _ := write(t, t.TempDir())
	r, err := Open(file)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest
	if m.Format != Format || m.Version != Version || len(m.Members) != 4 || m.NodeImage.Member != "node.tar" {
		t.Fatalf("manifest %+v", m)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := r.Each(func(mb Member, c io.Reader) error {
		b, err := io.ReadAll(c)
		got[mb.Name] = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got["image-1.tar"] != "busybox" || len(got["node.tar"]) != 4000 || !strings.Contains(got["cluster.yaml"], "kind: Cluster") {
		t.Errorf("members %v", got)
	}
	// A consumer that reads nothing still gets every member checked.
	if err := r.Each(func(Member, io.Reader) error { return nil }); err != nil {
		t.Error(err)
	}
}

// rewrite copies the bundle's tar entries through edit (nil drops an entry).
func rewrite(t *testing.T, file string, edit func(h *tar.Header, data []byte) (*tar.Header, []byte)) string {
	t.Helper()
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	tr, tw := tar.NewReader(in), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		h, data = edit(h, data)
		if h == nil {
			continue
		}
		h.Size = int64(len(data))
		tw.WriteHeader(h)
		tw.Write(data)
	}
	tw.Close()
	bad := filepath.Join(t.TempDir(), "bad.kfb")
	if err := os.WriteFile(bad, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return bad
}

func TestDamagedBundles(t *testing.T) {
	dir := t.TempDir()
	file, _ := write(t, dir)
	whole, _ := os.ReadFile(file)

	notTar := filepath.Join(dir, "notes.txt")
	os.WriteFile(notTar, []byte("hello"), 0o644)
	truncated := filepath.Join(dir, "cut.kfb")
	os.WriteFile(truncated, whole[:len(whole)/2], 0o644)

	flipped := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == "image-1.tar" {
			d = []byte("busyboy")
		}
		return h, d
	})
	missing := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == "cluster.yaml" {
			return nil, nil
		}
		return h, d
	})
	extra := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == "cluster.yaml" {
			h.Name = "cluster.yaml"
		}
		return h, d
	})
	{ // append a member the manifest does not list
		f, _ := os.Open(extra)
		var b bytes.Buffer
		tr, tw := tar.NewReader(f), tar.NewWriter(&b)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			d, _ := io.ReadAll(tr)
			tw.WriteHeader(h)
			tw.Write(d)
		}
		f.Close()
		tw.WriteHeader(&tar.Header{Name: "evil.sh", Mode: 0o755, Size: 2, Typeflag: tar.TypeReg})
		tw.Write([]byte("hi"))
		tw.Close()
		os.WriteFile(extra, b.Bytes(), 0o644)
	}
	newer := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == ManifestName {
			d = bytes.Replace(d, []byte(`"version": 1`), []byte(`"version": 9`), 1)
		}
		return h, d
	})
	badName := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == ManifestName {
			d = bytes.Replace(d, []byte(`"name": "image-1.tar"`), []byte(`"name": "../../etc/passwd"`), 1)
		}
		return h, d
	})
	unlisted := rewrite(t, file, func(h *tar.Header, d []byte) (*tar.Header, []byte) {
		if h.Name == ManifestName {
			d = bytes.Replace(d, []byte(`"member": "image-1.tar"`), []byte(`"member": "image-9.tar"`), 1)
		}
		return h, d
	})

	for _, tc := range []struct {
		name, file, want string
		atOpen           bool
	}{
		{"not a tar", notTar, "not a tar file", true},
		{"newer format", newer, "format version 9", true},
		{"path in a member name", badName, "bad or repeated member name", true},
		{"reference to an unlisted member", unlisted, `member "image-9.tar"`, true},
		{"truncated", truncated, "", false},
		{"altered member", flipped, "member image-1.tar has sha256", false},
		{"missing member", missing, "member cluster.yaml is missing", false},
		{"extra member", extra, `member "evil.sh" its manifest does not list`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(tc.file)
			if err == nil {
				if tc.atOpen {
					t.Fatal("Open accepted it")
				}
				err = r.Verify()
			} else if !tc.atOpen && tc.name != "truncated" {
				t.Fatalf("Open: %v", err)
			}
			var de *DamagedError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DamagedError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckRefusesIncompleteManifests(t *testing.T) {
	ok := Manifest{Format: Format, Version: Version, KubernetesVersion: "v1.99.0",
		NodeImage: Image{Ref: "n", ID: "i", Member: "node.tar"},
		Members:   []Member{{Name: "node.tar", Size: 1, SHA256: strings.Repeat("a", 64)}}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(m *Manifest){
		"other format":   func(m *Manifest) { m.Format = "x" },
		"no version":     func(m *Manifest) { m.KubernetesVersion = "" },
		"no node image":  func(m *Manifest) { m.NodeImage.ID = "" },
		"bad sha256":     func(m *Manifest) { m.Members[0].SHA256 = "zz" },
		"manifest twice": func(m *Manifest) { m.Members[0].Name = ManifestName; m.NodeImage.Member = ManifestName },
		"repeated member": func(m *Manifest) {
			m.Members = append(m.Members, m.Members[0])
		},
	} {
		m := ok
		m.Members = append([]Member(nil), ok.Members...)
		edit(&m)
		if err := m.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
