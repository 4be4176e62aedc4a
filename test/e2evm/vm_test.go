//go:build e2e_vm

// Package e2evm is the VM driver's tier (`make e2e-vm`): real libvirt, real qemu VMs (software
// emulation, --accel tcg, so it runs on hosts without usable KVM), the kubeforge CLI
// (bin/kubeforge) and client-go. hack/ensure-libvirt.sh installs and starts libvirt; the host's
// Docker (hack/ensure-docker.sh) is used only as the source of `kubeforge image load`.
//
// The cluster is made through the remote-hypervisor path: an SSH server the test starts on
// 127.0.0.1 (its own host key and client key) in front of this machine's libvirt, as a team would
// point kubeforge at a bigger host. The test reaches only what it made: that SSH server, and the
// VM on the cluster's own libvirt network.
package e2evm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/test/kfcli"
	"kubeforge.dev/kubeforge/test/testimage"
)

const cluster = "kfvm"

type env struct {
	*kfcli.CLI
	t *testing.T
}

func newEnv(t *testing.T) *env {
	c, err := kfcli.New(t.TempDir(), "make e2e-vm")
	if err != nil {
		t.Fatal(err)
	}
	return &env{CLI: c, t: t}
}

type result = kfcli.Result

// run runs kubeforge without Docker: VM clusters need none, and a socket nobody listens on keeps
// this machine's containers out of reach (list and delete --all see the test's cluster only).
func (e *env) run(ctx context.Context, args ...string) result {
	e.t.Helper()
	return e.exec(ctx, []string{e.noDocker()}, args...)
}

// noDocker is the DOCKER_HOST of run.
func (e *env) noDocker() string {
	return "DOCKER_HOST=unix://" + filepath.Join(filepath.Dir(e.Home), "no-docker.sock")
}

// runWithDocker runs kubeforge with this machine's Docker, for `image load` (images come from
// the host's Docker).
func (e *env) runWithDocker(ctx context.Context, args ...string) result {
	e.t.Helper()
	return e.exec(ctx, nil, args...)
}

func (e *env) exec(ctx context.Context, extraEnv []string, args ...string) result {
	e.t.Helper()
	r, err := e.Run(ctx, extraEnv, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) ok(ctx context.Context, args ...string) result {
	e.t.Helper()
	r := e.run(ctx, args...)
	if r.Code != 0 {
		e.t.Fatalf("kubeforge %s failed: %s", strings.Join(args, " "), r)
	}
	return r
}

// virsh asks this machine's libvirt (the same one the SSH server leads to).
func virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %v: %v: %s", args, err, out)
	}
	return string(out)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// leftovers lists the domains, networks and node volumes of the cluster that libvirt still has.
func leftovers(t *testing.T) []string {
	var left []string
	for _, d := range strings.Fields(virsh(t, "list", "--all", "--name")) {
		if d == cluster || strings.HasPrefix(d, cluster+"-") {
			left = append(left, "domain "+d)
		}
	}
	for _, n := range strings.Fields(virsh(t, "net-list", "--all", "--name")) {
		if n == "kubeforge-"+cluster {
			left = append(left, "network "+n)
		}
	}
	if out, err := exec.Command("virsh", "-c", "qemu:///system", "vol-list", "kubeforge").CombinedOutput(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && (strings.HasPrefix(f[0], cluster+".") || strings.HasPrefix(f[0], cluster+"-")) {
				left = append(left, "volume "+f[0])
			}
		}
	}
	return left
}

// sshServer starts an OpenSSH server on 127.0.0.1 that lets the test's key in as root, and returns
// the libvirt URI that goes through it.
func sshServer(t *testing.T) string {
	dir := t.TempDir()
	writeKey := func(name string) ssh.Signer {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	host := writeKey("host_key")
	client := writeKey("client_key")
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	kh := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(host.PublicKey()))
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null",
		"-o", "ListenAddress=127.0.0.1", "-o", fmt.Sprintf("Port=%d", port),
		"-o", "HostKey="+filepath.Join(dir, "host_key"),
		"-o", "AuthorizedKeysFile="+filepath.Join(dir, "authorized_keys"),
		"-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no",
		"-o", "StrictModes=no", "-o", "PidFile=none", "-o", "AllowStreamLocalForwarding=yes")
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on 127.0.0.1:%d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("qemu+libssh://root@127.0.0.1:%d/system?keyfile=%s&known_hosts=%s",
		port, filepath.Join(dir, "client_key"), filepath.Join(dir, "known_hosts"))
}

func TestVMCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	e := newEnv(t)
	uri := sshServer(t)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer dcancel()
		e.run(dctx, "delete", "--name", cluster)
	})

	// A run that was killed (a CI job cancelled, a session ended) leaves its VMs in libvirt with no
	// record anywhere: `delete --name` must find and remove them, as a user would run it.
	if left := leftovers(t); len(left) > 0 {
		t.Logf("an interrupted earlier run left %v: deleting it", left)
		e.ok(ctx, "delete", "--name", cluster)
		if left := leftovers(t); len(left) > 0 {
			t.Fatalf("delete --name %s of an unrecorded VM cluster left %v behind", cluster, left)
		}
	}

	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			args []string
			code int
			want string
		}{
			{[]string{"--accel", "fast"}, 2, "not one of kvm"},
			{[]string{"--libvirt-uri", "xen:///system"}, 2, "qemu driver"},
			{[]string{"--accel", "tcg", "--port", "8080:30080"}, 2, "--port is not supported"},
			// A remote hypervisor that does not answer: a closed port on loopback.
			{[]string{"--accel", "tcg", "--libvirt-uri", "qemu+ssh://root@127.0.0.1:1/system"}, 3, "cannot reach 127.0.0.1:1"},
		}
		for _, c := range cases {
			args := append([]string{"start", "--name", cluster, "--driver", "kvm"}, c.args...)
			r := e.run(ctx, args...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.want) || !strings.Contains(r.Stderr, "Fix:") && c.code == 3 {
				t.Errorf("kubeforge %s: want exit %d and %q:\n%s", strings.Join(args, " "), c.code, c.want, r)
			}
		}
		if left := leftovers(t); len(left) > 0 {
			t.Errorf("failed starts left %v behind", left)
		}
	})

	start := time.Now()
	r := e.ok(ctx, "start", "--name", cluster, "--driver", "kvm", "--accel", "tcg", "--libvirt-uri", uri, "--wait", "25m")
	t.Logf("start took %s:\n%s%s", time.Since(start).Round(time.Second), r.Stdout, r.Stderr)
	if !strings.Contains(r.Stderr, "software emulation") {
		t.Errorf("start --accel tcg printed no warning that emulation is slow:\n%s", r.Stderr)
	}

	var st struct {
		Driver    string `json:"driver"`
		State     string `json:"state"`
		APIServer string `json:"apiServer"`
		Nodes     []struct {
			Name, IP, State string
		} `json:"nodes"`
	}
	// Emulated CPUs have busy moments in which /readyz answers late: status may read Degraded
	// for a moment, never for long.
	err := wait.PollUntilContextTimeout(ctx, 5*time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
		if err := json.Unmarshal([]byte(e.ok(ctx, "status", "--name", cluster, "-o", "json").Stdout), &st); err != nil {
			return false, err
		}
		return st.State == "Running", nil
	})
	if err != nil {
		t.Errorf("status did not read Running within 2 minutes: %v", err)
	}
	if st.Driver != "kvm" || st.State != "Running" || len(st.Nodes) != 1 || st.APIServer != "https://"+st.Nodes[0].IP+":6443" {
		t.Fatalf("status: %+v", st)
	}

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: e.Kubeconfig}, &clientcmd.ConfigOverrides{CurrentContext: cluster}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("node and control plane", func(t *testing.T) {
		n, err := cs.CoreV1().Nodes().Get(ctx, cluster, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !nodeReady(n) {
			t.Errorf("node %s is not Ready: %+v", n.Name, n.Status.Conditions)
		}
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-"} {
			found := false
			for _, p := range pods.Items {
				if p.Name == want+cluster && p.Status.Phase == corev1.PodRunning {
					found = true
				}
			}
			if !found {
				t.Errorf("no running %s%s in kube-system", want, cluster)
			}
		}
	})

	t.Run("a pod runs, with a preloaded and a loaded image", func(t *testing.T) {
		info := struct {
			Images map[string]string `json:"images"`
		}{}
		if err := json.Unmarshal([]byte(e.ok(ctx, "ssh", "--name", cluster, "--", "cat", "/etc/kubeforge/image-info.json").Stdout), &info); err != nil {
			t.Fatal(err)
		}
		// `image load` copies an image from the host's Docker into the VM over SSH.
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if err := testimage.BuildBusybox(ctx, cli); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if r := e.runWithDocker(ctx, "image", "load", "--name", cluster, testimage.Busybox); r.Code != 0 {
			t.Fatalf("image load: %s", r)
		}
		t.Logf("image load into the VM took %s", time.Since(begin).Round(100*time.Millisecond))
		if r := e.runWithDocker(ctx, "image", "load", "--name", cluster, testimage.Busybox); r.Code != 0 || !strings.Contains(r.Stderr, "already on every node") {
			t.Errorf("a second image load of the same image: %s", r)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "vm-pod"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "pause", Image: info.Images["pause"], ImagePullPolicy: corev1.PullNever},
				{Name: "busybox", Image: testimage.Busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}},
			}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "vm-pod", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
		})
		if err != nil {
			p, _ := cs.CoreV1().Pods("default").Get(ctx, "vm-pod", metav1.GetOptions{})
			t.Fatalf("pod not running: %v: %+v", err, p.Status)
		}
		out := e.ok(ctx, "ssh", "--name", cluster, "--", "crictl", "ps", "--name", "busybox", "-o", "json").Stdout
		if !strings.Contains(out, "vm-pod") {
			t.Errorf("crictl in the VM does not show the pod's busybox container:\n%s", out)
		}
		// The VM is a cgroup v2 node (the host here is v1): the kubelet runs on it and enforces
		// the container's memory limit through the v2 interface.
		if fs := strings.TrimSpace(e.ok(ctx, "ssh", "--name", cluster, "--", "stat", "-fc", "%T", "/sys/fs/cgroup").Stdout); fs != "cgroup2fs" {
			t.Errorf("the VM's /sys/fs/cgroup is %q, want cgroup2fs (cgroup v2)", fs)
		}
		if max := strings.TrimSpace(e.ok(ctx, "kubectl", "--name", cluster, "--", "exec", "vm-pod", "-c", "busybox", "--", "cat", "/sys/fs/cgroup/memory.max").Stdout); max != "67108864" {
			t.Errorf("the busybox container's cgroup v2 memory.max is %q, want 67108864 (its 64Mi limit)", max)
		}
	})

	// LoadBalancer Services get the node's address on the cluster's libvirt network; the same
	// Service answers again after stop/start (below), then stops answering when deleted.
	var lb *vmLB
	t.Run("a LoadBalancer Service answers at the node's address", func(t *testing.T) {
		lb = newVMLoadBalancer(ctx, t, e, cs, st.Nodes[0].IP)
	})

	t.Run("ssh reaches a VM of its own", func(t *testing.T) {
		// Each `kubeforge ssh` is a new process, so a new SSH handshake with the emulated node:
		// the time it took is logged (a handshake with a busy node once took over 10 s).
		timed := func(args ...string) result {
			begin := time.Now()
			r := e.run(ctx, append([]string{"ssh", "--name", cluster, "--"}, args...)...)
			t.Logf("kubeforge ssh -- %s: exit %d in %s", strings.Join(args, " "), r.Code, time.Since(begin).Round(100*time.Millisecond))
			return r
		}
		r := timed("cat", "/proc/cmdline")
		if r.Code != 0 || !strings.Contains(r.Stdout, "kubeforge.vm=1") {
			t.Errorf("/proc/cmdline in the node: %s", r)
		}
		// Its own kernel, with cgroup v2 whatever the host has.
		r = timed("cat", "/sys/fs/cgroup/cgroup.controllers")
		if r.Code != 0 || !strings.Contains(r.Stdout, "memory") {
			t.Errorf("the VM has no cgroup v2 memory controller: %s", r)
		}
		r = timed("sh", "-c", "exit 7")
		if r.Code != 7 {
			t.Errorf("ssh -- sh -c 'exit 7': %s", r)
		}
	})

	t.Run("list shows the VM cluster (no Docker needed)", func(t *testing.T) {
		var items []struct {
			Name, Driver, State string
			Nodes               int
		}
		if err := json.Unmarshal([]byte(e.ok(ctx, "list", "-o", "json").Stdout), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Name != cluster || items[0].Driver != "kvm" || items[0].State != "Running" || items[0].Nodes != 1 {
			t.Errorf("list -o json: %+v", items)
		}
	})

	t.Run("stop and start keep the cluster's objects", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vm-survivor"}, Data: map[string]string{"k": "v"}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.ok(ctx, "stop", "--name", cluster)
		if st := strings.TrimSpace(virsh(t, "domstate", cluster)); st != "shut off" {
			t.Errorf("domain %s after stop: %q", cluster, st)
		}
		begin := time.Now()
		r := e.ok(ctx, "start", "--name", cluster)
		t.Logf("start of the stopped cluster took %s", time.Since(begin).Round(time.Second))
		if !strings.Contains(r.Stdout, "running again") {
			t.Errorf("start of the stopped cluster: %s", r)
		}
		if got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, cm.Name, metav1.GetOptions{}); err != nil || got.Data["k"] != "v" {
			t.Errorf("ConfigMap after stop/start: %v %v", got, err)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, cluster, metav1.GetOptions{})
		if err != nil || !nodeReady(n) {
			t.Errorf("node %s after stop/start: %v", cluster, err)
		}
		// The node kept its own disk: the pod created before the stop is still known to crictl.
		if out := e.ok(ctx, "ssh", "--name", cluster, "--", "crictl", "pods", "--name", "vm-pod", "-q").Stdout; strings.TrimSpace(out) == "" {
			t.Errorf("crictl pods --name vm-pod after stop/start: nothing")
		}
		if lb != nil {
			lb.answer(ctx, t, "after stop/start")
		}
	})

	t.Run("a deleted LoadBalancer Service stops answering", func(t *testing.T) {
		if lb == nil {
			t.Fatal("no LoadBalancer Service was made (see the failure above)")
		}
		lb.remove(ctx, t)
	})

	t.Run("delete --all leaves nothing", func(t *testing.T) {
		// Docker is unreachable for this test's kubeforge (DOCKER_HOST): --all deletes the VM
		// cluster through its own driver, and only it.
		if r := e.ok(ctx, "delete", "--all"); !strings.Contains(r.Stderr, cluster) {
			t.Errorf("delete --all did not name %s: %s", cluster, r)
		}
		if left := leftovers(t); len(left) > 0 {
			t.Errorf("delete left %v behind", left)
		}
		if r := e.ok(ctx, "list", "-o", "json"); strings.TrimSpace(r.Stdout) != "[]" {
			t.Errorf("list after delete --all: %s", r.Stdout)
		}
	})

	t.Run("image prune removes old uploaded images, keeps the current one", func(t *testing.T) {
		// An image of another build in the pool (what an older kubeforge uploaded).
		const old = "kubeforge-node-v0.0.0-000000000000"
		for _, ext := range []string{".qcow2", ".complete"} {
			virsh(t, "vol-create-as", "kubeforge", old+ext, "1M")
			t.Cleanup(func() {
				exec.Command("virsh", "-c", "qemu:///system", "vol-delete", "--pool", "kubeforge", old+ext).Run()
			})
		}
		current := "kubeforge-node-" + filepath.Base(strings.TrimSpace(e.ok(ctx, "image", "build", "--kind", "vm").Stdout))
		// A cache of this test's own: the machine's cached VM images are not the test's to remove.
		r := e.exec(ctx, []string{e.noDocker(), "KUBEFORGE_CACHE=" + t.TempDir()}, "image", "prune", "--libvirt-uri", uri, "-o", "json")
		if r.Code != 0 {
			t.Fatalf("image prune: %s", r)
		}
		var res struct{ VMVolumes []string }
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			t.Fatal(err)
		}
		// Removed: the old image (and any other build's this machine's pool still had); never
		// the current one's volumes.
		for _, v := range []string{old + ".complete", old + ".qcow2"} {
			if !slices.Contains(res.VMVolumes, v) {
				t.Errorf("image prune removed %v from the pool, not %s", res.VMVolumes, v)
			}
		}
		for _, v := range res.VMVolumes {
			if strings.HasPrefix(v, current+".") || !strings.HasPrefix(v, "kubeforge-node-") {
				t.Errorf("image prune removed %s", v)
			}
		}
		vols := virsh(t, "vol-list", "kubeforge")
		if strings.Contains(vols, old) {
			t.Errorf("%s is still in the pool:\n%s", old, vols)
		}
		// The current build's image (what this test's cluster was made from) stays.
		for _, ext := range []string{".qcow2", ".vmlinuz", ".initrd", ".complete"} {
			if !strings.Contains(vols, current+ext) {
				t.Errorf("%s left the pool:\n%s", current+ext, vols)
			}
		}
	})
}
