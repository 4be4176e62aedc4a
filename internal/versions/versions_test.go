package versions

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	all := All()
	if len(all) < 1 || Default() != all[0] {
		t.Fatalf("table: %+v", all)
	}
	seenMinor := map[string]bool{}
	for i, r := range all {
		if seenMinor[r.Minor()] {
			t.Errorf("%s: minor %s twice: one patch per minor", r.Kubernetes, r.Minor())
		}
		seenMinor[r.Minor()] = true
		if i > 0 && !newer(all[i-1].Kubernetes, r.Kubernetes) {
			t.Errorf("%s is not older than %s: newest first", r.Kubernetes, all[i-1].Kubernetes)
		}
		if (i == 0) != (r.Modfile == "go.mod") {
			t.Errorf("%s: modfile %s: the default, and only it, builds with go.mod", r.Kubernetes, r.Modfile)
		}
		// One build of each tool serves every release.
		if r.CoreDNS != all[0].CoreDNS || r.Containerd != all[0].Containerd || r.Crictl != all[0].Crictl || r.Pause != all[0].Pause {
			t.Errorf("%s: tools %s/%s/%s/%s differ from the default's: the Makefile builds them once", r.Kubernetes, r.CoreDNS, r.Containerd, r.Crictl, r.Pause)
		}
	}
}

func newer(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := range pa {
		if len(pa[i]) != len(pb[i]) {
			return len(pa[i]) > len(pb[i])
		}
		if pa[i] != pb[i] {
			return pa[i] > pb[i]
		}
	}
	return false
}

func TestResolve(t *testing.T) {
	d := Default()
	for _, in := range []string{d.Kubernetes, strings.TrimPrefix(d.Kubernetes, "v"), d.Minor(), "v" + d.Minor(), " " + d.Minor() + " "} {
		if r, err := Resolve(in); err != nil || r != d {
			t.Errorf("Resolve(%q) = %v, %v", in, r.Kubernetes, err)
		}
	}
	for _, in := range []string{"", "1", "1.2", "v1.2.3", "latest", d.Minor() + ".99", d.Minor() + ".x"} {
		_, err := Resolve(in)
		if err == nil || !strings.Contains(err.Error(), strings.Join(Names(), ", ")) {
			t.Errorf("Resolve(%q): %v, want an error listing the supported versions", in, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tsv := range []string{"", "# only a comment\n", "v9.9.9 go.mod\n", "9.9.9 go.mod a b c d e\n"} {
		if _, err := parse(tsv); err == nil {
			t.Errorf("parse(%q) accepted", tsv)
		}
	}
}

// root is the module's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestModfiles: each release's module file pins k8s.io/kubernetes (and every staging module) to
// the release, and the etcd server the table names.
func TestModfiles(t *testing.T) {
	for _, r := range All() {
		b, err := os.ReadFile(filepath.Join(root(t), r.Modfile))
		if err != nil {
			t.Errorf("%s: %v", r.Kubernetes, err)
			continue
		}
		mod := string(b)
		staging := "v0." + strings.TrimPrefix(r.Kubernetes, "v1.")
		for _, want := range []string{"k8s.io/kubernetes " + r.Kubernetes, "go.etcd.io/etcd/server/v3 " + r.Etcd, "k8s.io/api => k8s.io/api " + staging} {
			if !strings.Contains(mod, want) {
				t.Errorf("%s: %s does not pin %q", r.Kubernetes, r.Modfile, want)
			}
		}
		if m := regexp.MustCompile(`=> (k8s\.io/\S+) (v0\.\d+\.\d+)`).FindAllStringSubmatch(mod, -1); len(m) == 0 {
			t.Errorf("%s: %s has no staging replaces", r.Kubernetes, r.Modfile)
		} else {
			for _, s := range m {
				if s[2] != staging {
					t.Errorf("%s: %s replaces %s with %s, want %s", r.Kubernetes, r.Modfile, s[1], s[2], staging)
				}
			}
		}
		if r.Modfile != "go.mod" {
			if _, err := os.Stat(filepath.Join(root(t), strings.TrimSuffix(r.Modfile, ".mod")+".sum")); err != nil {
				t.Errorf("%s: no .sum next to %s: %v", r.Kubernetes, r.Modfile, err)
			}
		}
	}
}

// TestConformanceModfiles: each release has the module file its conformance tests build with,
// pinning the same release and staging modules, with the tests' requirements and a .sum.
func TestConformanceModfiles(t *testing.T) {
	for _, r := range All() {
		b, err := os.ReadFile(filepath.Join(root(t), r.ConformanceModfile()))
		if err != nil {
			t.Errorf("%s: %v (make it: cp %s %s, then go get -modfile=%s -t k8s.io/kubernetes/test/e2e@%s)",
				r.Kubernetes, err, r.Modfile, r.ConformanceModfile(), r.ConformanceModfile(), r.Kubernetes)
			continue
		}
		mod := string(b)
		staging := "v0." + strings.TrimPrefix(r.Kubernetes, "v1.")
		for _, want := range []string{"k8s.io/kubernetes " + r.Kubernetes, "k8s.io/api => k8s.io/api " + staging, "github.com/onsi/ginkgo/v2 "} {
			if !strings.Contains(mod, want) {
				t.Errorf("%s: %s does not require %q", r.Kubernetes, r.ConformanceModfile(), want)
			}
		}
		if _, err := os.Stat(filepath.Join(root(t), strings.TrimSuffix(r.ConformanceModfile(), ".mod")+".sum")); err != nil {
			t.Errorf("%s: no .sum next to %s: %v", r.Kubernetes, r.ConformanceModfile(), err)
		}
	}
}

// kubeVersion is a Kubernetes (or a k8s.io staging module's) release number as code would
// write it.
var kubeVersion = regexp.MustCompile(`\bv?1\.3\d\.\d+\b`)

// sourceFiles lists the tree's files, slash-separated and relative to the root: git's list in a
// checkout, else (a source tarball) every file outside bin/ and hidden directories but .ci.
func sourceFiles(t *testing.T) []string {
	if out, err := exec.Command("git", "-C", root(t), "ls-files").Output(); err == nil {
		return strings.Fields(string(out))
	}
	var files []string
	err := filepath.WalkDir(root(t), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root(t), p)
		if d.IsDir() && rel != "." && (rel == "bin" || strings.HasPrefix(d.Name(), ".") && rel != ".ci") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoVersionElsewhere: the table is the only place a supported Kubernetes version is written
// (module files, their sums and the benchmark's history aside); code, scripts and tests read it.
func TestNoVersionElsewhere(t *testing.T) {
	files := sourceFiles(t)
	exempt := regexp.MustCompile(`^(go\.(mod|sum)|(test/conformance|versions)/.*\.(mod|sum)|internal/versions/kubernetes\.tsv|bench/results\.md|docs/.*|.*testdata/.*)$`)
	checked := 0
	for _, f := range files {
		if exempt.MatchString(f) || !(strings.HasSuffix(f, ".go") || strings.HasSuffix(f, ".sh") || strings.HasSuffix(f, ".mk") ||
			strings.HasSuffix(f, ".yaml") || f == "Makefile" || f == ".ci/run") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root(t), f))
		if err != nil {
			continue // deleted in the working tree
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			if m := kubeVersion.FindString(line); m != "" {
				t.Errorf("%s:%d names %s: read it from internal/versions instead", f, i+1, m)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d files checked", checked)
	}
}

// TestREADME: the README lists exactly the supported versions, the default first.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range All() {
		want = append(want, r.Kubernetes)
	}
	line := "Supported Kubernetes versions: " + strings.Join(want, ", ") + " (the default is the first)."
	if !strings.Contains(string(b), line) {
		t.Errorf("README.md lacks the line %q", line)
	}
}
