package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/kferr"
)

// VMPackages are what a VM node needs on top of the container node's packages: a kernel (Debian's
// cloud flavour, made for virtio machines) with its initramfs, and an SSH server, the host's way in.
var VMPackages = []string{"linux-image-cloud-amd64", "initramfs-tools", "openssh-server"}

// vmFormatVersion is bumped whenever the VM image's layout changes.
const vmFormatVersion = "2" // 2: sshd without PAM

// VMRootfsOptions is the rootfs of VM nodes: the container node's packages and VMPackages.
func VMRootfsOptions(o rootfs.Options) rootfs.Options {
	base := o.Packages
	if len(base) == 0 {
		base = rootfs.DefaultPackages
	}
	pkgs := append(slices.Clone(base), VMPackages...)
	sort.Strings(pkgs)
	o.Packages = slices.Compact(pkgs)
	return o
}

// vmPlan is the node image plan on the VM rootfs, and the VM image's key.
func vmPlan(opts BuildOptions) (*plan, string, error) {
	opts.Rootfs = VMRootfsOptions(opts.Rootfs)
	p, err := makePlan(opts)
	if err != nil {
		return nil, "", err
	}
	h := sha256.Sum256([]byte("kubeforge vm image " + vmFormatVersion + "\n" + p.hash))
	key := tagSafe(p.opts.KubernetesVersion) + "-" + hex.EncodeToString(h[:])[:12]
	return p, key, nil
}

// VMImageDir is where the VM image of opts is (or would be) cached.
func VMImageDir(opts BuildOptions) (string, error) {
	p, key, err := vmPlan(opts)
	if err != nil {
		return "", err
	}
	return filepath.Join(cacheRoot(p.opts), "vm", key), nil
}

func cacheRoot(o BuildOptions) string {
	if o.Rootfs.CacheDir != "" {
		return o.Rootfs.CacheDir
	}
	return rootfs.CacheDir()
}

// BuildVM makes the VM node image unless it is cached, and returns it. The disk holds the same
// files as the Docker node image (rootfs, binaries, preloaded images) on the VM rootfs; it needs
// root (the rootfs keeps owners and device files), mkfs.ext4 and qemu-img.
func BuildVM(ctx context.Context, opts BuildOptions) (vmimage.Image, error) {
	if err := ensureBinaries(ctx, opts); err != nil {
		return vmimage.Image{}, err
	}
	p, key, err := vmPlan(opts)
	if err != nil {
		return vmimage.Image{}, err
	}
	o := p.opts
	dir := filepath.Join(cacheRoot(o), "vm", key)
	if im, err := vmimage.Load(dir); err == nil {
		o.Log.Debugf("VM image %s is up to date", dir)
		return im, nil
	}
	for _, tool := range []struct{ cmd, pkg string }{{"mkfs.ext4", "e2fsprogs"}, {"qemu-img", "qemu-utils"}, {"tar", "tar"}} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			return vmimage.Image{}, kferr.Environment("install it: apt-get install -y "+tool.pkg, "building the VM image needs %s, which is not installed", tool.cmd)
		}
	}
	if os.Geteuid() != 0 {
		return vmimage.Image{}, kferr.Environment("run the first VM image build as root (sudo)", "building the VM image needs root: its file system keeps the rootfs's owners and device files")
	}
	rootfsTar, err := rootfs.Ensure(ctx, o.Rootfs)
	if err != nil {
		return vmimage.Image{}, err
	}
	step := o.Log.Step("Making the preloaded pod images")
	if err := step.Done(p.generate()); err != nil {
		return vmimage.Image{}, err
	}
	step = o.Log.Step("Making the VM disk " + key)
	im, err := assembleVM(ctx, p, rootfsTar, dir, key)
	return im, step.Done(err)
}

func assembleVM(ctx context.Context, p *plan, rootfsTar, dir, key string) (vmimage.Image, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return vmimage.Image{}, err
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+key+"-")
	if err != nil {
		return vmimage.Image{}, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return vmimage.Image{}, err
	}
	// The node tar (rootfs + overlay, as the Docker image gets it) unpacked by GNU tar, which keeps
	// owners, device files and file capabilities.
	pr := p.nodeTar(rootfsTar)
	untar := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-x", "-C", root)
	untar.Stdin = pr
	if out, err := untar.CombinedOutput(); err != nil {
		pr.CloseWithError(err)
		return vmimage.Image{}, fmt.Errorf("unpacking the node files: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := vmTweaks(root); err != nil {
		return vmimage.Image{}, err
	}
	// Mount points the initramfs moves its /dev, /proc, /sys and /run to.
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "root/.ssh"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return vmimage.Image{}, err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return vmimage.Image{}, err
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return vmimage.Image{}, fmt.Errorf("the VM rootfs has %d kernels in /boot (want one): %v", len(kernels), kernels)
	}
	release := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	initrd := filepath.Join(root, "boot", "initrd.img-"+release)
	if _, err := os.Stat(initrd); err != nil {
		return vmimage.Image{}, fmt.Errorf("the VM rootfs has no initramfs for kernel %s: %w", release, err)
	}
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return vmimage.Image{}, err
	}
	if err := copyFile(kernels[0], filepath.Join(out, "vmlinuz")); err != nil {
		return vmimage.Image{}, err
	}
	if err := copyFile(initrd, filepath.Join(out, "initrd.img")); err != nil {
		return vmimage.Image{}, err
	}
	raw := filepath.Join(work, "disk.raw")
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-L", "kubeforge-root", "-E", "root_owner=0:0", "-d", root, raw, fmt.Sprintf("%dM", vmimage.DiskSize>>20)); err != nil {
		return vmimage.Image{}, err
	}
	if err := run(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, filepath.Join(out, "disk.qcow2")); err != nil {
		return vmimage.Image{}, err
	}
	im := vmimage.Image{Key: key, KernelVersion: release, Info: p.info}
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return vmimage.Image{}, err
	}
	if err := os.WriteFile(filepath.Join(out, vmimage.File), append(b, '\n'), 0o644); err != nil {
		return vmimage.Image{}, err
	}
	if err := os.Rename(out, dir); err != nil {
		return vmimage.Image{}, fmt.Errorf("caching the VM image: %w", err)
	}
	return vmimage.Load(dir)
}

// sshdConfig is the VM node's SSH server: keys only, the host key given to the node at its first
// boot (the one the host pins), no DNS lookups of clients, and no PAM: its session modules
// cost seconds per connection on an emulated CPU, and a key-only root login needs none of them.
const sshdConfig = `# kubeforge VM node
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintLastLog no
PrintMotd no
UseDNS no
`

// vmTweaks adjusts the unpacked VM root: the SSH host keys that the package made at build time
// would be the same in every node, so they go (each cluster's nodes get theirs at first boot).
func vmTweaks(root string) error {
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/ssh/sshd_config.d"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/ssh/sshd_config.d/kubeforge.conf"), []byte(sshdConfig), 0o644)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
