//go:build e2e

package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/internal/versions"
	"kubeforge.dev/kubeforge/provision"
)

// These tests need root, Docker, debootstrap (or a cached rootfs) and the tools built by
// `make tools` (they run it when a tool is missing). kubeforge-node and kubeforge-init are taken
// from bin/ when they are there, else stand-ins are used and the image is removed afterwards.

var (
	e2eOnce sync.Once
	e2eRef  string
	e2eErr  error
	e2eFake bool
	e2eCli  *client.Client
	e2eArt  string
)

func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func dockerClient(t *testing.T) *client.Client {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// e2eImage builds the node image once for all tests of the run.
func e2eImage(t *testing.T) (string, *client.Client) {
	t.Helper()
	e2eOnce.Do(func() {
		root := repoRoot(t)
		bin := filepath.Join(root, "bin")
		for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "crictl", "coredns", "kubeforge-pause"} {
			if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
				cmd := exec.Command("make", "-f", "images/images.mk", "tools")
				cmd.Dir = root
				if out, err := cmd.CombinedOutput(); err != nil {
					e2eErr = fmt.Errorf("make tools: %v\n%s", err, out)
					return
				}
				break
			}
		}
		// An artifacts directory of links to the real binaries, with stand-ins for those missing.
		// Not t.TempDir: it outlives the first test; TestMain removes it.
		if e2eArt, e2eErr = os.MkdirTemp("", "kubeforge-e2e-artifacts-"); e2eErr != nil {
			return
		}
		os.MkdirAll(filepath.Join(e2eArt, "bin"), 0o755)
		entries, _ := os.ReadDir(bin)
		for _, e := range entries {
			os.Symlink(filepath.Join(bin, e.Name()), filepath.Join(e2eArt, "bin", e.Name()))
		}
		for _, b := range []string{"kubeforge-node", "kubeforge-init"} {
			if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
				e2eFake = true
				os.WriteFile(filepath.Join(e2eArt, "bin", b), []byte("#!/bin/sh\necho stand-in for "+b+"\n"), 0o755)
			}
		}
		e2eCli = dockerClient(t)
		start := time.Now()
		e2eRef, e2eErr = Build(context.Background(), BuildOptions{ArtifactsDir: e2eArt, Client: e2eCli, Log: ui.New(os.Stderr, true)})
		t.Logf("Build took %s (stand-in node binaries: %v)", time.Since(start).Round(time.Millisecond), e2eFake)
	})
	if e2eErr != nil {
		t.Fatal(e2eErr)
	}
	return e2eRef, e2eCli
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eArt != "" {
		os.RemoveAll(e2eArt)
	}
	if e2eRef != "" && e2eFake && os.Getenv("KUBEFORGE_E2E_KEEP") == "" {
		exec.Command("docker", "rmi", e2eRef).Run()
	}
	os.Exit(code)
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestE2EBuildNodeImage(t *testing.T) {
	ref, cli := e2eImage(t)
	ctx := t.Context()
	if ok, err := Exists(ctx, cli, ref); err != nil || !ok {
		t.Fatalf("Exists(%s) = %v, %v", ref, ok, err)
	}
	want, err := Ref(BuildOptions{ArtifactsDir: e2eArt})
	if err != nil || want != ref {
		t.Fatalf("Ref = %s, %v; Build gave %s", want, err, ref)
	}
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if ep := insp.Config.Entrypoint; len(ep) != 1 || ep[0] != "/usr/local/bin/kubeforge-init" {
		t.Errorf("entrypoint %q", ep)
	}
	if insp.Config.Labels[LabelKubernetesVersion] == "" || insp.Config.Labels[LabelInputs] == "" {
		t.Errorf("labels %v", insp.Config.Labels)
	}
	if len(insp.RootFS.Layers) != 1 {
		t.Errorf("%d layers, want 1", len(insp.RootFS.Layers))
	}
	t.Logf("node image %s: %d bytes (%.0f MB), stand-in node binaries: %v", ref, insp.Size, float64(insp.Size)/1e6, e2eFake)
	if insp.Size > 450e6 {
		t.Errorf("node image is %.0f MB, more than 450 MB", float64(insp.Size)/1e6)
	}

	// A second build is a no-op.
	start := time.Now()
	again, err := Build(ctx, BuildOptions{ArtifactsDir: e2eArt, Client: cli})
	if err != nil || again != ref {
		t.Fatalf("second Build = %s, %v", again, err)
	}
	t.Logf("second Build (up to date) took %s", time.Since(start).Round(time.Millisecond))

	// What is inside.
	script := `set -e
for b in kubeforge-node kubeforge-init containerd containerd-shim-runc-v2 ctr crictl; do test -x /usr/local/bin/$b; done
test ! -e /usr/local/bin/coredns
containerd --version
ctr --version
crictl --version
runc --version | head -1
iptables --version
test -x /usr/lib/cni/bridge -a -x /usr/lib/cni/host-local -a -x /usr/lib/cni/loopback -a -x /usr/lib/cni/portmap
conntrack --version
ip -V
socat -V | head -2 | tail -1
nano --version | head -1
! command -v busybox
test -s /etc/ssl/certs/ca-certificates.crt
grep -q 'unix:///run/containerd/containerd.sock' /etc/crictl.yaml
ls /kubeforge/images
cat /etc/kubeforge/image-info.json
test ! -e /usr/share/doc/runc/copyright
test -z "$(ls /var/lib/apt/lists)"
`
	out := docker(t, "run", "--rm", "--entrypoint", "/bin/bash", ref, "-c", script)
	t.Logf("inside the node image:\n%s", out)
	for _, want := range []string{"containerd github.com/containerd/containerd/v2 " + DefaultContainerdVersion, "crictl version " + DefaultCrictlVersion, "iptables v1.8.9 (nf_tables)", "coredns.tar", "kube-components.tar", "pause.tar"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// dockerNode is a provision.Node over `docker exec`, enough for Load.
type dockerNode struct {
	name    string
	imports atomic.Int32
}

func (n *dockerNode) Name() string           { return n.name }
func (n *dockerNode) Role() string           { return "worker" }
func (n *dockerNode) IP() netip.Addr         { return netip.Addr{} }
func (n *dockerNode) APIServerHostPort() int { return 0 }
func (n *dockerNode) State(context.Context) (provision.State, error) {
	return provision.StateRunning, nil
}
func (n *dockerNode) Start(context.Context) error              { return nil }
func (n *dockerNode) Stop(context.Context) error               { return nil }
func (n *dockerNode) CopyTar(context.Context, io.Reader) error { return fmt.Errorf("not here") }
func (n *dockerNode) ReadFile(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("not here")
}
func (n *dockerNode) Logs(context.Context, io.Writer, bool) error { return nil }
func (n *dockerNode) Run(ctx context.Context, c provision.Cmd) error {
	if strings.Join(c.Args, " ") == strings.Join(ImportCommand, " ") {
		n.imports.Add(1)
	}
	args := append([]string{"exec", "-i", n.name}, c.Args...)
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out bytes.Buffer
	cmd.Stdin = c.Stdin
	cmd.Stdout, cmd.Stderr = &out, &out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if err := cmd.Run(); err != nil {
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			err = nil
		}
		return &provision.RunError{Node: n.name, Args: c.Args, ExitCode: code, Output: out.String(), Err: err}
	}
	return nil
}

// startContainerdNode runs the node image with containerd as its only process, with the run
// flags that work on this kind of host (see node-runtime-facts.md).
func startContainerdNode(t *testing.T, ref string) *dockerNode {
	name := fmt.Sprintf("kubeforge-e2e-images-%d", time.Now().UnixNano())
	docker(t, "run", "-d", "--name", name, "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined", "--cgroupns=private", "--tmpfs", "/run", "--tmpfs", "/tmp", "-v", "/var",
		"--entrypoint", "/usr/local/bin/containerd", ref)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", name).Run() })
	n := &dockerNode{name: name}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := provision.Output(t.Context(), n, "crictl", "info"); err == nil {
			return n
		} else if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("containerd did not answer: %v\n%s", err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestE2EPreloadedImagesImport(t *testing.T) {
	ref, _ := e2eImage(t)
	n := startContainerdNode(t, ref)
	ctx := t.Context()
	raw, err := provision.Output(ctx, n, "cat", contract.ImageInfoPath)
	if err != nil {
		t.Fatal(err)
	}
	var info contract.ImageInfo
	if err := json.Unmarshal([]byte(raw), &info); err != nil || len(info.Preload) != 3 {
		t.Fatalf("%s: %v %+v", contract.ImageInfoPath, err, info)
	}
	for _, f := range info.Preload {
		if out, err := provision.Output(ctx, n, "ctr", "-n", "k8s.io", "images", "import", "--all-platforms", f); err != nil {
			t.Fatalf("import %s: %v\n%s", f, err, out)
		}
	}
	out, err := provision.Output(ctx, n, "crictl", "images")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("crictl images:\n%s", out)
	for _, want := range []string{"kubeforge.local/pause", "3.10", "kubeforge.local/kube-components", versions.Default().Kubernetes, "kubeforge.local/coredns", DefaultCoreDNSVersion} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl images lacks %s", want)
		}
	}
	id, err := NodeImageID(ctx, n, oci.PauseImage)
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("pause image ID %q, %v", id, err)
	}
	raw, err = provision.Output(ctx, n, "crictl", "inspecti", "-o", "json", oci.CoreDNSImage(DefaultCoreDNSVersion))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Info struct {
			ImageSpec struct {
				OS, Architecture string
				Config           struct{ Entrypoint []string }
			} `json:"imageSpec"`
		} `json:"info"`
	}
	json.Unmarshal([]byte(raw), &v)
	if v.Info.ImageSpec.OS != "linux" || len(v.Info.ImageSpec.Config.Entrypoint) != 1 || v.Info.ImageSpec.Config.Entrypoint[0] != "/coredns" {
		t.Errorf("coredns image spec in containerd: %+v", v.Info.ImageSpec)
	}
}

func TestE2ELoad(t *testing.T) {
	ref, cli := e2eImage(t)
	ctx := t.Context()
	n := startContainerdNode(t, ref)

	// A host image: a tiny one made here and loaded into Docker.
	const appRef = "kubeforge.local/e2e-load:1"
	archive, err := oci.Bytes(oci.Spec{Ref: appRef, Entrypoint: []string{"/pause"},
		Entries: []oci.Entry{{Path: "/pause", Type: '0', Mode: 0o755, Source: filepath.Join(e2eArt, "bin", "kubeforge-pause")}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.ImageLoad(ctx, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t.Cleanup(func() { exec.Command("docker", "rmi", appRef).Run() })

	var log bytes.Buffer
	if err := Load(ctx, cli, []provision.Node{n}, []string{appRef}, ui.New(&log, true)); err != nil {
		t.Fatalf("Load: %v\n%s", err, log.String())
	}
	t.Logf("first load:\n%s", log.String())
	if n.imports.Load() != 1 {
		t.Fatalf("%d imports, want 1", n.imports.Load())
	}
	insp, _ := cli.ImageInspect(ctx, appRef)
	if id, err := NodeImageID(ctx, n, appRef); err != nil || id != insp.ID {
		t.Fatalf("node has %s (%v), Docker %s", id, err, insp.ID)
	}
	// Again: nothing to do.
	log.Reset()
	if err := Load(ctx, cli, []provision.Node{n}, []string{appRef}, ui.New(&log, true)); err != nil {
		t.Fatal(err)
	}
	if n.imports.Load() != 1 || !strings.Contains(log.String(), "already") {
		t.Fatalf("second load imported again (%d) or said %q", n.imports.Load(), log.String())
	}
	// A missing image names itself and what to do.
	err = Load(ctx, cli, []provision.Node{n}, []string{"kubeforge.local/does-not-exist:0"}, nil)
	if err == nil || !strings.Contains(err.Error(), "does-not-exist") {
		t.Fatalf("err = %v", err)
	}
}

func TestE2EPrune(t *testing.T) {
	ref, cli := e2eImage(t)
	const old = NodeRepo + ":v0.0.0-000000000000"
	docker(t, "tag", ref, old)
	t.Cleanup(func() { exec.Command("docker", "rmi", old).Run() })
	removed, err := Prune(t.Context(), cli, []string{ref}, ui.New(os.Stderr, true))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range removed {
		if r == ref {
			t.Fatalf("pruned the kept image %s", ref)
		}
		found = found || r == old
	}
	if !found {
		t.Fatalf("removed %v, want %s among them", removed, old)
	}
	if ok, _ := Exists(t.Context(), cli, ref); !ok {
		t.Fatalf("%s is gone", ref)
	}
}
