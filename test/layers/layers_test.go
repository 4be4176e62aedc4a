// Package layers holds the test of kubeforge's layering: which packages may import which. The
// picture (docs/architecture.md, "Layers"):
//
//	cmd/kubeforge (CLI) ─► cluster (orchestrator) ─► bootstrap, images ─► provision (seam) ◄─ provision/docker, provision/libvirt
//	cmd/kubeforge-node, cmd/kubeforge-init ─► node/* (runs in a node)
//	both sides ─► contract (what host and node agree on) ─► internal/* (leaf helpers)
//
// A lower layer never imports a higher one, and the two sides of a node meet only in contract.
package layers

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "kubeforge.dev/kubeforge/"

// rule forbids the packages under from (module-relative prefixes) to import any package under
// one of not, directly or, with deps, through others.
type rule struct {
	why  string
	from []string
	not  []string
	deps bool
}

var rules = []rule{
	{why: "drivers sit below everything that uses them",
		from: []string{"provision"}, not: []string{"cluster", "bootstrap", "images", "node", "cmd"}},
	{why: "node-side code never imports host-side code (they meet in contract)",
		from: []string{"node", "cmd/kubeforge-node", "cmd/kubeforge-init"}, not: []string{"cluster", "bootstrap", "images", "provision", "cmd/kubeforge/"}},
	{why: "host-side rendering never links node-side programs",
		from: []string{"bootstrap", "images", "cluster", "provision", "cmd/kubeforge/"}, not: []string{"node"}, deps: true},
	{why: "the contract is a leaf both sides import",
		from: []string{"contract"}, not: []string{"cluster", "bootstrap", "images", "provision", "node", "cmd"}, deps: true},
	{why: "rendering node files needs no machines and no orchestrator",
		from: []string{"bootstrap"}, not: []string{"cluster", "provision", "images"}},
	{why: "images are built and loaded below the orchestrator",
		from: []string{"images"}, not: []string{"cluster", "bootstrap"}},
	{why: "internal packages are leaf helpers",
		from: []string{"internal"}, not: []string{"cluster", "bootstrap", "images", "provision", "node", "contract", "cmd"}},
	{why: "only the CLI (and tests, benchmarks) use the orchestrator",
		from: []string{"bootstrap", "images", "provision", "node", "contract", "internal", "cmd/kubeforge-node", "cmd/kubeforge-init", "cmd/kubeforge-image", "cmd/kubeforge-pause", "cmd/kubeforge-bench"},
		not:  []string{"cluster"}, deps: true},
}

func under(pkg, prefix string) bool {
	return pkg == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(pkg, strings.TrimSuffix(prefix, "/")+"/")
}

func anyUnder(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

// list maps each package of the module to its imports (or all its dependencies, with deps),
// module-relative, the module's own only.
func list(t *testing.T, deps bool) map[string][]string {
	t.Helper()
	field := "Imports"
	if deps {
		field = "Deps"
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .`+field+`}} {{.}}{{end}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		m[pkg] = nil
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				m[pkg] = append(m[pkg], strings.TrimPrefix(imp, module))
			}
		}
	}
	if len(m) < 20 {
		t.Fatalf("go list found only %d packages", len(m))
	}
	return m
}

// watchSources stats every Go file of the module, so that go test's cache of these tests (which
// ask `go list`, a program it does not watch) is invalidated when any of them changes.
func watchSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLayers(t *testing.T) {
	watchSources(t)
	imports, deps := list(t, false), list(t, true)
	for _, r := range rules {
		graph := imports
		if r.deps {
			graph = deps
		}
		matched := 0
		for pkg, imps := range graph {
			if !anyUnder(pkg, r.from) {
				continue
			}
			matched++
			for _, imp := range imps {
				if anyUnder(imp, r.not) {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
		if matched == 0 {
			t.Errorf("rule %q matches no package: the layout changed, update the rule", r.why)
		}
	}
}

// TestInitImportsNoKubernetes: kubeforge-init is every node's PID 1 and must stay small (a
// supervisor that imports Kubernetes packages costs ~85 MiB RSS).
func TestInitImportsNoKubernetes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"cmd/kubeforge-init").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") {
			t.Errorf("kubeforge-init links %s", dep)
		}
	}
}

// TestBinariesUnderCmd: every main package is under cmd/.
func TestBinariesUnderCmd(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(pkg, module)
		if !under(rel, "cmd") {
			t.Errorf("%s is a binary outside cmd/", rel)
		}
	}
}
