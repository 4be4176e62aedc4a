//go:build linux

package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kubeforge.dev/kubeforge/contract"
)

// Sysctl is a kernel parameter and the value the node presents for it.
type Sysctl struct {
	Key   string // dotted, e.g. vm.overcommit_memory
	Value string
}

// DefaultSysctls are the host-wide sysctls the kubelet wants to set. Inside a container they
// belong to the host, so the node shadows them with files holding these values: the kubelet
// finds them already set and never changes the host.
var DefaultSysctls = []Sysctl{
	{"vm.overcommit_memory", "1"},
	{"vm.panic_on_oom", "0"},
	{"kernel.panic", "10"},
	{"kernel.panic_on_oops", "1"},
	{"kernel.keys.root_maxkeys", "1000000"},
	{"kernel.keys.root_maxbytes", "25000000"},
}

// SetupOptions tune Setup; zero values mean the node's defaults.
type SetupOptions struct {
	// Sysctls to shadow (DefaultSysctls when nil).
	Sysctls []Sysctl
	// Logf prints progress and warnings (discarded when nil).
	Logf func(format string, a ...any)
	// VM is set on a VM node: its sysctls are its own, set at boot, not shadowed.
	VM bool
}

// SysctlShadowDir holds the files bind-mounted over /proc/sys entries (on the node's /run tmpfs,
// so each boot starts clean).
const SysctlShadowDir = "/run/kubeforge/sysctl"

const cgroupRoot = "/sys/fs/cgroup"

// Setup prepares a node container for containerd and the kubelet: writable cgroups, rshared
// root, shadowed host-wide sysctls, writable /proc/sys/net, /dev/kmsg and the supervisor's
// directories. It is idempotent: a restarted node runs it again.
func Setup(o SetupOptions) error {
	if o.Sysctls == nil {
		o.Sysctls = DefaultSysctls
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	steps := []struct {
		name string
		fn   func(SetupOptions) error
	}{
		{"directories", setupDirs},
		{"cgroups", setupCgroups},
		{"mount propagation", func(SetupOptions) error { return makeRootShared() }},
		{"sysctls", shadowSysctls},
		{"/proc/sys/net", writableProcSysNet},
		{"/dev/kmsg", ensureKmsg},
	}
	for _, st := range steps {
		if o.VM && st.name == "sysctls" {
			continue
		}
		start := time.Now()
		if err := st.fn(o); err != nil {
			return fmt.Errorf("node setup: %s: %w", st.name, err)
		}
		o.Logf("setup: %s: ok (%s)", st.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func setupDirs(SetupOptions) error {
	for _, d := range []string{contract.LogDir, filepath.Dir(contract.StatusPath), contract.StateDir, SysctlShadowDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// mountFlagsFor maps per-mount options to the flags a remount must repeat to keep them (a
// remount resets the flags it is not given). "ro" is left out: the point is to make it rw.
func mountFlagsFor(opts []string) uintptr {
	var f uintptr
	for _, o := range opts {
		switch o {
		case "nosuid":
			f |= unix.MS_NOSUID
		case "nodev":
			f |= unix.MS_NODEV
		case "noexec":
			f |= unix.MS_NOEXEC
		case "noatime":
			f |= unix.MS_NOATIME
		case "nodiratime":
			f |= unix.MS_NODIRATIME
		case "relatime":
			f |= unix.MS_RELATIME
		case "strictatime":
			f |= unix.MS_STRICTATIME
		}
	}
	return f
}

// CgroupVersion tells whether /sys/fs/cgroup is the cgroup v2 unified hierarchy (2) or a v1
// layout (1, including hybrid hosts).
func CgroupVersion() (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return 2, nil
	}
	return 1, nil
}

func setupCgroups(o SetupOptions) error {
	v, err := CgroupVersion()
	if err != nil {
		return err
	}
	o.Logf("setup: cgroup v%d", v)
	if v == 2 {
		if err := remountCgroup2RW(); err != nil {
			return err
		}
		return cgroup2Init(realFS{}, cgroupRoot, o.Logf)
	}
	return remountCgroup1RW()
}

// remountCgroup1RW bind-remounts every read-only cgroup controller mount read-write (a plain
// "remount,rw" fails with "mount point is busy").
func remountCgroup1RW() error {
	mounts, err := ReadMountInfo()
	if err != nil {
		return err
	}
	for _, m := range CgroupV1RemountTargets(mounts) {
		if err := unix.Mount("", m.MountPoint, "", unix.MS_REMOUNT|unix.MS_BIND|mountFlagsFor(m.Options), ""); err != nil {
			return fmt.Errorf("mount -o remount,bind,rw %s: %w", m.MountPoint, err)
		}
	}
	mounts, err = ReadMountInfo()
	if err != nil {
		return err
	}
	if left := CgroupV1RemountTargets(mounts); len(left) > 0 {
		return fmt.Errorf("%s still read-only after remount", left[0].MountPoint)
	}
	return nil
}

func isReadOnlyFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Flags&unix.ST_RDONLY != 0, nil
}

// remountCgroup2RW makes /sys/fs/cgroup writable: a bind remount changes the per-mount flag
// (where Docker puts "ro"); if the file system itself is read-only, a plain remount follows.
func remountCgroup2RW() error {
	ro, err := isReadOnlyFS(cgroupRoot)
	if err != nil || !ro {
		return err
	}
	mounts, err := ReadMountInfo()
	if err != nil {
		return err
	}
	var keep uintptr
	if m, ok := topMount(mounts, cgroupRoot); ok {
		keep = mountFlagsFor(m.Options)
	}
	bindErr := unix.Mount("", cgroupRoot, "", unix.MS_REMOUNT|unix.MS_BIND|keep, "")
	if ro, err := isReadOnlyFS(cgroupRoot); err == nil && !ro {
		return nil
	}
	plainErr := unix.Mount("", cgroupRoot, "", unix.MS_REMOUNT|keep, "")
	if ro, err := isReadOnlyFS(cgroupRoot); err == nil && !ro {
		return nil
	}
	return fmt.Errorf("cannot make %s writable: mount -o remount,bind,rw: %v; mount -o remount,rw: %v", cgroupRoot, bindErr, plainErr)
}

// cgroupFS is the file access cgroup2Init needs (a fake in tests).
type cgroupFS interface {
	ReadFile(path string) ([]byte, error)
	WriteFile(path string, b []byte) error
	Mkdir(path string) error
}

type realFS struct{}

func (realFS) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }
func (realFS) WriteFile(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
func (realFS) Mkdir(p string) error { return os.Mkdir(p, 0o755) }

// Cgroup2InitGroup is the child cgroup that the processes of the node's root cgroup move to,
// so that controllers can be enabled for the root's children (cgroup v2's "no internal
// processes" rule), as kind's entrypoint does.
const Cgroup2InitGroup = "init"

// setNodeCPUWeight sets the cpu.weight of the cgroup the node's own processes live in
// (root/init, see cgroup2Init). Only on cgroup v2: v1 nodes (Docker on a v1 host) keep theirs.
func setNodeCPUWeight(root string, weight int) error {
	if v, err := CgroupVersion(); err != nil || v != 2 {
		return fmt.Errorf("cpu.weight %d: not a cgroup v2 node", weight)
	}
	p := filepath.Join(root, Cgroup2InitGroup, "cpu.weight")
	if err := os.WriteFile(p, []byte(strconv.Itoa(weight)), 0o644); err != nil {
		return fmt.Errorf("setting %s: %w", p, err)
	}
	return nil
}

// cgroup2Init moves every process of the root cgroup into root/init and enables all available
// controllers in root's cgroup.subtree_control. Controllers that cannot be enabled are reported,
// not fatal: the kubelet says precisely what it misses.
func cgroup2Init(fsys cgroupFS, root string, logf func(string, ...any)) error {
	initDir := filepath.Join(root, Cgroup2InitGroup)
	if err := fsys.Mkdir(initDir); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", initDir, err)
	}
	moveAll := func() (int, error) {
		b, err := fsys.ReadFile(filepath.Join(root, "cgroup.procs"))
		if err != nil {
			return 0, err
		}
		moved := 0
		for _, pid := range strings.Fields(string(b)) {
			if _, err := strconv.Atoi(pid); err != nil {
				continue
			}
			if err := fsys.WriteFile(filepath.Join(initDir, "cgroup.procs"), []byte(pid)); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // exited meanwhile
				}
				if errors.Is(err, unix.EINVAL) {
					continue // a kernel thread (in a VM's real root cgroup, which may keep them)
				}
				return moved, fmt.Errorf("moving pid %s to %s: %w", pid, initDir, err)
			}
			moved++
		}
		return moved, nil
	}
	// Move first, always (as kind does): the root's processes must live in a leaf.
	if _, err := moveAll(); err != nil {
		return err
	}
	b, err := fsys.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		logf("setup: warning: no cgroup controllers available in %s", root)
		return nil
	}
	subtree := filepath.Join(root, "cgroup.subtree_control")
	var lastErr error
	// A process forked (or exec'd in by the container runtime) between the move and the
	// write makes the write fail with EBUSY: move again and retry.
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			if _, err := moveAll(); err != nil {
				return err
			}
		}
		lastErr = fsys.WriteFile(subtree, []byte(SubtreeControlLine(ctrls)))
		if lastErr == nil {
			return nil
		}
		if !errors.Is(lastErr, unix.EBUSY) {
			break
		}
	}
	// Enable what can be enabled, one controller at a time.
	var failed []string
	for _, c := range ctrls {
		if err := fsys.WriteFile(subtree, []byte("+"+c)); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", c, err))
		}
	}
	if len(failed) == len(ctrls) {
		return fmt.Errorf("enabling controllers in %s: %w", subtree, lastErr)
	}
	if len(failed) > 0 {
		logf("setup: warning: could not enable cgroup controllers: %s", strings.Join(failed, ", "))
	}
	return nil
}

// SubtreeControlLine is what enables all the given controllers: "+cpu +memory ...".
func SubtreeControlLine(ctrls []string) string {
	parts := make([]string, len(ctrls))
	for i, c := range ctrls {
		parts[i] = "+" + c
	}
	return strings.Join(parts, " ")
}

// makeRootShared is mount --make-rshared /.
func makeRootShared() error {
	if err := unix.Mount("", "/", "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount --make-rshared /: %w", err)
	}
	return nil
}

// SysctlPath is the /proc/sys file of a dotted sysctl key.
func SysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// shadowSysctls bind-mounts files holding the wanted values over the host-wide sysctls.
func shadowSysctls(o SetupOptions) error {
	mounts, err := ReadMountInfo()
	if err != nil {
		return err
	}
	for _, sc := range o.Sysctls {
		target := SysctlPath(sc.Key)
		if _, err := os.Stat(target); err != nil {
			o.Logf("setup: warning: sysctl %s: %v; not shadowed", sc.Key, err)
			continue
		}
		src := filepath.Join(SysctlShadowDir, sc.Key)
		if err := os.WriteFile(src, []byte(sc.Value+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", src, err)
		}
		if _, mounted := topMount(mounts, target); mounted && readTrim(target) == sc.Value {
			continue // already shadowed in this mount namespace
		}
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s over %s: %w", src, target, err)
		}
		if got := readTrim(target); got != sc.Value {
			return fmt.Errorf("%s reads %q after shadowing, want %q", target, got, sc.Value)
		}
	}
	return nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writableProcSysNet makes /proc/sys/net (the node's own network namespace) writable: a bind
// mount onto itself, then a bind remount without "ro".
func writableProcSysNet(SetupOptions) error {
	const p = "/proc/sys/net"
	if unix.Access(p+"/ipv4/ip_forward", unix.W_OK) == nil {
		return nil
	}
	mounts, err := ReadMountInfo()
	if err != nil {
		return err
	}
	m, ok := topMount(mounts, p)
	if !ok {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("mount --rbind %s %s: %w", p, p, err)
		}
		if mounts, err = ReadMountInfo(); err != nil {
			return err
		}
		m, _ = topMount(mounts, p)
	}
	if err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|mountFlagsFor(m.Options), ""); err != nil {
		return fmt.Errorf("mount -o remount,bind,rw %s: %w", p, err)
	}
	if err := unix.Access(p+"/ipv4/ip_forward", unix.W_OK); err != nil {
		return fmt.Errorf("%s still not writable: %w", p, err)
	}
	return nil
}

// ensureKmsg checks that /dev/kmsg (which the kubelet reads) exists; without the device the node
// falls back to /dev/console as kind does, and says so.
func ensureKmsg(o SetupOptions) error {
	if _, err := os.Stat("/dev/kmsg"); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink("/dev/console", "/dev/kmsg"); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("/dev/kmsg is missing (run the node with --device /dev/kmsg) and linking /dev/console there failed: %w", err)
	}
	o.Logf("setup: warning: /dev/kmsg is missing (run the node with --device /dev/kmsg); linked to /dev/console")
	return nil
}
