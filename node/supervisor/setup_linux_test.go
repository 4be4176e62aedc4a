//go:build linux

package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// From a node container on a cgroup v1 host, started with the documented flags.
const dockerV1MountInfo = `73 48 0:39 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/a:/b,upperdir=/c,workdir=/d
74 73 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
77 73 0:45 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
78 77 0:46 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
79 78 0:28 / /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
82 78 0:31 / /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
86 78 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids
87 78 0:36 / /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime - cgroup systemd rw,name=systemd
88 78 0:37 / /sys/fs/cgroup/unified ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
90 73 254:0 /var/lib/docker/volumes/x/_data /var rw,relatime master:1 - ext4 /dev/vda rw,discard
52 74 0:42 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
54 74 0:43 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
99 73 0:50 / /mnt/with\040space rw - tmpfs tmpfs rw
`

func TestParseMountInfo(t *testing.T) {
	ms, err := ParseMountInfo(strings.NewReader(dockerV1MountInfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 13 {
		t.Fatalf("parsed %d mounts", len(ms))
	}
	root := ms[0]
	if root.MountPoint != "/" || root.FSType != "overlay" || !reflect.DeepEqual(root.Optional, []string{"master:2"}) || root.ReadOnly() {
		t.Errorf("root = %+v", root)
	}
	if m, ok := topMount(ms, "/proc/sys"); !ok || !m.ReadOnly() || m.Root != "/sys" {
		t.Errorf("/proc/sys = %+v %v", m, ok)
	}
	if m, ok := topMount(ms, "/mnt/with space"); !ok || m.Source != "tmpfs" {
		t.Errorf("escaped mount point not unescaped: %+v", ms[len(ms)-1])
	}
	var targets []string
	for _, m := range CgroupV1RemountTargets(ms) {
		targets = append(targets, m.MountPoint)
	}
	want := []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}
	if !reflect.DeepEqual(targets, want) {
		t.Errorf("remount targets %v, want %v (rw pids and the tmpfs itself excluded)", targets, want)
	}
	if _, err := ParseMountInfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("malformed line accepted")
	}
}

func TestMountFlagsFor(t *testing.T) {
	got := mountFlagsFor([]string{"ro", "nosuid", "nodev", "noexec", "relatime"})
	want := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME)
	if got != want {
		t.Errorf("flags %#x, want %#x", got, want)
	}
	if mountFlagsFor([]string{"ro"})&unix.MS_RDONLY != 0 {
		t.Error("ro must not be kept")
	}
}

func TestSysctlPath(t *testing.T) {
	if got := SysctlPath("kernel.keys.root_maxbytes"); got != "/proc/sys/kernel/keys/root_maxbytes" {
		t.Error(got)
	}
	keys := map[string]string{}
	for _, s := range DefaultSysctls {
		keys[s.Key] = s.Value
	}
	want := map[string]string{"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
		"kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("DefaultSysctls = %v", keys)
	}
}

// fakeCgroupFS records writes; a cgroup.procs write moves a pid like the kernel does.
type fakeCgroupFS struct {
	files  map[string]string
	writes []string
	// fail returns an error for a write, by path and content.
	fail func(path, content string) error
}

func (f *fakeCgroupFS) ReadFile(p string) ([]byte, error) {
	c, ok := f.files[p]
	if !ok {
		return nil, os.ErrNotExist
	}
	return []byte(c), nil
}

func (f *fakeCgroupFS) WriteFile(p string, b []byte) error {
	f.writes = append(f.writes, filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p)+"<-"+string(b))
	if f.fail != nil {
		if err := f.fail(p, string(b)); err != nil {
			return err
		}
	}
	if filepath.Base(p) == "cgroup.procs" {
		root := filepath.Dir(filepath.Dir(p))
		var left []string
		for _, pid := range strings.Fields(f.files[filepath.Join(root, "cgroup.procs")]) {
			if pid != string(b) {
				left = append(left, pid)
			}
		}
		f.files[filepath.Join(root, "cgroup.procs")] = strings.Join(left, "\n")
		f.files[p] += string(b) + "\n"
		return nil
	}
	f.files[p] = string(b)
	return nil
}

func (f *fakeCgroupFS) Mkdir(p string) error {
	if _, ok := f.files[p]; ok {
		return os.ErrExist
	}
	f.files[p] = "<dir>"
	return nil
}

func newFakeCgroup() *fakeCgroupFS {
	return &fakeCgroupFS{files: map[string]string{
		"/cg/cgroup.procs":       "1\n23\n",
		"/cg/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
	}}
}

func TestCgroup2Init(t *testing.T) {
	f := newFakeCgroup()
	var logs []string
	logf := func(format string, a ...any) { logs = append(logs, fmt.Sprintf(format, a...)) }
	if err := cgroup2Init(f, "/cg", logf); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"init/cgroup.procs<-1",
		"init/cgroup.procs<-23",
		"cg/cgroup.subtree_control<-+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc",
	}
	if !reflect.DeepEqual(f.writes, want) {
		t.Errorf("writes:\n%q\nwant:\n%q", f.writes, want)
	}
	if len(logs) != 0 {
		t.Errorf("unexpected warnings: %v", logs)
	}
	// Again (the same cgroup namespace, e.g. setup re-run): init exists, nothing left to move.
	f.writes = nil
	if err := cgroup2Init(f, "/cg", logf); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.writes, want[2:]) {
		t.Errorf("second run writes %q", f.writes)
	}
}

func TestCgroup2InitRetriesWhenBusy(t *testing.T) {
	f := newFakeCgroup()
	busy := 2
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "subtree_control") && busy > 0 {
			busy--
			f.files["/cg/cgroup.procs"] = "77\n" // a process forked meanwhile
			return unix.EBUSY
		}
		return nil
	}
	if err := cgroup2Init(f, "/cg", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.files["/cg/init/cgroup.procs"], "77") {
		t.Errorf("the late process was not moved: %q", f.files["/cg/init/cgroup.procs"])
	}
}

func TestCgroup2InitPartialControllers(t *testing.T) {
	f := newFakeCgroup()
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "subtree_control") && (strings.Contains(c, "rdma") || strings.Contains(c, "misc")) {
			return unix.EINVAL
		}
		return nil
	}
	var logs []string
	if err := cgroup2Init(f, "/cg", func(format string, a ...any) { logs = append(logs, fmt.Sprintf(format, a...)) }); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "rdma") || !strings.Contains(logs[0], "misc") || strings.Contains(logs[0], "memory") {
		t.Errorf("warnings: %v", logs)
	}
	// Nothing can be enabled: that is an error that names the file.
	f = newFakeCgroup()
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "subtree_control") {
			return unix.EACCES
		}
		return nil
	}
	err := cgroup2Init(f, "/cg", func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "cgroup.subtree_control") || !errors.Is(err, unix.EACCES) {
		t.Errorf("err = %v", err)
	}
	// A process that cannot be moved is an error too (it would block subtree_control).
	f = newFakeCgroup()
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "init/cgroup.procs") && c == "23" {
			return unix.EPERM
		}
		return nil
	}
	if err := cgroup2Init(f, "/cg", func(string, ...any) {}); err == nil || !strings.Contains(err.Error(), "moving pid 23") {
		t.Errorf("err = %v", err)
	}
	// A kernel thread (a VM's real root cgroup) cannot move: skipped.
	f = newFakeCgroup()
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "init/cgroup.procs") && c == "23" {
			return unix.EINVAL
		}
		return nil
	}
	if err := cgroup2Init(f, "/cg", func(string, ...any) {}); err != nil {
		t.Errorf("EINVAL: %v", err)
	}
	// A process that exited meanwhile is fine.
	f = newFakeCgroup()
	f.fail = func(p, c string) error {
		if strings.HasSuffix(p, "init/cgroup.procs") && c == "23" {
			return unix.ESRCH
		}
		return nil
	}
	if err := cgroup2Init(f, "/cg", func(string, ...any) {}); err != nil {
		t.Errorf("ESRCH: %v", err)
	}
}

func TestParseProcStatAndDescendants(t *testing.T) {
	p, ok := parseProcStat("1234 (my (odd) cmd) S 77 1234 1234 0 -1 4194560 ...")
	if !ok || p.pid != 1234 || p.ppid != 77 || p.state != 'S' {
		t.Errorf("parsed %+v %v", p, ok)
	}
	if _, ok := parseProcStat("garbage"); ok {
		t.Error("garbage parsed")
	}
	procs := []procEntry{{10, 1, 'S'}, {11, 10, 'S'}, {12, 11, 'Z'}, {13, 12, 'S'}, {20, 1, 'S'}, {30, 2, 'S'}}
	if got := descendantsOf(procs, 10); !reflect.DeepEqual(got, []int{11, 13}) {
		t.Errorf("descendants of 10 = %v (zombies excluded, their children included)", got)
	}
	if got := descendantsOf(procs, 1); !reflect.DeepEqual(got, []int{10, 11, 13, 20}) {
		t.Errorf("descendants of 1 = %v", got)
	}
}

func TestPumpLinesAndRotation(t *testing.T) {
	dir := t.TempDir()
	lf, err := openLogFile(filepath.Join(dir, "svc.log"), 40)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	con := &console{w: &out}
	in := "first line\nsecond line\n" + strings.Repeat("x", 70*1024) + "\nno newline at end"
	pumpLines(strings.NewReader(in), lf, con, "[svc] ")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != "[svc] first line" || lines[1] != "[svc] second line" || lines[len(lines)-1] != "[svc] no newline at end" {
		t.Errorf("console lines: %q ... %q", lines[:2], lines[len(lines)-1])
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "[svc] ") {
			t.Errorf("unprefixed console line %.40q", l)
		}
	}
	cur, _ := os.ReadFile(filepath.Join(dir, "svc.log"))
	old, _ := os.ReadFile(filepath.Join(dir, "svc.log.1"))
	if string(cur) != "no newline at end" {
		t.Errorf("current log = %.60q", cur)
	}
	if len(old) == 0 {
		t.Error("no rotated log")
	}
}

func TestStatusFormat(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	started := t0.Add(-90 * time.Second)
	st := &Status{Phase: PhaseRunning, PID: 1, StartedAt: t0.Add(-2 * time.Minute), Order: []string{"containerd", "kubelet"},
		Services: map[string]ServiceStatus{
			"containerd": {State: StateRunning, PID: 42, Ready: true, Restarts: 2, StartedAt: &started,
				LastExit: &Exit{Code: -1, Signal: "SIGKILL", At: t0.Add(-95 * time.Second)}},
			"kubelet": {State: StateWaiting},
		}}
	p := filepath.Join(t.TempDir(), "run", "status.json")
	if err := WriteStatus(p, st); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStatus(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Services["containerd"].LastExit, st.Services["containerd"].LastExit) || back.Services["containerd"].PID != 42 {
		t.Errorf("round trip: %+v", back.Services["containerd"])
	}
	var b bytes.Buffer
	if err := FormatStatus(&b, back, t0); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"supervisor: running (pid 1, up 2m0s)", "containerd  running  42", "1m30s", "killed by SIGKILL 09:58:25", "kubelet     waiting  -"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if !(&Exit{Code: 0}).Success() || (&Exit{Code: 1}).Success() || (&Exit{Code: -1, Signal: "SIGTERM"}).Success() {
		t.Error("Exit.Success")
	}
}
