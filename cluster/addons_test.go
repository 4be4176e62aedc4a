package cluster

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

func TestAddonCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range catalog() {
		if seen[a.name] {
			t.Errorf("add-on %s twice", a.name)
		}
		seen[a.name] = true
		objs, err := a.objects(&spec.Cluster{})
		if a.description == "" || a.version == "" || err != nil || len(objs) == 0 {
			t.Errorf("add-on %s lacks a description, a version or objects (%v)", a.name, err)
		}
		for _, im := range a.images {
			if !strings.HasPrefix(im.Ref(), "kubeforge.local/") || !strings.HasSuffix(im.Ref(), ":"+im.Version) {
				t.Errorf("add-on %s image %s: want kubeforge.local/...:%s (never pulled)", a.name, im.Ref(), im.Version)
			}
			if !strings.HasSuffix(images.ProgramBinary("/src", im), "/bin/programs/"+im.Program+"-"+im.Version) {
				t.Errorf("add-on %s binary %s", a.name, images.ProgramBinary("/src", im))
			}
		}
	}
	if !slices.IsSorted(AddonNames()) || len(AddonNames()) != len(catalog()) {
		t.Errorf("AddonNames() = %v", AddonNames())
	}
}

// images/images.mk builds the versions the catalog names.
func TestAddonVersionsMatchMakefile(t *testing.T) {
	out, err := exec.Command("make", "-s", "--no-print-directory", "-C", "..", "print-program-versions").CombinedOutput()
	if err != nil {
		t.Fatalf("make print-program-versions: %v\n%s", err, out)
	}
	for _, a := range catalog() {
		for _, im := range a.images {
			if !strings.Contains(string(out), im.Program+" "+im.Version+"\n") {
				t.Errorf("images.mk builds %q; the catalog wants %s %s", out, im.Program, im.Version)
			}
		}
	}
}

func TestValidateAddons(t *testing.T) {
	if err := ValidateAddons([]string{"metrics-server"}); err != nil {
		t.Errorf("metrics-server: %v", err)
	}
	if err := ValidateAddons(nil); err != nil {
		t.Errorf("none: %v", err)
	}
	err := ValidateAddons([]string{"metrics-server", "ingres"}) // a typo of ingress
	if err == nil || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), `"ingres"`) || !strings.Contains(err.Error(), "metrics-server") {
		t.Errorf("unknown add-on: %v (code %d); want a usage error naming it and the known ones", err, kferr.Code(err))
	}
}

func TestMissingAddons(t *testing.T) {
	if got := missing([]string{"a", "b", "a", "c"}, []string{"b"}); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("missing = %v", got)
	}
	if got := missing(nil, []string{"b"}); got != nil {
		t.Errorf("missing(nil) = %v", got)
	}
}
