package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	a := Key(Options{})
	if !strings.HasPrefix(a, "bookworm-") || len(a) != len("bookworm-")+12 {
		t.Fatalf("key %q", a)
	}
	// Package order and mirror do not matter; the package set and the suite do.
	rev := append([]string(nil), DefaultPackages...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if b := Key(Options{Packages: rev, Mirror: "http://example.invalid/debian"}); b != a {
		t.Errorf("reordered packages or another mirror changed the key: %s, %s", a, b)
	}
	if b := Key(Options{Packages: append(rev, "strace")}); b == a {
		t.Error("another package did not change the key")
	}
	if b := Key(Options{Suite: "trixie"}); b == a || !strings.HasPrefix(b, "trixie-") {
		t.Errorf("suite key %s", b)
	}
	if p := Path(Options{CacheDir: "/c"}); p != "/c/rootfs/"+a+".tar" {
		t.Errorf("path %s", p)
	}
	if strings.Contains(strings.Join(DefaultPackages, " "), "busybox") {
		t.Error("busybox in the node's packages")
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("KUBEFORGE_CACHE", "/somewhere")
	if d := CacheDir(); d != "/somewhere" {
		t.Fatal(d)
	}
	t.Setenv("KUBEFORGE_CACHE", "")
	t.Setenv("HOME", "/home/u")
	if d := CacheDir(); d != "/home/u/.cache/kubeforge" {
		t.Fatal(d)
	}
}

func TestEnsureUsesCache(t *testing.T) {
	opts := Options{CacheDir: t.TempDir()}
	os.MkdirAll(filepath.Dir(Path(opts)), 0o755)
	os.WriteFile(Path(opts), []byte("cached"), 0o644)
	p, err := Ensure(t.Context(), opts)
	if err != nil || p != Path(opts) {
		t.Fatalf("Ensure = %s, %v", p, err)
	}
}

func TestClean(t *testing.T) {
	dir := t.TempDir()
	files := map[string]bool{ // path -> kept
		"usr/share/doc/runc/copyright":              false,
		"usr/share/man/man1/ls.1.gz":                false,
		"usr/share/locale/de/LC_MESSAGES/x.mo":      false,
		"var/lib/apt/lists/deb.debian.org_Release":  false,
		"var/cache/apt/pkgcache.bin":                false,
		"var/log/dpkg.log":                          false,
		"usr/lib/x86_64-linux-gnu/gconv/IBM1047.so": false,
		"usr/lib/cni/dhcp":                          false,
		"usr/lib/cni/bridge":                        true,
		"usr/lib/cni/host-local":                    true,
		"usr/lib/cni/loopback":                      true,
		"usr/lib/cni/portmap":                       true,
		"usr/sbin/iptables":                         true,
		"etc/ssl/certs/ca-certificates.crt":         true,
		"usr/share/ca-certificates/mozilla/x.crt":   true,
	}
	for f := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	if err := Clean(dir); err != nil {
		t.Fatal(err)
	}
	for f, kept := range files {
		_, err := os.Stat(filepath.Join(dir, f))
		if kept && err != nil {
			t.Errorf("%s removed", f)
		}
		if !kept && err == nil {
			t.Errorf("%s kept", f)
		}
	}
	for _, d := range []string{"usr/share/doc", "var/lib/apt/lists", "var/log"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			t.Errorf("directory %s itself removed", d)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/dpkg/dpkg.cfg.d/01-kubeforge-nodoc")); err != nil || !strings.Contains(string(b), "path-exclude /usr/share/doc/*") {
		t.Errorf("dpkg nodoc config: %q, %v", b, err)
	}
}
