package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/internal/versions"
)

// NodeBinary is where the node binary of Kubernetes version lives under artifacts: bin/ for the
// default release (what `make` builds), bin/k8s/<version>/ for the others (`make node
// KUBE_VERSION=...`, built on first use by EnsureNodeBinary).
func NodeBinary(artifacts, version string) string {
	if version == "" || version == versions.Default().Kubernetes {
		return filepath.Join(artifacts, "bin", "kubeforge-node")
	}
	return filepath.Join(artifacts, "bin", "k8s", version, "kubeforge-node")
}

// Kubectl is where the kubectl of Kubernetes version lives under artifacts (built by `make kubectl
// KUBE_VERSION=...`): for clusters out of the version skew of the kubectl the host CLI links.
func Kubectl(artifacts, version string) string {
	return filepath.Join(artifacts, "bin", "k8s", version, "kubectl")
}

// EnsureNodeBinary builds the node binary of a supported version other than the default when it
// is missing: `make node KUBE_VERSION=<version>` in the source tree the artifacts directory is
// (the Makefile picks the release's module file). It takes minutes: the progress line says how
// long, honestly.
func EnsureNodeBinary(ctx context.Context, artifacts, version string, log *ui.Logger) error {
	return ensureBuilt(ctx, artifacts, version, NodeBinary(artifacts, version), "node", "the node binary", "about 5 minutes on 2 cores, less with a warm Go build cache", log)
}

// EnsureKubectl builds the kubectl of a supported version when it is missing (`make kubectl
// KUBE_VERSION=<version>`).
func EnsureKubectl(ctx context.Context, artifacts, version string, log *ui.Logger) error {
	return ensureBuilt(ctx, artifacts, version, Kubectl(artifacts, version), "kubectl", "kubectl", "about a minute once its node binary is built, else about 4", log)
}

// ensureBuilt runs `make <target> KUBE_VERSION=<version>` in artifacts unless bin exists.
func ensureBuilt(ctx context.Context, artifacts, version, bin, target, what, estimate string, log *ui.Logger) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	rel, err := versions.Resolve(version)
	if err != nil {
		return kferr.Usage("%v", err)
	}
	return runMake(ctx, artifacts, []string{target, "KUBE_VERSION=" + rel.Kubernetes}, what+" for Kubernetes "+rel.Kubernetes, estimate, log)
}

// runMake runs `make args...` in the kubeforge source tree artifacts, to build what (a missing
// binary), with a progress line saying how long it takes (estimate).
func runMake(ctx context.Context, artifacts string, args []string, what, estimate string, log *ui.Logger) error {
	cmdline := "make " + strings.Join(args, " ")
	if _, err := os.Stat(filepath.Join(artifacts, "Makefile")); err != nil {
		return kferr.Environment(fmt.Sprintf("build it in the kubeforge source tree: %s", cmdline),
			"%s is not built and %s is not a kubeforge source tree", what, artifacts)
	}
	if _, err := exec.LookPath("make"); err != nil {
		return kferr.Environment("install make and Go 1.26+ (they build it from the source tree)", "%s is not built and there is no make", what)
	}
	log = orDiscard(log)
	step := log.Step(fmt.Sprintf("Building %s (once: %s)", what, estimate))
	cmd := exec.CommandContext(ctx, "make", append([]string{"--no-print-directory", "-C", artifacts}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 3000 {
			tail = "..." + tail[len(tail)-3000:]
		}
		return step.Done(kferr.Environment(fmt.Sprintf("run `%s` in %s to see the whole build", cmdline, artifacts),
			"building %s: %v\n%s", what, err, tail))
	}
	return step.Done(nil)
}

func orDiscard(l *ui.Logger) *ui.Logger {
	if l == nil {
		return ui.Discard()
	}
	return l
}
