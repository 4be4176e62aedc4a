//go:build linux

package supervisor

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kubeforge.dev/kubeforge/contract"
)

// A VM node boots the kernel with VMBootArg and init=kubeforge-init: the supervisor is the VM's
// init system too. Before the node setup it mounts the kernel file systems the initramfs did not,
// unpacks the node's first-boot files from the seed disk, loads kernel modules, sets sysctls,
// configures the network and starts the SSH server (the host's way in).
const VMBootArg = "kubeforge.vm=1"

// SeedDevice is the VM's second disk: a tar archive of files the host wrote for the node (its
// network, SSH keys, and the files a container node gets copied in before it starts).
const SeedDevice = "/dev/vdb"

// SeedDigestPath records the digest of the seed last unpacked: a seed is unpacked once, so a
// restarted VM keeps what changed since.
const SeedDigestPath = "/var/lib/kubeforge/seed.sha256"

// VMKernelModules are loaded at boot: container storage, bridged pod traffic seen by iptables,
// kube-proxy's and the CNI plugins' needs. A missing one is a warning (it may be built in).
var VMKernelModules = []string{"virtio_net", "overlay", "br_netfilter", "bridge", "veth", "nf_conntrack", "nf_nat",
	"nf_tables", "nft_compat", "nft_chain_nat", "xt_conntrack", "xt_MASQUERADE", "xt_comment", "xt_mark",
	"xt_addrtype", "xt_multiport", "xt_nat", "xt_statistic", "ip_tables", "iptable_nat", "iptable_filter", "ip6_tables"}

// vmSysctls are set for real in a VM (a container node shadows the host's instead).
var vmSysctls = []Sysctl{
	{"net.ipv4.ip_forward", "1"},
	{"net.bridge.bridge-nf-call-iptables", "1"},
	{"net.bridge.bridge-nf-call-ip6tables", "1"},
	{"fs.inotify.max_user_watches", "524288"},
	{"fs.inotify.max_user_instances", "512"},
}

// IsVM tells whether this node is a VM booted by kubeforge (VMBootArg on the kernel command line).
func IsVM() bool {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return false
	}
	return hasBootArg(string(b), VMBootArg)
}

func hasBootArg(cmdline, arg string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == arg {
			return true
		}
	}
	return false
}

// bootVM does an init system's part of a VM node's boot. r runs the commands it needs (ip,
// modprobe) without racing the reaper.
func bootVM(r *reaper, logf func(string, ...any)) error {
	steps := []struct {
		name string
		fn   func() error
	}{
		{"file systems", mountVMFilesystems},
		{"seed", func() error { return unpackSeed(SeedDevice, "/", logf) }},
		{"kernel modules", func() error { loadModules(r, logf); return nil }},
		{"sysctls", func() error { return setSysctls(append(vmSysctls, DefaultSysctls...), logf) }},
		{"network", func() error { return configureNetwork(r, contract.VMNetworkPath) }},
	}
	for _, st := range steps {
		start := time.Now()
		if err := st.fn(); err != nil {
			return fmt.Errorf("VM boot: %s: %w", st.name, err)
		}
		logf("boot: %s: ok (%s)", st.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// mountVMFilesystems mounts what the initramfs did not (it moved /dev, /proc, /sys and /run), and
// makes the root file system writable.
func mountVMFilesystems() error {
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT, "")
	mounts := []struct {
		src, target, fstype, data string
		flags                     uintptr
		mode                      os.FileMode
	}{
		{"proc", "/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o555},
		{"sysfs", "/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o555},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755", unix.MS_NOSUID, 0o755},
		{"devpts", "/dev/pts", "devpts", "mode=0620,gid=5,ptmxmode=0666", unix.MS_NOSUID | unix.MS_NOEXEC, 0o755},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, 0o1777},
		{"tmpfs", "/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV, 0o755},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o555},
		{"bpf", "/sys/fs/bpf", "bpf", "mode=0700", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o700},
	}
	current, err := ReadMountInfo()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, m := range mounts {
		if _, ok := topMount(current, m.target); ok {
			continue
		}
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			if m.fstype == "bpf" {
				continue // optional
			}
			return fmt.Errorf("mount -t %s %s: %w", m.fstype, m.target, err)
		}
		if m.target == "/proc" {
			if current, err = ReadMountInfo(); err != nil {
				return err
			}
		}
	}
	if _, err := os.Lstat("/dev/ptmx"); err != nil {
		_ = os.Symlink("pts/ptmx", "/dev/ptmx")
	}
	return nil
}

// unpackSeed unpacks the tar archive on dev into root, unless it was unpacked before (same
// digest). A missing device is not an error: the VM has no seed.
func unpackSeed(dev, root string, logf func(string, ...any)) error {
	f, err := os.Open(dev)
	if errors.Is(err, fs.ErrNotExist) {
		logf("boot: no seed disk %s", dev)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	data, err := readSeed(io.TeeReader(f, h))
	if err != nil {
		return fmt.Errorf("reading %s: %w", dev, err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	digestPath := filepath.Join(root, SeedDigestPath)
	if old, err := os.ReadFile(digestPath); err == nil && strings.TrimSpace(string(old)) == digest {
		logf("boot: seed %s already unpacked", digest[:12])
		return nil
	}
	n, err := extractTar(bytes.NewReader(data), root)
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", dev, err)
	}
	if err := os.MkdirAll(filepath.Dir(digestPath), 0o755); err != nil {
		return err
	}
	logf("boot: seed %s: %d files", digest[:12], n)
	return os.WriteFile(digestPath, []byte(digest+"\n"), 0o644)
}

// readSeed reads the tar archive at the start of r (the disk is padded after it).
func readSeed(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	tr := tar.NewReader(io.TeeReader(r, &buf))
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, err
		}
	}
}

// extractTar writes the directories, files and symlinks of a tar stream under root.
func extractTar(r io.Reader, root string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		name := filepath.Clean("/" + hdr.Name)
		target := filepath.Join(root, name)
		mode := os.FileMode(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return n, err
			}
			_ = os.Chmod(target, mode)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return n, err
			}
			tmp := target + ".kubeforge-seed"
			out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return n, err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(tmp, mode)
			}
			if err == nil {
				err = os.Rename(tmp, target)
			}
			if err != nil {
				os.Remove(tmp)
				return n, err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return n, err
			}
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return n, err
			}
		default:
			continue
		}
		_ = os.Lchown(target, hdr.Uid, hdr.Gid)
		n++
	}
}

func loadModules(r *reaper, logf func(string, ...any)) {
	var missing []string
	for _, m := range VMKernelModules {
		if _, err := r.output("modprobe", m); err != nil {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		logf("boot: warning: kernel modules not loaded (built in or missing): %s", strings.Join(missing, " "))
	}
}

func setSysctls(scs []Sysctl, logf func(string, ...any)) error {
	for _, sc := range scs {
		if err := os.WriteFile(SysctlPath(sc.Key), []byte(sc.Value), 0o644); err != nil {
			logf("boot: warning: sysctl %s=%s: %v", sc.Key, sc.Value, err)
		}
	}
	return nil
}

// configureNetwork brings up loopback and the VM's interface with its static address, default
// route, host name and resolver.
func configureNetwork(r *reaper, path string) error {
	if _, err := r.output("ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing: the VM's seed disk holds no network configuration", path)
	}
	if err != nil {
		return err
	}
	var n contract.VMNetwork
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	if n.Interface == "" {
		n.Interface = "eth0"
	}
	if n.Hostname != "" {
		if err := unix.Sethostname([]byte(n.Hostname)); err != nil {
			return fmt.Errorf("setting the host name: %w", err)
		}
		_ = os.WriteFile("/etc/hostname", []byte(n.Hostname+"\n"), 0o644)
		hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", strings.Split(n.Address, "/")[0], n.Hostname)
		_ = os.WriteFile("/etc/hosts", []byte(hosts), 0o644)
	}
	if _, err := r.output("ip", "addr", "replace", n.Address, "dev", n.Interface); err != nil {
		return err
	}
	if _, err := r.output("ip", "link", "set", n.Interface, "up"); err != nil {
		return err
	}
	if n.Gateway != "" {
		if _, err := r.output("ip", "route", "replace", "default", "via", n.Gateway); err != nil {
			return err
		}
	}
	dns := n.DNS
	if len(dns) == 0 && n.Gateway != "" {
		dns = []string{n.Gateway}
	}
	var resolv strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&resolv, "nameserver %s\n", d)
	}
	_ = os.Remove("/etc/resolv.conf") // may be a dangling symlink
	return os.WriteFile("/etc/resolv.conf", []byte(resolv.String()), 0o644)
}

// output runs a command to completion through the reaper and returns its combined output; a
// failure keeps the command and its output.
func (r *reaper) output(name string, args ...string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		pr.Close()
		pw.Close()
		return "", err
	}
	defer null.Close()
	_, done, err := r.start(path, append([]string{name}, args...), &os.ProcAttr{Files: []*os.File{null, pw, pw},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}})
	pw.Close()
	if err != nil {
		pr.Close()
		return "", err
	}
	out, _ := io.ReadAll(pr)
	pr.Close()
	ex := (<-done).exit
	if ex.Code != 0 {
		return string(out), fmt.Errorf("%s %s: exit %d %s: %s", name, strings.Join(args, " "), ex.Code, ex.Signal, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found", name)
}

// SSHDPath is the VM node's SSH server.
const SSHDPath = "/usr/sbin/sshd"

// runSSHD keeps the SSH server running until ctx ends (restarting it after a second when it
// exits), its output in LogDir/sshd.log.
func runSSHD(ctx context.Context, r *reaper, logDir string, logf func(string, ...any)) {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		logf("sshd: %v", err)
	}
	for ctx.Err() == nil {
		lf, err := os.OpenFile(filepath.Join(logDir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			logf("sshd: %v", err)
			return
		}
		null, _ := os.Open(os.DevNull)
		pid, done, err := r.start(SSHDPath, []string{SSHDPath, "-D", "-e"}, &os.ProcAttr{Files: []*os.File{null, lf, lf},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}})
		lf.Close()
		null.Close()
		if err != nil {
			logf("sshd: %v", err)
		} else {
			logf("sshd: started (pid %d)", pid)
			select {
			case ex := <-done:
				logf("sshd: exited %d %s", ex.exit.Code, ex.exit.Signal)
			case <-ctx.Done():
				r.signal(pid, unix.SIGTERM)
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// powerOff ends a VM node: everything written reaches the disk, then the machine turns off (PID
// 1 must not exit: the kernel would panic).
func powerOff(logf func(string, ...any)) {
	logf("powering off")
	unix.Sync()
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("power off: %v", err)
	}
	select {}
}
