// Package rootfs makes the node's Debian root filesystem with debootstrap, cleans it to keep it
// small, and caches it as a tarball keyed by the suite and the package list, so that a second
// build skips debootstrap.
package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"kubeforge.dev/kubeforge/contract/cniconf"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
)

// Defaults.
const (
	DefaultSuite  = "bookworm"
	DefaultMirror = "http://deb.debian.org/debian"
	// layoutVersion is bumped whenever the cleaning or the tar layout changes, so that a cached
	// tarball made by older code is not reused.
	layoutVersion = "3"
)

// DefaultPackages is what the node needs on top of debootstrap's minbase: the container runtime's
// helpers (runc, CNI plugins), what kube-proxy and the kubelet call (iptables, conntrack, mount,
// socat for port-forward), and a few tools for a person debugging inside a node.
var DefaultPackages = []string{
	"ca-certificates",
	"conntrack",
	"containernetworking-plugins",
	"iproute2",
	"iptables",
	"kmod",
	"less",
	"mount",
	"nano",
	"procps",
	"runc",
	"socat",
	"util-linux",
}

// KeptCNIPlugins are the CNI plugins left in cniconf.BinDir (/usr/lib/cni).
var KeptCNIPlugins = map[string]bool{
	"bandwidth":  true,
	"bridge":     true,
	"host-local": true,
	"loopback":   true,
	"portmap":    true,
	"ptp":        true,
	"tuning":     true,
}

// Options say which rootfs to make and where to cache it.
type Options struct {
	Suite    string   // default DefaultSuite
	Mirror   string   // default DefaultMirror
	Packages []string // default DefaultPackages
	CacheDir string   // default CacheDir()
	Log      *ui.Logger
}

func (o Options) withDefaults() Options {
	if o.Suite == "" {
		o.Suite = DefaultSuite
	}
	if o.Mirror == "" {
		o.Mirror = DefaultMirror
	}
	if len(o.Packages) == 0 {
		o.Packages = DefaultPackages
	}
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	if o.Log == nil {
		o.Log = ui.Discard()
	}
	return o
}

// CacheDir is $KUBEFORGE_CACHE, or ~/.cache/kubeforge.
func CacheDir() string {
	if d := os.Getenv("KUBEFORGE_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "kubeforge")
	}
	return filepath.Join(os.TempDir(), "kubeforge-cache")
}

// Key names a rootfs by what it is made of: "<suite>-<12 hex of sha256(suite, sorted packages)>".
// The mirror is not part of it: any mirror gives the same packages.
func Key(opts Options) string {
	o := opts.withDefaults()
	pkgs := append([]string(nil), o.Packages...)
	sort.Strings(pkgs)
	h := sha256.New()
	fmt.Fprintf(h, "layout=%s\nsuite=%s\n", layoutVersion, o.Suite)
	for _, p := range pkgs {
		fmt.Fprintf(h, "pkg=%s\n", p)
	}
	return o.Suite + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// Path is where the tarball of opts is cached.
func Path(opts Options) string {
	o := opts.withDefaults()
	return filepath.Join(o.CacheDir, "rootfs", Key(o)+".tar")
}

// Ensure returns the path of the cached rootfs tarball, making it first if it is missing.
func Ensure(ctx context.Context, opts Options) (string, error) {
	o := opts.withDefaults()
	path := Path(o)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	step := o.Log.Step(fmt.Sprintf("Making the Debian %s root filesystem (debootstrap, about 2 minutes once)", o.Suite))
	return path, step.Done(build(ctx, o, path))
}

func build(ctx context.Context, o Options, path string) error {
	if os.Geteuid() != 0 {
		return kferr.Environment("run the first image build as root (sudo), or copy a cached rootfs into "+filepath.Dir(path),
			"making the node's root filesystem needs root (debootstrap chroots and creates device files)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return kferr.Environment("install it: apt-get install debootstrap", "debootstrap is not installed")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".debootstrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "root")

	args := []string{"--variant=minbase", "--include=" + strings.Join(o.Packages, ","), o.Suite, dir, o.Mirror}
	if err := runLogged(ctx, o.Log, "debootstrap", args...); err != nil {
		return fmt.Errorf("debootstrap %s: %w", o.Suite, err)
	}
	if err := Clean(dir); err != nil {
		return fmt.Errorf("cleaning the rootfs: %w", err)
	}
	tmp := filepath.Join(work, "rootfs.tar")
	// GNU tar keeps hard links, device files, xattrs (file capabilities) and numeric owners.
	if err := runLogged(ctx, o.Log, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name",
		"-C", dir, "-cf", tmp, "."); err != nil {
		return fmt.Errorf("archiving the rootfs: %w", err)
	}
	return os.Rename(tmp, path)
}

// Clean removes from a debootstrapped tree what a node never uses: apt lists and caches, docs,
// man pages, locales other than C, logs, and device files (the container runtime provides /dev).
func Clean(dir string) error {
	globs := []string{
		"var/lib/apt/lists/*",
		"var/cache/apt/*",
		"var/cache/debconf/*-old",
		"var/cache/ldconfig/*",
		"var/log/*",
		"var/lib/dpkg/*-old",
		"usr/share/doc/*",
		"usr/share/man/*",
		"usr/share/info/*",
		"usr/share/lintian/*",
		"usr/share/linda/*",
		"usr/share/bug/*",
		"usr/share/common-licenses/*",
		"usr/share/locale/*",
		"usr/share/i18n/*",
		"usr/share/nano/*",
		"usr/share/bash-completion/*",
		"usr/share/zsh/*",
		"usr/share/menu/*",
		"usr/lib/locale/*",
		"dev/*",
		"tmp/*",
		"var/tmp/*",
		"root/.bash_history",
		"etc/machine-id",
		"var/lib/dbus/machine-id",
		"etc/hostname",
		// iconv's converters for legacy charsets; UTF-8 needs none of them.
		"usr/lib/*-linux-gnu/gconv/*.so",
	}
	for _, g := range globs {
		matches, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	// Of the CNI plugins, keep those a node's network can use; drop the rest (dhcp alone is 7 MB).
	plugins, err := filepath.Glob(filepath.Join(dir, cniconf.BinDir, "*"))
	if err != nil {
		return err
	}
	for _, p := range plugins {
		if !KeptCNIPlugins[filepath.Base(p)] {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	// Keep the packages' copyright files out but the directory usable; tell dpkg to keep it so.
	nodoc := `# kubeforge: keep the node image small
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
`
	if err := os.MkdirAll(filepath.Join(dir, "etc/dpkg/dpkg.cfg.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/dpkg/dpkg.cfg.d/01-kubeforge-nodoc"), []byte(nodoc), 0o644); err != nil {
		return err
	}
	// The node's own machine-id is made at boot; an empty file keeps tools that read it quiet.
	return os.WriteFile(filepath.Join(dir, "etc/machine-id"), nil, 0o444)
}

// runLogged runs a command; its output is shown when verbose and returned in the error otherwise.
func runLogged(ctx context.Context, l *ui.Logger, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out tailBuffer
	cmd.Stdout = io.MultiWriter(&out, debugWriter{l})
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out.String())
	}
	return nil
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = t.b[len(t.b)-8192:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }

type debugWriter struct{ l *ui.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		if len(line) > 0 {
			d.l.Debugf("%s", line)
		}
	}
	return len(p), nil
}
