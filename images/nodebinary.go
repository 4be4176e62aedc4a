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

// EnsureNodeBinary builds the node binary of a supported version other than the default when it
// is missing: `make node KUBE_VERSION=<version>` in the source tree the artifacts directory is
// (the Makefile picks the release's module file). It takes minutes: the progress line says how
// long, honestly.
func EnsureNodeBinary(ctx context.Context, artifacts, version string, log *ui.Logger) error {
	bin := NodeBinary(artifacts, version)
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	rel, err := versions.Resolve(version)
	if err != nil {
		return kferr.Usage("%v", err)
	}
	if _, err := os.Stat(filepath.Join(artifacts, "Makefile")); err != nil {
		return kferr.Environment(fmt.Sprintf("build it in the kubeforge source tree: make node KUBE_VERSION=%s", rel.Kubernetes),
			"the node binary for Kubernetes %s is not built (%s) and %s is not a kubeforge source tree", rel.Kubernetes, bin, artifacts)
	}
	if _, err := exec.LookPath("make"); err != nil {
		return kferr.Environment("install make and Go 1.26+ (it builds the node binary from the source tree)", "the node binary for Kubernetes %s is not built and there is no make", rel.Kubernetes)
	}
	log = orDiscard(log)
	step := log.Step(fmt.Sprintf("Building the node binary for Kubernetes %s (once: about 5 minutes on 2 cores, less with a warm Go build cache)", rel.Kubernetes))
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", artifacts, "node", "KUBE_VERSION="+rel.Kubernetes)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 3000 {
			tail = "..." + tail[len(tail)-3000:]
		}
		return step.Done(kferr.Environment(fmt.Sprintf("run `make node KUBE_VERSION=%s` in %s to see the whole build", rel.Kubernetes, artifacts),
			"building the node binary for Kubernetes %s: %v\n%s", rel.Kubernetes, err, tail))
	}
	return step.Done(nil)
}

func orDiscard(l *ui.Logger) *ui.Logger {
	if l == nil {
		return ui.Discard()
	}
	return l
}
