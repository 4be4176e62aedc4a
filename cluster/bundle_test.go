package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/bundle"
	"kubeforge.dev/kubeforge/internal/config"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/versions"
)

func TestBundleName(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/class.kfb":           "class",
		"Workshop 2026.tar":        "workshop-2026",
		"../..":                    "bundle",
		"x/..hidden":               "hidden",
		strings.Repeat("a", 60):    strings.Repeat("a", 40),
		"k8s_intro-day1.bundle.gz": "k8s-intro-day1",
	} {
		if got := bundleName(in); got != want {
			t.Errorf("bundleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPinConfig(t *testing.T) {
	m := bundle.Manifest{Name: "class", KubernetesVersion: versions.Default().Kubernetes,
		NodeImage: bundle.Image{Ref: "kubeforge.local/node:x-123", ID: "sha256:1", Member: "node.tar"}}
	src := "# the trainer's cluster\napiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nname: class\nkubernetesVersion: \"1.36\"\naddons: [metrics-server]  # kubectl top\nnodes:\n  - role: control-plane\n  - role: worker\n"
	for name, in := range map[string]string{"the bundle's config": src, "no config": ""} {
		out, cname, err := bundleConfig("class.kfb", []byte(in), m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f, err := config.Parse(out, "cluster.yaml")
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		s, err := f.ToSpec()
		if err != nil {
			t.Fatal(err)
		}
		if s.Image != m.NodeImage.Ref || s.KubernetesVersion != m.KubernetesVersion {
			t.Errorf("%s: image %q version %q\n%s", name, s.Image, s.KubernetesVersion, out)
		}
		if in != "" {
			if cname != "class" || len(s.Nodes) != 2 || len(s.Addons) != 1 || !strings.Contains(string(out), "kubectl top") {
				t.Errorf("the config's settings or comments were lost:\n%s", out)
			}
		} else if cname != "kubeforge" {
			t.Errorf("cluster name %q", cname)
		}
	}
	if _, _, err := bundleConfig("class.kfb", []byte("- a list"), m); kferr.Code(err) != kferr.ExitUsage {
		t.Errorf("a list as config: %v", err)
	}
}

func TestProgramImageFromBundle(t *testing.T) {
	t.Setenv("KUBEFORGE_CACHE", t.TempDir())
	t.Setenv(ArtifactsEnv, "")
	im := registryImage()
	p, err := New(Options{Home: t.TempDir(), Artifacts: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// No binary, no Makefile, no bundle: the build is asked for, and fails naming the fix.
	if _, _, err := p.programImage(context.Background(), im); err == nil || !strings.Contains(kferr.Hint(err), "make") {
		t.Fatalf("got %v (hint %q)", err, kferr.Hint(err))
	}
	remove, err := images.SaveBundledProgram(im.Program, im.Version, "sha256:abc", strings.NewReader("archive"))
	if err != nil {
		t.Fatal(err)
	}
	archive, id, err := p.programImage(context.Background(), im)
	if err != nil || id != "sha256:abc" || filepath.Base(archive) != im.Program+"-"+im.Version+"-bundled.tar" {
		t.Fatalf("got %s %s %v", archive, id, err)
	}
	remove()
	if _, err := os.Stat(archive); !os.IsNotExist(err) {
		t.Errorf("remove left %s", archive)
	}
}
