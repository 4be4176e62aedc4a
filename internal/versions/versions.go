// Package versions is the one table of the Kubernetes versions kubeforge supports and what each
// runs (kubernetes.tsv): the module file its node binary is built with, and its etcd, CoreDNS,
// pause, containerd and crictl versions. The Makefile reads the same file; the CLI, the image
// builder, the tests and the README's check read it here. No other file names a version (a test
// enforces it).
package versions

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"
)

//go:embed kubernetes.tsv
var tableTSV string

// Release is one supported Kubernetes version and what its nodes run.
type Release struct {
	Kubernetes string `json:"kubernetes"` // "v1.N.P"
	// Modfile builds its node binary: "go.mod" (the default release: the host links it too) or
	// a file under versions/ (go build -modfile).
	Modfile    string `json:"modfile"`
	Etcd       string `json:"etcd"`
	CoreDNS    string `json:"coredns"`
	Pause      string `json:"pause"`
	Containerd string `json:"containerd"`
	Crictl     string `json:"crictl"`
}

// Minor is the release's minor version, "1.N".
func (r Release) Minor() string {
	parts := strings.SplitN(strings.TrimPrefix(r.Kubernetes, "v"), ".", 3)
	return parts[0] + "." + parts[1]
}

// IsDefault tells whether r is the default release (built with go.mod, linked by the host).
// ConformanceModfile is the module file upstream's conformance tests of the release are built
// with (hack/conformance.sh): the release's own plus the tests' requirements (ginkgo, gomega...),
// apart so that the node binary's module files stay tidy.
func (r Release) ConformanceModfile() string { return "test/conformance/v" + r.Minor() + ".mod" }

func (r Release) IsDefault() bool { return r.Kubernetes == Default().Kubernetes }

var parsed = sync.OnceValues(func() ([]Release, error) { return parse(tableTSV) })

// parse reads the table: one release a line, tab-separated, newest first; # starts a comment.
func parse(tsv string) ([]Release, error) {
	var out []Release
	for i, line := range strings.Split(tsv, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 7 {
			return nil, fmt.Errorf("kubernetes.tsv:%d: want 7 fields (kubernetes modfile etcd coredns pause containerd crictl), got %d", i+1, len(f))
		}
		r := Release{Kubernetes: f[0], Modfile: f[1], Etcd: f[2], CoreDNS: f[3], Pause: f[4], Containerd: f[5], Crictl: f[6]}
		if !strings.HasPrefix(r.Kubernetes, "v1.") || strings.Count(r.Kubernetes, ".") != 2 {
			return nil, fmt.Errorf("kubernetes.tsv:%d: %q is not a Kubernetes version like v1.N.P", i+1, r.Kubernetes)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kubernetes.tsv: no release")
	}
	return out, nil
}

// All are the supported releases, newest (the default) first.
func All() []Release {
	rs, err := parsed()
	if err != nil {
		panic(err) // the embedded table is checked by the package's tests
	}
	return slices.Clone(rs)
}

// Default is the release a cluster gets unless it asks for another: the newest.
func Default() Release { return All()[0] }

// Names are the supported versions, newest first.
func Names() []string {
	var out []string
	for _, r := range All() {
		out = append(out, r.Kubernetes)
	}
	return out
}

// Resolve finds the release of v: a full version ("v1.N.P", "1.N.P") or a minor ("1.N",
// "v1.N": the newest patch supported of it). Anything else is an error listing the supported
// versions.
func Resolve(v string) (Release, error) {
	want := "v" + strings.TrimPrefix(strings.TrimSpace(v), "v")
	for _, r := range All() {
		if r.Kubernetes == want || "v"+r.Minor() == want {
			return r, nil
		}
	}
	return Release{}, fmt.Errorf("Kubernetes %s is not supported: use one of %s (or a minor such as %s)",
		v, strings.Join(Names(), ", "), Default().Minor())
}
