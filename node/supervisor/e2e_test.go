//go:build e2e && linux

// End-to-end tests: kubeforge-init as PID 1 of a real node container, started with the flags
// that work on this kind of machine (see shared/docs/node-runtime-facts.md), from the Debian
// Debian rootfs the images build uses (images/rootfs, made once and cached).
//
//	go test -tags e2e ./node/supervisor/...
//
// The containers have no network (--network none) and are removed at the end.
package supervisor_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/bootstrap/containerd"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/services"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/node/supervisor"
)

// nodeFlags are the docker run flags of a node (minus the network, which these tests do not
// need).
var nodeFlags = []string{
	"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
	"--security-opt", "seccomp=unconfined",
	"--cgroupns=private",
	"--tmpfs", "/run", "--tmpfs", "/tmp",
	"-v", "/var",
	"--device", "/dev/kmsg",
	"--network", "none",
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s", root)
	}
	return root
}

func run(t *testing.T, timeout time.Duration, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, 3*time.Minute, nil, "docker", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildInit builds a static kubeforge-init.
func buildInit(t *testing.T) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubeforge-init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/kubeforge-init")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kubeforge-init: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// baseImage imports the node rootfs as an image (once per rootfs tarball). The rootfs is the
// one the images build uses, made (debootstrap, once) if the cache does not hold it yet.
func baseImage(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tarball, err := rootfs.Ensure(ctx, rootfs.Options{})
	if err != nil {
		t.Fatalf("node rootfs: %v", err)
	}
	fi, err := os.Stat(tarball)
	if err != nil {
		t.Fatalf("node rootfs: %v", err)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s %d %d", tarball, fi.Size(), fi.ModTime().UnixNano())))
	tag := "kubeforge-e2e-rootfs:" + hex.EncodeToString(h[:])[:12]
	if _, err := run(t, time.Minute, nil, "docker", "image", "inspect", tag); err == nil {
		return tag
	}
	docker(t, "import", "-c", `ENTRYPOINT ["/usr/local/bin/kubeforge-init"]`, tarball, tag)
	return tag
}

type file struct {
	path string
	mode int64
	data []byte
}

func tarOf(t *testing.T, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(f.path, "/")
		for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl) // parents first
	for _, d := range dl {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	return buf.Bytes()
}

type node struct {
	t    *testing.T
	name string
}

// newNode creates (not starts) a node container with files copied in.
func newNode(t *testing.T, image string, files []file) *node {
	t.Helper()
	name := fmt.Sprintf("kubeforge-e2e-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%1e6)
	args := append([]string{"create", "--name", name, "--label", "dev.kubeforge.e2e=1"}, nodeFlags...)
	args = append(args, image)
	docker(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run(t, time.Minute, nil, "docker", "logs", name)
			t.Logf("docker logs %s:\n%s", name, out)
		}
		if os.Getenv("KUBEFORGE_E2E_KEEP") == "" {
			run(t, time.Minute, nil, "docker", "rm", "-f", "-v", name)
		}
	})
	if _, err := run(t, 3*time.Minute, tarOf(t, files), "docker", "cp", "-", name+":/"); err != nil {
		t.Fatal(err)
	}
	return &node{t: t, name: name}
}

func (n *node) exec(script string) (string, error) {
	return run(n.t, time.Minute, nil, "docker", "exec", n.name, "/bin/sh", "-c", script)
}

func (n *node) mustExec(script string) string {
	n.t.Helper()
	out, err := n.exec(script)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

func (n *node) status() (*supervisor.Status, error) {
	out, err := run(n.t, time.Minute, nil, "docker", "exec", n.name, "/usr/local/bin/kubeforge-init", "status", "-json")
	if err != nil {
		return nil, err
	}
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status -json: %v: %s", err, out)
	}
	return &st, nil
}

func (n *node) waitStatus(what string, timeout time.Duration, cond func(*supervisor.Status) bool) *supervisor.Status {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *supervisor.Status
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := n.status()
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("timed out after %s waiting for %s; last status %+v (%v)", timeout, what, last, lastErr)
	return nil
}

func (n *node) logs() string {
	return docker(n.t, "logs", n.name)
}

func allReady(names ...string) func(*supervisor.Status) bool {
	return func(st *supervisor.Status) bool {
		for _, n := range names {
			s := st.Services[n]
			if !s.Ready || (s.State != supervisor.StateRunning && s.State != supervisor.StateDone) {
				return false
			}
		}
		return st.Phase == supervisor.PhaseRunning
	}
}

func servicesJSON(t *testing.T, cfg *services.Config) []byte {
	t.Helper()
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := services.ParseConfig(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func shService(name, script string) services.Service {
	return services.Service{Name: name, Path: "/bin/sh", Args: []string{"-c", script}}
}

func TestE2ENodeLifecycle(t *testing.T) {
	image := baseImage(t)
	initBin := buildInit(t)

	sleeper := shService("sleeper", `echo sleeper up; touch /run/sleeper.ready; exec sleep infinity`)
	sleeper.ReadyPath = "/run/sleeper.ready"
	once := shService("once", `mkdir -p /var/lib/e2e; echo ran >> /var/lib/e2e/runs`)
	once.Oneshot, once.DoneMarker, once.After = true, "/var/lib/kubeforge/e2e-once.done", []string{"sleeper"}
	spawner := shService("spawner", `for i in 1 2 3 4 5; do (sleep 0.2 &); done; exec sleep infinity`)
	spawner.After = []string{"once"}
	stubborn := shService("stubborn", `trap '' TERM; while :; do sleep 1; done`)
	cfg := &services.Config{
		Services:        []services.Service{sleeper, once, spawner, stubborn},
		StopGracePeriod: services.Duration(2 * time.Second),
	}
	n := newNode(t, image, []file{
		{"/usr/local/bin/kubeforge-init", 0o755, initBin},
		{contract.ServicesPath, 0o644, servicesJSON(t, cfg)},
	})
	hostBefore := readHostSysctls(t)

	t0 := time.Now()
	docker(t, "start", n.name)
	st := n.waitStatus("services ready", 60*time.Second, allReady("sleeper", "once", "spawner", "stubborn"))
	t.Logf("all services ready %s after docker start", time.Since(t0).Round(time.Millisecond))
	if st.PID != 1 {
		t.Errorf("supervisor pid %d, want 1", st.PID)
	}

	// Setup results.
	logs := n.logs()
	for _, step := range []string{"directories", "cgroups", "mount propagation", "sysctls", "/proc/sys/net", "/dev/kmsg"} {
		if !strings.Contains(logs, "[kubeforge-init] setup: "+step+": ok") {
			t.Errorf("setup step %q not reported ok:\n%s", step, logs)
		}
	}
	checkCgroupsWritable(t, n)
	for _, sc := range supervisor.DefaultSysctls {
		if got := strings.TrimSpace(n.mustExec("cat " + supervisor.SysctlPath(sc.Key))); got != sc.Value {
			t.Errorf("%s = %q in the node, want %q", sc.Key, got, sc.Value)
		}
	}
	// The kubelet may write them: that lands in the shadow file, never on the host.
	n.mustExec("echo 2 > /proc/sys/vm/overcommit_memory && echo 5 > /proc/sys/kernel/panic")
	if got := strings.TrimSpace(n.mustExec("cat /proc/sys/vm/overcommit_memory")); got != "2" {
		t.Errorf("shadow file not writable: %q", got)
	}
	if after := readHostSysctls(t); after != hostBefore {
		t.Errorf("host sysctls changed from inside the node: %q -> %q", hostBefore, after)
	}
	mi := n.mustExec("cat /proc/self/mountinfo")
	mounts, err := supervisor.ParseMountInfo(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.MountPoint == "/" && !strings.Contains(strings.Join(m.Optional, " "), "shared:") {
			t.Errorf("/ is not shared: %+v", m)
		}
	}
	if got := strings.TrimSpace(n.mustExec("echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet && cat /proc/sys/net/ipv4/conf/all/route_localnet")); got != "1" {
		t.Errorf("route_localnet = %q", got)
	}
	if _, err := n.exec("echo 1 > /proc/sys/kernel/sysrq"); err == nil {
		t.Errorf("/proc/sys outside net should stay read-only")
	}
	n.mustExec("test -c /dev/kmsg && test -d /var/log/kubeforge && grep -q 'sleeper up' /var/log/kubeforge/sleeper.log")
	if !strings.Contains(logs, "[sleeper] sleeper up") {
		t.Errorf("docker logs lack the service's prefixed output")
	}
	// Setup again in the same mount namespace: nothing stacks up.
	countMounts := func() int { return strings.Count(n.mustExec("cat /proc/self/mountinfo"), "\n") }
	before := countMounts()
	n.mustExec("/usr/local/bin/kubeforge-init setup && /usr/local/bin/kubeforge-init setup")
	if after := countMounts(); after != before {
		t.Errorf("re-running setup changed the number of mounts from %d to %d", before, after)
	}
	if got := strings.TrimSpace(n.mustExec("cat /proc/sys/vm/overcommit_memory")); got != "1" {
		t.Errorf("re-running setup should restore the shadowed value, got %q", got)
	}
	table := n.mustExec("/usr/local/bin/kubeforge-init status")
	if !strings.Contains(table, "supervisor: running (pid 1") || !strings.Contains(table, "sleeper") {
		t.Errorf("status table:\n%s", table)
	}

	// A killed service is restarted (after the 1s back-off).
	pid := st.Services["sleeper"].PID
	n.mustExec(fmt.Sprintf("kill -9 %d", pid))
	st = n.waitStatus("sleeper restarted", 30*time.Second, func(st *supervisor.Status) bool {
		s := st.Services["sleeper"]
		return s.Restarts == 1 && s.State == supervisor.StateRunning && s.PID != pid
	})
	if e := st.Services["sleeper"].LastExit; e == nil || e.Signal != "SIGKILL" {
		t.Errorf("lastExit = %+v", e)
	}

	// Orphans (the spawner's background sleeps) are reaped: no zombies.
	time.Sleep(500 * time.Millisecond)
	if z := zombies(t, n); len(z) > 0 {
		t.Errorf("zombies in the node: %v", z)
	}

	// docker stop: SIGTERM to PID 1, services stopped in reverse order, the stubborn one
	// SIGKILLed after the 2s grace period, exit 0, well before Docker's own 10s limit.
	t0 = time.Now()
	docker(t, "stop", n.name)
	took := time.Since(t0)
	logs = n.logs()
	if code := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.ExitCode}}", n.name)); code != "0" {
		t.Errorf("exit code %s after docker stop", code)
	}
	if took < 1500*time.Millisecond || took > 8*time.Second {
		t.Errorf("docker stop took %s; want the 2s grace period of the stubborn service, not Docker's 10s SIGKILL", took)
	}
	t.Logf("docker stop took %s", took.Round(time.Millisecond))
	for _, want := range []string{"service stubborn: still running 2s after SIGTERM; sending SIGKILL", "all services stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if i, j := strings.Index(logs, "service spawner: stopped"), strings.LastIndex(logs, "service sleeper: stopped"); i < 0 || j < 0 || i > j {
		t.Errorf("spawner (depends on once, which depends on sleeper) must stop before sleeper")
	}

	// Start again (a stopped cluster started): setup runs again, the oneshot is skipped.
	t0 = time.Now()
	docker(t, "start", n.name)
	n.waitStatus("services ready after start", 60*time.Second, allReady("sleeper", "once", "spawner", "stubborn"))
	t.Logf("ready again %s after docker start", time.Since(t0).Round(time.Millisecond))
	// And docker restart.
	t0 = time.Now()
	docker(t, "restart", n.name)
	st = n.waitStatus("services ready after restart", 60*time.Second, allReady("sleeper", "once", "spawner", "stubborn"))
	t.Logf("docker restart + ready took %s", time.Since(t0).Round(time.Millisecond))
	logs = n.logs()
	if c := strings.Count(logs, "[kubeforge-init] setup: cgroups: ok"); c != 3 {
		t.Errorf("setup ran %d times over 3 boots", c)
	}
	if c := strings.Count(logs, "service once: already done"); c != 2 {
		t.Errorf("oneshot skipped %d times over 2 reboots", c)
	}
	if runs := strings.TrimSpace(n.mustExec("cat /var/lib/e2e/runs")); runs != "ran" {
		t.Errorf("oneshot ran %q", runs)
	}
	for _, sc := range supervisor.DefaultSysctls {
		if got := strings.TrimSpace(n.mustExec("cat " + supervisor.SysctlPath(sc.Key))); got != sc.Value {
			t.Errorf("after restart %s = %q, want %q", sc.Key, got, sc.Value)
		}
	}
	checkCgroupsWritable(t, n)
	if st.Services["sleeper"].Restarts != 0 {
		t.Errorf("restart counts start over with the node: %+v", st.Services["sleeper"])
	}
}

func readHostSysctls(t *testing.T) string {
	var parts []string
	for _, sc := range supervisor.DefaultSysctls {
		b, err := os.ReadFile(supervisor.SysctlPath(sc.Key))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, sc.Key+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(parts, " ")
}

// checkCgroupsWritable creates and removes a cgroup in every cgroup hierarchy of the node.
func checkCgroupsWritable(t *testing.T, n *node) {
	t.Helper()
	mounts, err := supervisor.ParseMountInfo(strings.NewReader(n.mustExec("cat /proc/self/mountinfo")))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, m := range mounts {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		found++
		if m.ReadOnly() {
			t.Errorf("%s is still read-only", m.MountPoint)
			continue
		}
		d := m.MountPoint + "/kubeforge-e2e"
		if _, err := n.exec(fmt.Sprintf("mkdir %s && rmdir %s", d, d)); err != nil {
			t.Errorf("cannot create a cgroup in %s: %v", m.MountPoint, err)
		}
	}
	if found == 0 {
		t.Error("no cgroup mounts in the node")
	}
}

func zombies(t *testing.T, n *node) []string {
	out := n.mustExec(`for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; echo; done`)
	var z []string
	for _, line := range strings.Split(out, "\n") {
		i := strings.LastIndexByte(line, ')')
		if i > 0 && i+2 < len(line) && line[i+2] == 'Z' {
			z = append(z, line)
		}
	}
	return z
}

// TestE2EContainerd runs containerd under the supervisor with the config bootstrap/containerd
// renders, imports a preloaded image archive, runs a container from it, and checks that a
// docker stop takes the container's processes down too.
func TestE2EContainerd(t *testing.T) {
	root := moduleRoot(t)
	var bins []file
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "crictl", "kubeforge-pause"} {
		data, err := os.ReadFile(filepath.Join(root, "bin", b))
		if err != nil {
			t.Fatalf("containerd, crictl and kubeforge-pause are built into bin/ by the images build (make -f images/images.mk tools): %v", err)
		}
		bins = append(bins, file{"/usr/local/bin/" + b, 0o755, data})
	}
	pause := bins[len(bins)-1].data
	bins = bins[:len(bins)-1]
	image := baseImage(t)
	initBin := buildInit(t)
	conf, err := containerd.ContainerdConfig(containerd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &services.Config{Services: containerd.Services(containerd.Options{})}
	files := append(bins,
		file{"/usr/local/bin/kubeforge-init", 0o755, initBin},
		file{contract.ServicesPath, 0o644, servicesJSON(t, cfg)},
		file{contract.ContainerdConfigPath, 0o644, conf},
		file{contract.ImagesDir + "/e2e.tar", 0o644, testImageArchive(t, "kubeforge.local/e2e:1")},
		file{contract.ImagesDir + "/pause.tar", 0o644, imageArchive(t, containerd.DefaultSandboxImage, []file{{"/pause", 0o755, pause}}, []string{"/pause"})},
		// A node-local bridge network (the node container itself has no network).
		file{"/etc/cni/net.d/10-e2e.conflist", 0o644, []byte(`{"cniVersion": "1.0.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`)},
		file{"/etc/crictl.yaml", 0o644, []byte("runtime-endpoint: unix://" + contract.ContainerdSocket + "\nimage-endpoint: unix://" + contract.ContainerdSocket + "\ntimeout: 30\n")},
		file{"/etc/kubeforge-e2e/pod.json", 0o644, []byte(`{"metadata": {"name": "e2e", "namespace": "default", "uid": "e2e-pod", "attempt": 0},
 "log_directory": "/var/log/pods/e2e", "linux": {}}`)},
		file{"/etc/kubeforge-e2e/ctr.json", 0o644, []byte(`{"metadata": {"name": "sleeper"}, "image": {"image": "kubeforge.local/e2e:1"},
 "command": ["/bin/busybox", "sleep", "100000"], "log_path": "sleeper.log", "linux": {}}`)},
	)
	n := newNode(t, image, files)
	t0 := time.Now()
	docker(t, "start", n.name)
	n.waitStatus("containerd ready, images imported", 90*time.Second, allReady(containerd.ServiceContainerd, containerd.ServiceImportImages, containerd.ServiceImportAddonImages))
	t.Logf("containerd ready and images imported %s after docker start", time.Since(t0).Round(time.Millisecond))

	out := n.mustExec("ctr version")
	if !strings.Contains(out, "Server:") || !strings.Contains(out, "v2.4") {
		t.Errorf("ctr version:\n%s", out)
	}
	// The running containerd's view of our config: the values must have reached the plugins
	// (a misspelled key would leave containerd's default).
	dump := n.mustExec("containerd --config " + contract.ContainerdConfigPath + " config dump")
	for _, want := range []string{
		"restrict_oom_score_adj = true",
		"SystemdCgroup = false",
		"bin_dirs = ['/usr/lib/cni']",
		"conf_dir = '/etc/cni/net.d'",
		"sandbox = 'kubeforge.local/pause:3.10'",
		"discard_unpacked_layers = false",
		"snapshotter = 'overlayfs'",
		"config_path = '/etc/containerd/certs.d'",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("containerd config dump lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("config dump:\n%s", dump)
	}
	imgs := n.mustExec("ctr -n k8s.io images ls -q")
	if !strings.Contains(imgs, "kubeforge.local/e2e:1") {
		t.Fatalf("imported images: %q", imgs)
	}
	// A container from the imported image (overlayfs snapshot on the /var volume, runc v2 shim).
	n.mustExec("ctr -n k8s.io run -d kubeforge.local/e2e:1 e2e-sleeper")
	out = n.mustExec("ctr -n k8s.io tasks ls")
	if !strings.Contains(out, "e2e-sleeper") || !strings.Contains(out, "RUNNING") {
		t.Errorf("tasks:\n%s", out)
	}

	// Through CRI, as the kubelet does: a pod sandbox (the pinned, preloaded pause image: the node
	// has no network to pull from; restrict_oom_score_adj lets runc start it; CNI from
	// /usr/lib/cni) and a container in it.
	if out := n.mustExec("crictl inspecti " + containerd.DefaultSandboxImage); !strings.Contains(out, `"pinned": true`) {
		t.Errorf("sandbox image not pinned:\n%s", out)
	}
	podID := strings.TrimSpace(n.mustExec("crictl runp /etc/kubeforge-e2e/pod.json 2>/dev/null"))
	ctrID := strings.TrimSpace(n.mustExec("crictl create " + podID + " /etc/kubeforge-e2e/ctr.json /etc/kubeforge-e2e/pod.json 2>/dev/null"))
	n.mustExec("crictl start " + ctrID)
	if out := n.mustExec("crictl pods --id " + podID); !strings.Contains(out, "Ready") {
		t.Errorf("pod:\n%s", out)
	}
	if out := n.mustExec("crictl ps --id " + ctrID); !strings.Contains(out, "Running") {
		t.Errorf("container:\n%s", out)
	}
	if out := n.mustExec("crictl inspectp " + podID); !strings.Contains(out, "10.244.7.") {
		t.Errorf("pod has no address from the bridge network:\n%s", out)
	}

	// Restart: containerd comes back with the container's shim still there; import is skipped.
	t0 = time.Now()
	docker(t, "stop", n.name)
	took := time.Since(t0)
	logs := n.logs()
	if code := strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.ExitCode}}", n.name)); code != "0" {
		t.Errorf("exit code %s after docker stop", code)
	}
	if !strings.Contains(logs, "remaining process(es)") {
		t.Errorf("the container's shim and processes should have been killed at the end of shutdown")
	}
	if took > 8*time.Second {
		t.Errorf("docker stop took %s", took)
	}
	t.Logf("docker stop with a running container took %s", took.Round(time.Millisecond))
	docker(t, "start", n.name)
	n.waitStatus("containerd ready after restart", 90*time.Second, allReady(containerd.ServiceContainerd, containerd.ServiceImportImages))
	if c := strings.Count(n.logs(), "service import-images: already done"); c != 1 {
		t.Errorf("import skipped %d times after a restart", c)
	}
	if imgs := n.mustExec("ctr -n k8s.io images ls -q"); !strings.Contains(imgs, "kubeforge.local/e2e:1") {
		t.Errorf("images lost over a restart: %q", imgs)
	}
	n.mustExec("ctr version")
}

// testImageArchive builds a docker-archive image (as docker save writes it) with busybox, whose
// default command sleeps.
func testImageArchive(t *testing.T, ref string) []byte {
	t.Helper()
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		bb, err = os.ReadFile("/bin/busybox")
	}
	if err != nil {
		t.Fatalf("needs busybox-static on the host for the test image: %v", err)
	}
	return imageArchive(t, ref, []file{{"/bin/busybox", 0o755, bb}}, []string{"/bin/busybox", "sleep", "100000"})
}

// imageArchive builds a single-layer docker-archive image.
func imageArchive(t *testing.T, ref string, files []file, cmd []string) []byte {
	t.Helper()
	layer := tarOf(t, files)
	ls := sha256.Sum256(layer)
	diffID := "sha256:" + hex.EncodeToString(ls[:])
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": cmd},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	cs := sha256.Sum256(config)
	configName := hex.EncodeToString(cs[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"manifest.json", manifest}, {configName, config}, {"layer.tar", layer}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	return buf.Bytes()
}
