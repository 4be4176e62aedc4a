package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/internal/buildinfo"
	"kubeforge.dev/kubeforge/internal/versions"
)

// stamp sets what the Makefile's -ldflags -X would, for the test's duration.
func stamp(t *testing.T, version, commit, date string) {
	v, c, d := buildinfo.Version, buildinfo.Commit, buildinfo.Date
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit, buildinfo.Date = v, c, d })
	buildinfo.Version, buildinfo.Commit, buildinfo.Date = version, commit, date
}

func runVersion(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"version"}, args...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestVersionText(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	stamp(t, "v0.4.0-3-g0123456-dirty", commit, "2026-01-02T03:04:05Z")
	code, out, errb := runVersion(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	want := "Version:    v0.4.0-3-g0123456-dirty\n" +
		"Commit:     " + commit + "\n" +
		"Built:      2026-01-02T03:04:05Z\n" +
		"Kubernetes: " + versions.Default().Kubernetes + "\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("got:\n%s\nwant it to start with:\n%s", out, want)
	}
	// Then every supported version, the default marked.
	for i, r := range versions.All() {
		line := "  " + r.Kubernetes
		if i == 0 {
			line += " (default)"
		}
		if !strings.Contains(out, "\n"+line+" ") {
			t.Errorf("no line for %s in:\n%s", r.Kubernetes, out)
		}
	}
}

// A binary `make` did not build says so instead of printing empty fields.
func TestVersionUnstamped(t *testing.T) {
	stamp(t, "", "", "")
	code, out, errb := runVersion(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !strings.HasPrefix(out, "Version:    devel\n") || !strings.Contains(out, "Built:      unknown\n") ||
		!strings.Contains(out, "Kubernetes: "+versions.Default().Kubernetes+"\n") {
		t.Errorf("unexpected output:\n%s", out)
	}
}

func TestVersionJSON(t *testing.T) {
	stamp(t, "v0.4.0", "0123456789abcdef0123456789abcdef01234567", "2026-01-02T03:04:05Z")
	code, out, errb := runVersion(t, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var got map[string]string
	var releases struct {
		KubernetesVersions []struct {
			Kubernetes string
			Default    bool `json:"default"`
		} `json:"kubernetesVersions"`
	}
	if err := json.Unmarshal([]byte(out), &releases); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(releases.KubernetesVersions) != len(versions.All()) || !releases.KubernetesVersions[0].Default ||
		releases.KubernetesVersions[0].Kubernetes != versions.Default().Kubernetes {
		t.Errorf("kubernetesVersions: %+v", releases.KubernetesVersions)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	delete(raw, "kubernetesVersions")
	got = map[string]string{}
	for k, v := range raw {
		got[k], _ = v.(string)
	}
	want := map[string]string{
		"version":           "v0.4.0",
		"commit":            "0123456789abcdef0123456789abcdef01234567",
		"buildDate":         "2026-01-02T03:04:05Z",
		"kubernetesVersion": versions.Default().Kubernetes,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	if code, _, errb := runVersion(t, "-o", "yaml"); code != 2 || !strings.Contains(errb, "text or json") {
		t.Errorf("-o yaml: exit %d, want 2 with a usage error:\n%s", code, errb)
	}
	if code, _, errb := runVersion(t, "extra"); code != 2 || !strings.Contains(errb, "takes no arguments") {
		t.Errorf("an argument: exit %d, want 2:\n%s", code, errb)
	}
}
