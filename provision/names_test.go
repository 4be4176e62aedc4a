package provision

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckClusterLabel(t *testing.T) {
	for name, ok := range map[string]bool{
		"kf": true, "kubeforge": true, "a": true, "dev-2": true, strings.Repeat("a", 50): true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, "/": false, "a\x00": false,
		"-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, " a": false, "a\n": false,
		strings.Repeat("a", 51): false, "kf\u00e9": false,
	} {
		if err := CheckClusterLabel(name); (err == nil) != ok {
			t.Errorf("CheckClusterLabel(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestCheckNodeLabel(t *testing.T) {
	for _, tc := range []struct {
		cluster, node string
		ok            bool
	}{
		{"kf", "kf", true},
		{"kf", "kf-m02", true},
		{"kf", "kf-lb", true},
		{"e2e-1", "e2e-1-control-plane", true},
		{"kf", "kf-" + strings.Repeat("a", 60), true},  // 63
		{"kf", "kf-" + strings.Repeat("a", 61), false}, // 64
		{"kf", "", false},
		{"kf", "..", false},
		{"kf", "kf/..", false},
		{"kf", "kf-../x", false},
		{"kf", "kf-m02\x00", false},
		{"kf", "kf-", false},
		{"kf", "kf.m02", false},
		{"kf", "kfm02", false},  // not the cluster's
		{"kf", "other", false},  // not the cluster's
		{"kf-m02", "kf", false}, // another cluster's name
		{"..", "..", false},
		{"", "kf", false},
		{"kf", "KF", false},
	} {
		if err := CheckNodeLabel(tc.cluster, tc.node); (err == nil) != tc.ok {
			t.Errorf("CheckNodeLabel(%q, %q) = %v, want ok %v", tc.cluster, tc.node, err, tc.ok)
		}
	}
}

// FuzzLabelNames checks that no label value that passes the checks can name a path outside its
// directory, or be empty: what Clusters and Nodes return is safe to join to $KUBEFORGE_HOME.
func FuzzLabelNames(f *testing.F) {
	for _, s := range [][2]string{
		{"kf", "kf"}, {"kf", "kf-m02"}, {"kf", "kf-lb"}, {"..", ".."}, {".", "./x"}, {"kf", "kf/../.."},
		{"kf\x00", "kf\x00"}, {"", ""}, {"a-b", "a-b-c"}, {"kf", "kf-\u2215"}, {"kf", "kf-m02/"},
	} {
		f.Add(s[0], s[1])
	}
	unsafe := func(s string) string {
		switch {
		case s == "":
			return "empty"
		case strings.ContainsAny(s, "/\\\x00"):
			return "a separator or NUL"
		case strings.Contains(s, ".."):
			return ".."
		case s == ".":
			return "."
		}
		const home = "/home/u/.kubeforge"
		if p := filepath.Join(home, s); filepath.Dir(p) != home {
			return "a path outside " + home
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, cluster, node string) {
		if CheckClusterLabel(cluster) == nil {
			if why := unsafe(cluster); why != "" {
				t.Fatalf("cluster label %q accepted: %s", cluster, why)
			}
		}
		if CheckNodeLabel(cluster, node) == nil {
			if CheckClusterLabel(cluster) != nil {
				t.Fatalf("node label %q accepted with an invalid cluster %q", node, cluster)
			}
			if why := unsafe(node); why != "" {
				t.Fatalf("node label %q (cluster %q) accepted: %s", node, cluster, why)
			}
			if len(node) > MaxNodeNameLen {
				t.Fatalf("node label %q longer than %d", node, MaxNodeNameLen)
			}
		}
	})
}
