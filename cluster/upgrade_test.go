package cluster

import (
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/versions"
)

// TestCheckUpgrade: one minor at a time, never back, never to the same version.
func TestCheckUpgrade(t *testing.T) {
	all := versions.All()
	if len(all) < 2 {
		t.Fatal("the versions table has one release: kubeforge supports the last three minors")
	}
	newest, prev := all[0], all[1]
	if err := checkUpgrade("c", prev.Kubernetes, newest); err != nil {
		t.Errorf("%s -> %s: %v", prev.Kubernetes, newest.Kubernetes, err)
	}
	for _, bad := range []struct{ from, to, want string }{
		{newest.Kubernetes, newest.Kubernetes, "already"},
		{newest.Kubernetes, prev.Kubernetes, "not supported"},
	} {
		r, _ := versions.Resolve(bad.to)
		if err := checkUpgrade("c", bad.from, r); err == nil || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s -> %s: %v, want a usage error with %q", bad.from, bad.to, err, bad.want)
		}
	}
	if len(all) >= 3 {
		oldest := all[len(all)-1]
		err := checkUpgrade("c", oldest.Kubernetes, newest)
		if err == nil || !strings.Contains(err.Error(), "one minor at a time") || !strings.Contains(kferr.Hint(err)+err.Error(), all[len(all)-2].Kubernetes) {
			t.Errorf("%s -> %s: %v, want one minor at a time via %s", oldest.Kubernetes, newest.Kubernetes, err, all[len(all)-2].Kubernetes)
		}
	}
}
