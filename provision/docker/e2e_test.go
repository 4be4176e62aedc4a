//go:build e2e

// End-to-end tests against the running Docker daemon: go test -tags e2e ./provision/docker/
// They need /bin/busybox from Debian's busybox-static (apt-get install -y busybox-static).

package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// testImage imports a tiny image holding a static busybox, whose entrypoint prints "node up"
// and sleeps, exiting at once on SIGTERM. Its /var/lib/img/file checks that Docker copies the
// image's /var into the node volume.
func testImage(t *testing.T, d *Driver, tag string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("need a static /bin/busybox (apt-get install -y busybox-static): %v", err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	for _, dir := range []string{"bin", "etc", "var", "var/lib", "var/lib/img", "run", "tmp", "dev", "proc", "sys"} {
		add(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	for _, l := range []string{"sh", "cat", "wc", "sleep", "ping", "ls", "stat", "grep"} {
		add(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "var/lib/img/file", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("fromimage\n"))
	tw.Close()

	ref := "kubeforge-e2e-busybox:" + tag
	rc, err := d.Client().ImageImport(t.Context(), image.ImportSource{Source: &b, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{
			"ENV PATH=/bin",
			`ENTRYPOINT ["/bin/busybox", "sh", "-c", "echo node up; trap 'exit 0' TERM; /bin/busybox sleep 100000 & wait"]`,
		},
	})
	if err != nil {
		t.Fatalf("import test image: %v", err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	if bytes.Contains(out, []byte("errorDetail")) {
		t.Fatalf("import test image: %s", out)
	}
	t.Cleanup(func() {
		if _, err := d.Client().ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove test image: %v", err)
		}
	})
	return ref
}

func uniq(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// purge removes whatever carries the cluster label, so that a failed test leaves nothing.
func purge(t *testing.T, d *Driver, cluster string) {
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", provision.LabelCluster+"="+cluster))
	cs, _ := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	for _, c := range cs {
		d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	vs, _ := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	for _, v := range vs.Volumes {
		d.cli.VolumeRemove(ctx, v.Name, true)
	}
	ns, _ := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	for _, n := range ns {
		d.cli.NetworkRemove(ctx, n.ID)
	}
}

// leftovers lists what still carries the cluster label.
func leftovers(t *testing.T, d *Driver, cluster string) []string {
	t.Helper()
	ctx := t.Context()
	f := filters.NewArgs(filters.Arg("label", provision.LabelCluster+"="+cluster))
	var out []string
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		out = append(out, "container "+containerName(c.Names))
	}
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		out = append(out, "volume "+v.Name)
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out = append(out, "network "+n.Name)
	}
	return out
}

func newDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// testCluster is a test's driver, its image, and a cluster name with its network (whatever
// carries the cluster's label is purged when the test ends).
func testCluster(t *testing.T) (d *Driver, img, cluster string, nw provision.Network) {
	t.Helper()
	d = newDriver(t)
	id := uniq(t)
	img = testImage(t, d, id)
	cluster = "e2e-" + id
	t.Cleanup(func() { purge(t, d, cluster) })
	nw, err := d.EnsureNetwork(t.Context(), cluster)
	if err != nil {
		t.Fatal(err)
	}
	return d, img, cluster, nw
}

func mustTar(t *testing.T, entries ...*tar.Header) io.Reader {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		body := []byte(h.Linkname)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
			h.Linkname = ""
		} else {
			body = nil
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return &b
}

// file is a tar entry; for regular files body is carried in Linkname until mustTar writes it.
func file(name, body string, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Linkname: body, ModTime: time.Now()}
}

func TestE2EDriver(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	id := uniq(t)
	img := testImage(t, d, id)
	cluster := "e2e-" + id
	t.Cleanup(func() { purge(t, d, cluster) })

	// Network.
	nw, err := d.EnsureNetwork(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if nw.Name != "kubeforge-"+cluster || !slices.Contains(SubnetCandidates(), nw.Subnet) || nw.Gateway != nw.Subnet.Addr().Next() {
		t.Fatalf("network %+v", nw)
	}
	again, err := d.EnsureNetwork(ctx, cluster)
	found := again
	found.Created = true
	if err != nil || !nw.Created || again.Created || found != nw {
		t.Fatalf("second EnsureNetwork (finds the network the first made): %+v %v, first %+v", again, err, nw)
	}
	ni, err := d.cli.NetworkInspect(ctx, nw.Name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ni.Driver != "bridge" || ni.Labels[provision.LabelCluster] != cluster || ni.Options["com.docker.network.bridge.enable_ip_masquerade"] != "true" {
		t.Fatalf("network inspect: driver %s labels %v options %v", ni.Driver, ni.Labels, ni.Options)
	}
	t.Logf("network %s subnet %s options %v", nw.Name, nw.Subnet, ni.Options)
	all, _ := d.cli.NetworkList(ctx, network.ListOptions{})
	for _, n := range all {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil && n.Name != nw.Name && p.Overlaps(nw.Subnet) {
				t.Errorf("subnet %s overlaps network %s (%s)", nw.Subnet, n.Name, p)
			}
		}
	}

	// Nodes: a control plane with a published port and a worker.
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cpName, wName := cluster+"-control-plane", cluster+"-worker"
	cpIP, wIP := Network(nw).NodeIP(0), Network(nw).NodeIP(1)
	cp, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cpName, Role: "control-plane", Image: img,
		Network: nw, IP: cpIP, APIServerHostPort: port})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Name() != cpName || cp.Role() != "control-plane" || cp.IP() != cpIP || cp.APIServerHostPort() != port {
		t.Fatalf("node %s %s %s %d", cp.Name(), cp.Role(), cp.IP(), cp.APIServerHostPort())
	}
	w, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: wName, Role: "worker", Image: img, Network: nw, IP: wIP})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := cp.State(ctx); err != nil || st != provision.StateStopped {
		t.Fatalf("state after create: %s %v", st, err)
	}

	// The container's settings.
	ci, err := d.cli.ContainerInspect(ctx, cpName)
	if err != nil {
		t.Fatal(err)
	}
	hc := ci.HostConfig
	if ci.Config.Hostname != cpName || ci.Config.Labels[provision.LabelCluster] != cluster || ci.Config.Labels[provision.LabelNode] != cpName ||
		ci.Config.Labels[provision.LabelRole] != "control-plane" || ci.Config.Labels[provision.LabelAPIPort] != strconv.Itoa(port) {
		t.Errorf("config: hostname %s labels %v", ci.Config.Hostname, ci.Config.Labels)
	}
	if !slices.Equal(hc.CapAdd, []string{"ALL"}) || !(slices.Equal(hc.CapDrop, []string{"SYS_RESOURCE"}) || slices.Equal(hc.CapDrop, []string{"CAP_SYS_RESOURCE"})) ||
		!slices.Equal(hc.SecurityOpt, []string{"seccomp=unconfined", "apparmor=unconfined", "label=disable"}) || hc.CgroupnsMode != container.CgroupnsModePrivate ||
		hc.Privileged || hc.Init == nil || *hc.Init || hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped ||
		len(hc.Tmpfs) != 2 || len(hc.Devices) != 1 || hc.Devices[0].PathOnHost != "/dev/kmsg" {
		b, _ := json.Marshal(hc)
		t.Errorf("host config: %s", b)
	}
	if len(hc.Mounts) < 1 || hc.Mounts[0].Source != cpName+"-var" || hc.Mounts[0].Target != "/var" {
		t.Errorf("mounts %+v", hc.Mounts)
	}
	if pb := hc.PortBindings["6443/tcp"]; len(pb) != 1 || pb[0].HostIP != "127.0.0.1" || pb[0].HostPort != strconv.Itoa(port) || len(hc.PortBindings) != 1 {
		t.Errorf("port bindings %+v", hc.PortBindings)
	}
	v, err := d.cli.VolumeInspect(ctx, cpName+"-var")
	if err != nil || v.Labels[provision.LabelCluster] != cluster || v.Labels[provision.LabelNode] != cpName {
		t.Errorf("volume: %+v %v", v, err)
	}

	// The port is claimed: by our stopped node, then by a plain listener.
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster + "-x", Image: img, Network: nw, IP: Network(nw).NodeIP(5), APIServerHostPort: port})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port 127.0.0.1:%d is already in use", port)) {
		t.Errorf("create with a port of a stopped node: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := l.Addr().(*net.TCPAddr).Port
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster + "-x", Image: img, Network: nw, IP: Network(nw).NodeIP(5), APIServerHostPort: busy})
	l.Close()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port 127.0.0.1:%d is already in use: choose another with --api-port or free it", busy)) {
		t.Errorf("create with a busy port: %v", err)
	}
	if _, err := d.cli.VolumeInspect(ctx, cluster+"-x-var"); !cerrdefs.IsNotFound(err) {
		t.Errorf("failed create left a volume: %v", err)
	}
	// A busy host port for a published node port (start --port).
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy = l.Addr().(*net.TCPAddr).Port
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster + "-x", Image: img, Network: nw, IP: Network(nw).NodeIP(5),
		Ports: []provision.PortMapping{{HostPort: busy, NodePort: 30080}}})
	l.Close()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port 127.0.0.1:%d is already in use", busy)) || !strings.Contains(err.Error(), "--port") {
		t.Errorf("create with a busy published port: %v", err)
	}
	// A missing image: clear error, no volume left.
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster + "-y", Image: "kubeforge-e2e-missing:" + id, Network: nw, IP: Network(nw).NodeIP(6)})
	if err == nil || !strings.Contains(err.Error(), "not in Docker") {
		t.Errorf("create with a missing image: %v", err)
	}
	if _, err := d.cli.VolumeInspect(ctx, cluster+"-y-var"); !cerrdefs.IsNotFound(err) {
		t.Errorf("failed create left a volume: %v", err)
	}
	if _, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: wName, Image: img, Network: nw, IP: Network(nw).NodeIP(7)}); err == nil {
		t.Error("creating an existing node succeeded")
	}

	// Files before start, into the image's root filesystem and into the /var volume.
	err = cp.CopyTar(ctx, mustTar(t,
		&tar.Header{Name: "etc/kubeforge/", Typeflag: tar.TypeDir, Mode: 0o700},
		file("etc/kubeforge/hello", "hello etc\n", 0o600),
		&tar.Header{Name: "etc/kubeforge/link", Typeflag: tar.TypeSymlink, Linkname: "hello", Mode: 0o777},
		&tar.Header{Name: "var/lib/kubeforge/", Typeflag: tar.TypeDir, Mode: 0o755},
		file("var/lib/kubeforge/data", "hello var\n", 0o644),
	))
	if err != nil {
		t.Fatal(err)
	}
	err = cp.CopyTar(ctx, mustTar(t, file("run/kubeforge/x", "lost", 0o644)))
	if err == nil || !strings.Contains(err.Error(), "/run/kubeforge/x is on a tmpfs") {
		t.Errorf("CopyTar into /run: %v", err)
	}
	if err := cp.CopyTar(ctx, strings.NewReader("this is not a tar archive, not at all, and it is long enough to fail the header check: "+strings.Repeat("x", 600))); err == nil {
		t.Error("CopyTar of garbage succeeded")
	}

	// Run on a stopped node fails with a RunError.
	var re *provision.RunError
	if err := cp.Run(ctx, provision.Cmd{Args: []string{"true"}}); !errors.As(err, &re) || re.Node != cpName {
		t.Errorf("run on a stopped node: %v", err)
	}

	// Start.
	start := time.Now()
	for _, n := range []provision.Node{cp, w} {
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("two nodes started in %v", time.Since(start))
	if st, err := cp.State(ctx); err != nil || st != provision.StateRunning {
		t.Fatalf("state after start: %s %v", st, err)
	}
	if err := cp.Start(ctx); err != nil {
		t.Errorf("starting a running node: %v", err)
	}

	// Address and published port.
	ci, err = d.cli.ContainerInspect(ctx, cpName)
	if err != nil {
		t.Fatal(err)
	}
	if ep := ci.NetworkSettings.Networks[nw.Name]; ep == nil || ep.IPAddress != cpIP.String() || ep.Gateway != nw.Gateway.String() {
		t.Errorf("endpoint %+v", ep)
	}
	if ps := ci.NetworkSettings.Ports["6443/tcp"]; len(ps) != 1 || ps[0].HostIP != "127.0.0.1" || ps[0].HostPort != strconv.Itoa(port) {
		t.Errorf("published ports %+v", ci.NetworkSettings.Ports)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		l.Close()
		t.Errorf("127.0.0.1:%d is free after start: not published", port)
	}
	if a := nonLoopbackAddr(); a.IsValid() { // bound on 127.0.0.1 only: the same port is free on other addresses
		l, err := net.Listen("tcp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
		if err != nil {
			t.Errorf("port %d is taken on %s too: %v", port, a, err)
		} else {
			l.Close()
		}
	}

	// Files after start.
	for path, want := range map[string]string{
		"/etc/kubeforge/hello":    "hello etc\n",
		"/etc/kubeforge/link":     "hello etc\n",
		"/var/lib/kubeforge/data": "hello var\n",
		"/var/lib/img/file":       "fromimage\n", // the image's /var, copied into the volume
		"/etc/hostname":           cpName + "\n",
	} {
		got, err := cp.ReadFile(ctx, path)
		if err != nil || string(got) != want {
			t.Errorf("ReadFile %s = %q, %v; want %q", path, got, err, want)
		}
	}
	if out, err := provision.Output(ctx, cp, "stat", "-c", "%a %u:%g", "/etc/kubeforge/hello", "/etc/kubeforge"); err != nil || out != "600 0:0\n700 0:0\n" {
		t.Errorf("modes and owners: %q %v", out, err)
	}
	if _, err := cp.ReadFile(ctx, "/etc/nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
	if _, err := cp.ReadFile(ctx, "/etc"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	if err := cp.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", "echo in run > /run/kf"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := cp.ReadFile(ctx, "/run/kf"); err != nil || string(got) != "in run\n" {
		t.Errorf("ReadFile /run/kf = %q, %v", got, err)
	}
	if _, err := cp.ReadFile(ctx, "/run/nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file in /run: %v", err)
	}
	// CopyTar into a running node.
	if err := cp.CopyTar(ctx, mustTar(t, file("var/lib/kubeforge/later", "later\n", 0o644))); err != nil {
		t.Fatal(err)
	}
	if got, err := provision.Output(ctx, cp, "cat", "/var/lib/kubeforge/later"); err != nil || got != "later\n" {
		t.Errorf("file copied into a running node: %q %v", got, err)
	}

	// Run: stdin, big stdin, stdout and stderr apart, failures.
	var stdout, stderr bytes.Buffer
	if err := cp.Run(ctx, provision.Cmd{Args: []string{"cat"}, Stdin: strings.NewReader("from stdin\n"), Stdout: &stdout}); err != nil || stdout.String() != "from stdin\n" {
		t.Errorf("cat with stdin: %q %v", stdout.String(), err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if out, err := runOut(ctx, cp, bytes.NewReader(big), "wc", "-c"); err != nil || strings.TrimSpace(out) != strconv.Itoa(len(big)) {
		t.Errorf("wc -c of 1 MiB: %q %v", out, err)
	}
	stdout.Reset()
	if err := cp.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: &stdout, Stderr: &stderr}); err != nil ||
		stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("stdout %q stderr %q %v", stdout.String(), stderr.String(), err)
	}
	err = cp.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", "echo some output; echo oops >&2; exit 3"}})
	if !errors.As(err, &re) || re.ExitCode != 3 || !strings.Contains(re.Output, "oops") || !strings.Contains(re.Output, "some output") ||
		re.Node != cpName || re.Args[0] != "sh" || !strings.Contains(err.Error(), "exited 3") {
		t.Errorf("failing command: %#v", err)
	}
	t.Logf("failing command error: %v", err)
	stdout.Reset()
	err = cp.Run(ctx, provision.Cmd{Args: []string{"sh", "-c", "echo to caller; echo oops >&2; exit 4"}, Stdout: &stdout})
	if !errors.As(err, &re) || re.ExitCode != 4 || strings.TrimSpace(re.Output) != "oops" || stdout.String() != "to caller\n" {
		t.Errorf("failing command with stdout: %#v", err)
	}
	err = cp.Run(ctx, provision.Cmd{Args: []string{"/nonexistent/binary"}})
	if !errors.As(err, &re) || re.ExitCode == 0 {
		t.Errorf("missing binary: %#v", err)
	}
	t.Logf("missing binary error: %v", err)
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	t0 := time.Now()
	err = cp.Run(tctx, provision.Cmd{Args: []string{"sleep", "30"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 5*time.Second {
		t.Errorf("run with a deadline: %v after %v", err, time.Since(t0))
	}

	// Node to node over the cluster network.
	if out, err := provision.Output(ctx, w, "ping", "-c", "1", "-W", "3", cpIP.String()); err != nil {
		t.Errorf("worker pings control plane: %v\n%s", err, out)
	}

	// Logs.
	var logs bytes.Buffer
	if err := cp.Logs(ctx, &logs, false); err != nil || !strings.Contains(logs.String(), "node up") {
		t.Errorf("logs %q %v", logs.String(), err)
	}
	lctx, lcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	logs.Reset()
	err = cp.Logs(lctx, &logs, true)
	lcancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(logs.String(), "node up") {
		t.Errorf("follow logs: %q %v", logs.String(), err)
	}

	// Listing.
	nodes, err := d.Nodes(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	checkNodes(t, nodes, cpName, cpIP, port, wName, wIP)
	cls, err := d.Clusters(ctx)
	if err != nil || !slices.Contains(cls, cluster) || !slices.IsSorted(cls) {
		t.Errorf("clusters %v %v", cls, err)
	}

	// Stop and start again: state, address and /var survive.
	t0 = time.Now()
	if err := cp.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(t0))
	if st, err := cp.State(ctx); err != nil || st != provision.StateStopped {
		t.Errorf("state after stop: %s %v", st, err)
	}
	if err := cp.Stop(ctx); err != nil {
		t.Errorf("stopping a stopped node: %v", err)
	}
	nodes, err = d.Nodes(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	checkNodes(t, nodes, cpName, cpIP, port, wName, wIP) // stopped nodes keep their address
	n2, err := d.Node(ctx, cpName)
	if err != nil || n2.IP() != cpIP || n2.APIServerHostPort() != port || n2.Role() != "control-plane" {
		t.Errorf("Node(%s): %+v %v", cpName, n2, err)
	}
	if err := cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := cp.ReadFile(ctx, "/var/lib/kubeforge/later"); err != nil || string(got) != "later\n" {
		t.Errorf("/var after restart: %q %v", got, err)
	}

	// Delete: a container that is not a node is left alone, even by a name of the cluster's.
	other := cluster + "-other"
	if _, err := d.cli.ContainerCreate(ctx, &container.Config{Image: img}, nil, nil, nil, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cli.ContainerRemove(context.Background(), other, container.RemoveOptions{Force: true}) })
	if err := d.DeleteNode(ctx, cluster, other); err == nil || !strings.Contains(err.Error(), "not a kubeforge node") {
		t.Errorf("DeleteNode of a foreign container: %v", err)
	}
	if _, err := d.cli.ContainerInspect(ctx, other); err != nil {
		t.Errorf("foreign container removed: %v", err)
	}
	// Names that are not the cluster's nodes' are refused before Docker is asked.
	for _, n := range []string{"..", "kubeforge-e2e-other-" + id, cluster + "/x", ""} {
		if err := d.DeleteNode(ctx, cluster, n); err == nil || !strings.Contains(err.Error(), "node label") {
			t.Errorf("DeleteNode(%q): %v", n, err)
		}
	}
	for _, n := range []string{cpName, wName, cpName} {
		if err := d.DeleteNode(ctx, cluster, n); err != nil {
			t.Errorf("DeleteNode %s: %v", n, err)
		}
	}
	if st, err := cp.State(ctx); err != nil || st != provision.StateMissing {
		t.Errorf("state after delete: %s %v", st, err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Errorf("second DeleteNetwork: %v", err)
	}
	if left := leftovers(t, d, cluster); len(left) != 0 {
		t.Errorf("left after delete: %v", left)
	}
	if cls, err := d.Clusters(ctx); err != nil || slices.Contains(cls, cluster) {
		t.Errorf("clusters after delete %v %v", cls, err)
	}
}

func runOut(ctx context.Context, n provision.Node, stdin io.Reader, args ...string) (string, error) {
	var out strings.Builder
	err := n.Run(ctx, provision.Cmd{Args: args, Stdin: stdin, Stdout: &out})
	return out.String(), err
}

func checkNodes(t *testing.T, nodes []provision.Node, cpName string, cpIP netip.Addr, port int, wName string, wIP netip.Addr) {
	t.Helper()
	if len(nodes) != 2 || nodes[0].Name() != cpName || nodes[1].Name() != wName ||
		nodes[0].IP() != cpIP || nodes[1].IP() != wIP || nodes[0].APIServerHostPort() != port || nodes[1].APIServerHostPort() != 0 ||
		nodes[0].Role() != "control-plane" || nodes[1].Role() != "worker" {
		for _, n := range nodes {
			t.Logf("node %s role %s ip %s port %d", n.Name(), n.Role(), n.IP(), n.APIServerHostPort())
		}
		t.Errorf("Nodes: got %d nodes", len(nodes))
	}
}

func nonLoopbackAddr() netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// TestE2ENetworkRace creates networks concurrently: two clusters at once get different subnets,
// and two creates of one cluster get the same network.
func TestE2ENetworkRace(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	id := uniq(t)
	a, b := "e2e-"+id+"-a", "e2e-"+id+"-b"
	t.Cleanup(func() { purge(t, d, a); purge(t, d, b) })
	names := []string{a, b, a, b}
	res := make([]provision.Network, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, c := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = d.EnsureNetwork(ctx, c)
		}()
	}
	wg.Wait()
	for i := range names {
		if errs[i] != nil {
			t.Fatalf("EnsureNetwork %s: %v", names[i], errs[i])
		}
	}
	// Of the two EnsureNetworks of one cluster, one made the network and the other found it.
	same := func(x, y provision.Network) bool { x.Created, y.Created = false, false; return x == y }
	if !same(res[0], res[2]) || !same(res[1], res[3]) || res[0].Subnet.Overlaps(res[1].Subnet) ||
		res[0].Created == res[2].Created || res[1].Created == res[3].Created {
		t.Fatalf("networks %+v", res)
	}
	for _, c := range []string{a, b} {
		ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", provision.LabelCluster+"="+c))})
		if err != nil || len(ns) != 1 {
			t.Errorf("networks of %s: %d %v", c, len(ns), err)
		}
		if err := d.DeleteNetwork(ctx, c); err != nil {
			t.Error(err)
		}
	}
	for _, c := range []string{a, b} {
		if left := leftovers(t, d, c); len(left) != 0 {
			t.Errorf("left: %v", left)
		}
	}
}

// TestE2EHalfMade checks that what an interrupted create or delete leaves is listed and removed:
// a network alone, and a node volume without its container.
func TestE2EHalfMade(t *testing.T) {
	d, img, cluster, nw := testCluster(t)
	ctx := t.Context()
	if cls, _ := d.Clusters(ctx); !slices.Contains(cls, cluster) {
		t.Errorf("network-only cluster not listed: %v", cls)
	}
	name := cluster + "-control-plane"
	n, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: name, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(0)})
	if err != nil {
		t.Fatal(err)
	}
	// An interrupted delete: the container is gone, its volume is not.
	if err := d.cli.ContainerRemove(ctx, n.(*Node).ID(), container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if nodes, err := d.Nodes(ctx, cluster); err != nil || len(nodes) != 0 {
		t.Errorf("nodes %v %v", nodes, err)
	}
	// Creating the node again neither reuses nor wipes the volume of the old node: it is refused,
	// naming the volume and how to remove it.
	vol := VolumeName(name)
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: name, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(0)})
	if err == nil || !strings.Contains(err.Error(), "volume "+vol+" of an earlier node") ||
		!strings.Contains(kferr.Hint(err), "kubeforge delete --name "+cluster) || !strings.Contains(kferr.Hint(err), "docker volume rm "+vol) {
		t.Errorf("create over a stale volume: %v (hint %q)", err, kferr.Hint(err))
	}
	t.Logf("create over a stale volume: %v (hint %q)", err, kferr.Hint(err))
	if _, err := d.cli.ContainerInspect(ctx, name); !cerrdefs.IsNotFound(err) {
		t.Errorf("refused create made a container: %v", err)
	}
	// The rollback of that create (this driver's DeleteNode, DeleteNetwork) leaves the volume.
	if err := d.DeleteNode(ctx, cluster, name); err != nil {
		t.Errorf("DeleteNode after the refused create: %v", err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Errorf("DeleteNetwork after the refused create: %v", err)
	}
	if v, err := d.cli.VolumeInspect(ctx, vol); err != nil || v.Labels[provision.LabelCluster] != cluster {
		t.Fatalf("the rollback of the refused create removed the old volume: %v", err)
	}
	if cls, _ := d.Clusters(ctx); !slices.Contains(cls, cluster) {
		t.Errorf("cluster with a volume left not listed: %v", cls)
	}
	// An explicit delete (another command: another driver) removes it.
	d2 := newDriver(t)
	if nodes, err := d2.Nodes(ctx, cluster); err != nil || len(nodes) != 0 {
		t.Errorf("nodes %v %v", nodes, err)
	}
	if err := d2.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, d, cluster); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	if cls, _ := d.Clusters(ctx); slices.Contains(cls, cluster) {
		t.Errorf("deleted cluster listed: %v", cls)
	}
}

// TestE2EDeleteNodeOfAnotherCluster is issue 14: with cluster X's worker X-m02 there, a start of
// cluster "X-m02" is refused at CreateNode, and its rollback (DeleteNode of "X-m02" for cluster
// X-m02) must not remove X's worker or its volume.
func TestE2EDeleteNodeOfAnotherCluster(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	id := uniq(t)
	img := testImage(t, d, id)
	cluster := "e2e-" + id
	worker := cluster + "-m02"
	intruder := worker // the cluster named like the worker
	t.Cleanup(func() { purge(t, d, cluster); purge(t, d, intruder) })

	nw, err := d.EnsureNetwork(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: worker, Role: "worker", Image: img, Network: nw, IP: Network(nw).NodeIP(1)}); err != nil {
		t.Fatal(err)
	}
	inw, err := d.EnsureNetwork(ctx, intruder)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.CreateNode(ctx, provision.NodeConfig{Cluster: intruder, Name: intruder, Role: "control-plane", Image: img, Network: inw, IP: Network(inw).NodeIP(0)})
	if err == nil || !strings.Contains(err.Error(), "a container with that name already exists") || !strings.Contains(err.Error(), "of cluster "+cluster) {
		t.Errorf("create of a node whose name is another cluster's node's: %v", err)
	}
	// The rollback.
	err = d.DeleteNode(ctx, intruder, intruder)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("belongs to cluster %q", cluster)) || !strings.Contains(err.Error(), "not removing it") {
		t.Errorf("DeleteNode of another cluster's container: %v", err)
	}
	t.Logf("DeleteNode of another cluster's container: %v", err)
	if err := d.DeleteNetwork(ctx, intruder); err != nil {
		t.Errorf("DeleteNetwork %s: %v", intruder, err)
	}
	c, err := d.cli.ContainerInspect(ctx, worker)
	if err != nil || c.Config.Labels[provision.LabelCluster] != cluster {
		t.Fatalf("the other cluster's node is gone: %v", err)
	}
	if v, err := d.cli.VolumeInspect(ctx, VolumeName(worker)); err != nil || v.Labels[provision.LabelCluster] != cluster {
		t.Fatalf("the other cluster's volume is gone: %v", err)
	}
	if nodes, err := d.Nodes(ctx, cluster); err != nil || len(nodes) != 1 || nodes[0].Name() != worker {
		t.Errorf("nodes of %s: %v %v", cluster, nodes, err)
	}
	if nodes, err := d.Nodes(ctx, intruder); err != nil || len(nodes) != 0 {
		t.Errorf("nodes of %s: %v %v", intruder, nodes, err)
	}
	// The owner deletes it.
	if err := d.DeleteNode(ctx, cluster, worker); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{cluster, intruder} {
		if left := leftovers(t, d, c); len(left) != 0 {
			t.Errorf("left of %s: %v", c, left)
		}
	}
}

// TestE2EForeignVolume: a <node>-var volume that is not the node's (unlabelled, or another
// cluster's) is refused at CreateNode, and neither CreateNode nor DeleteNode touches it.
func TestE2EForeignVolume(t *testing.T) {
	d, img, cluster, nw := testCluster(t)
	ctx := t.Context()
	for i, labels := range []map[string]string{
		nil, // made by hand, or by Docker for a container
		{provision.LabelCluster: cluster + "-x", provision.LabelNode: cluster},   // another cluster's
		{provision.LabelCluster: cluster, provision.LabelNode: cluster + "-m09"}, // another node's
	} {
		name := cluster
		vol := VolumeName(name)
		if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol, Labels: labels}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.cli.VolumeRemove(context.Background(), vol, true) })
		_, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: name, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(0)})
		if err == nil || !strings.Contains(err.Error(), "volume "+vol+" already exists and is not this node's") || !strings.Contains(kferr.Hint(err), "docker volume rm "+vol) {
			t.Errorf("%d: create over a foreign volume: %v (hint %q)", i, err, kferr.Hint(err))
		}
		t.Logf("%d: %v (hint %q)", i, err, kferr.Hint(err))
		if _, err := d.cli.ContainerInspect(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Errorf("%d: refused create made a container: %v", i, err)
		}
		// The rollback.
		if err := d.DeleteNode(ctx, cluster, name); err == nil || !strings.Contains(err.Error(), "is not this node's") {
			t.Errorf("%d: DeleteNode with a foreign volume: %v", i, err)
		}
		if err := d.DeleteNetwork(ctx, cluster); err != nil {
			t.Errorf("%d: DeleteNetwork: %v", i, err)
		}
		v, err := d.cli.VolumeInspect(ctx, vol)
		if err != nil || len(v.Labels) != len(labels) {
			t.Fatalf("%d: foreign volume touched: %+v %v", i, v, err)
		}
		if err := d.cli.VolumeRemove(ctx, vol, false); err != nil {
			t.Fatal(err)
		}
		if nw, err = d.EnsureNetwork(ctx, cluster); err != nil {
			t.Fatal(err)
		}
	}
	// Once it is gone, the node is made, with its volume labelled.
	if _, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(0)}); err != nil {
		t.Fatal(err)
	}
	ci, err := d.cli.ContainerInspect(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if m := ci.HostConfig.Mounts[0]; m.VolumeOptions == nil || m.VolumeOptions.Labels[provision.LabelCluster] != cluster || m.VolumeOptions.Labels[provision.LabelNode] != cluster {
		t.Errorf("volume mount %+v", m)
	}
	if err := d.DeleteNode(ctx, cluster, cluster); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, d, cluster); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}

// TestE2EDeleteRemovesOrphanVolume: delete removes a node's labelled volume whose container is
// gone: DeleteNode by the node's name, and DeleteNetwork for the cluster (delete finds no node
// to name).
func TestE2EDeleteRemovesOrphanVolume(t *testing.T) {
	d, img, cluster, nw := testCluster(t)
	ctx := t.Context()
	var names []string
	for i := range 2 {
		name := cluster
		if i > 0 {
			name = cluster + "-m02"
		}
		n, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: name, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.cli.ContainerRemove(ctx, n.(*Node).ID(), container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := d.DeleteNode(ctx, cluster, names[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.cli.VolumeInspect(ctx, VolumeName(names[0])); !cerrdefs.IsNotFound(err) {
		t.Errorf("DeleteNode left the volume of a node without container: %v", err)
	}
	// What `kubeforge delete` does: the nodes listed (none), then the network.
	if nodes, err := d.Nodes(ctx, cluster); err != nil || len(nodes) != 0 {
		t.Errorf("nodes %v %v", nodes, err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, d, cluster); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}

// TestE2EBadLabels: objects whose labels are not valid names are not listed as clusters or
// nodes: `delete --all` would make paths of them.
func TestE2EBadLabels(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	id := uniq(t)
	img := testImage(t, d, id)
	cluster := "e2e-" + id
	t.Cleanup(func() { purge(t, d, cluster) })
	mk := func(name string, labels map[string]string) {
		t.Helper()
		if _, err := d.cli.ContainerCreate(ctx, &container.Config{Image: img, Labels: labels}, nil, nil, nil, name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true}) })
	}
	mk("kubeforge-e2e-dotdot-"+id, map[string]string{provision.LabelCluster: "..", provision.LabelNode: ".."})
	mk("kubeforge-e2e-empty-"+id, map[string]string{provision.LabelCluster: "", provision.LabelNode: ""})
	// In a valid cluster: a node label that is a path, and one that is not the container's name.
	mk(cluster+"-m03", map[string]string{provision.LabelCluster: cluster, provision.LabelNode: "../../etc"})
	mk(cluster+"-m04", map[string]string{provision.LabelCluster: cluster, provision.LabelNode: cluster + "-m05"})
	mk(cluster+"-m06", map[string]string{provision.LabelCluster: cluster, provision.LabelNode: cluster + "-m06"}) // a good one
	badVol := "kubeforge-e2e-slash-" + id
	if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: badVol, Labels: map[string]string{provision.LabelCluster: "a/../.."}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cli.VolumeRemove(context.Background(), badVol, true) })

	cls, err := d.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cls, cluster) {
		t.Errorf("clusters %v lack %s", cls, cluster)
	}
	for _, c := range cls {
		if provision.CheckClusterLabel(c) != nil {
			t.Errorf("Clusters returned %q", c)
		}
	}
	nodes, err := d.Nodes(ctx, cluster)
	if err != nil || len(nodes) != 1 || nodes[0].Name() != cluster+"-m06" {
		t.Errorf("nodes %v %v", nodes, err)
	}
	if _, err := d.Nodes(ctx, ".."); err == nil {
		t.Error(`Nodes("..") succeeded`)
	}
	if err := d.DeleteNetwork(ctx, ".."); err == nil {
		t.Error(`DeleteNetwork("..") succeeded`)
	}
}

// TestE2EReplaceNode: a node made anew from another image keeps its /var (what an upgrade
// needs), and a container of another cluster is never replaced.
func TestE2EReplaceNode(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	id := uniq(t)
	img, img2 := testImage(t, d, id), testImage(t, d, id+"-new")
	cluster := "e2e-" + id
	t.Cleanup(func() { purge(t, d, cluster) })
	nw, err := d.EnsureNetwork(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	cfg := provision.NodeConfig{Cluster: cluster, Name: cluster, Role: "control-plane", Image: img, Network: nw, IP: Network(nw).NodeIP(0)}
	n, err := d.CreateNode(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := runOut(ctx, n, nil, "sh", "-c", "echo kept > /var/data && cat /var/data"); err != nil || out != "kept\n" {
		t.Fatalf("writing /var/data: %q %v", out, err)
	}
	cfg.Image = img2
	n2, err := d.ReplaceNode(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n2.(*Node).ID() == n.(*Node).ID() {
		t.Fatal("ReplaceNode kept the old container")
	}
	if err := n2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := runOut(ctx, n2, nil, "cat", "/var/data"); err != nil || out != "kept\n" {
		t.Errorf("after ReplaceNode, /var/data: %q %v", out, err)
	}
	insp, err := d.cli.ContainerInspect(ctx, cluster)
	if err != nil || insp.Config.Image != img2 {
		t.Errorf("replaced container's image: %v %v", insp.Config.Image, err)
	}
	// Another cluster's node is not replaced.
	other := cfg
	other.Cluster = cluster + "x"
	other.Name = cluster
	if _, err := d.ReplaceNode(ctx, other); err == nil {
		t.Error("ReplaceNode replaced a container of another cluster")
	}
	if err := d.DeleteNode(ctx, cluster, cluster); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, d, cluster); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}
