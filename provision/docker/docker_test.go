package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestSubnetCandidates(t *testing.T) {
	c := SubnetCandidates()
	if len(c) != 23 || c[0] != pfx("192.168.49.0/24") || c[1] != pfx("192.168.58.0/24") || c[len(c)-1] != pfx("192.168.247.0/24") {
		t.Fatalf("candidates %v", c)
	}
}

func TestChooseSubnet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taken []string
		want  string // "" = none
	}{
		{"nothing taken", nil, "192.168.49.0/24"},
		{"docker default and host", []string{"172.17.0.0/16", "192.0.2.0/24", "127.0.0.0/8"}, "192.168.49.0/24"},
		{"first taken", []string{"192.168.49.0/24"}, "192.168.58.0/24"},
		{"host address inside first", []string{"192.168.49.7/32"}, "192.168.58.0/24"},
		{"wide route covers two", []string{"192.168.48.0/20"}, "192.168.67.0/24"},
		{"smaller subnet inside", []string{"192.168.58.128/25", "192.168.49.0/24"}, "192.168.67.0/24"},
		{"between candidates", []string{"192.168.50.0/24", "192.168.57.0/24"}, "192.168.49.0/24"},
		{"all of 192.168/16", []string{"192.168.0.0/16"}, ""},
		{"supernet", []string{"192.0.0.0/8"}, ""},
		{"invalid ignored", []string{""}, "192.168.49.0/24"},
	} {
		var taken []netip.Prefix
		for _, s := range tc.taken {
			p, _ := netip.ParsePrefix(s)
			taken = append(taken, p)
		}
		got, ok := ChooseSubnet(taken)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: got %v, want none", tc.name, got)
			}
			continue
		}
		if !ok || got != pfx(tc.want) {
			t.Errorf("%s: got %v %v, want %s", tc.name, got, ok, tc.want)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	const routes = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
eth0	000200C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
wg0	0031A8C0	00000000	0001	0	0	0	0080FFFF	0	0	0
bad	zz	00000000	0001	0	0	0	00FFFFFF	0	0	0
`
	got, err := parseRoutes(strings.NewReader(routes))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{pfx("172.17.0.0/16"), pfx("192.0.2.0/24"), pfx("192.168.49.0/17").Masked()}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if p, ok := ChooseSubnet(got); !ok || p != pfx("192.168.130.0/24") {
		t.Fatalf("choose with routes: %v %v", p, ok)
	}
}

func TestHostPrefixes(t *testing.T) {
	ps, err := hostPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	var lo bool
	for _, p := range ps {
		if p.Bits() == 0 {
			t.Errorf("default route in host prefixes: %v", ps)
		}
		lo = lo || p.Contains(netip.MustParseAddr("127.0.0.1"))
	}
	if !lo {
		t.Errorf("loopback missing from host prefixes %v", ps)
	}
}

func TestNodeIP(t *testing.T) {
	n := Network{Subnet: pfx("192.168.58.0/24")}
	for i, want := range map[int]string{0: "192.168.58.2", 1: "192.168.58.3", 252: "192.168.58.254", 253: "invalid IP", -1: "invalid IP"} {
		if got := n.NodeIP(i).String(); got != want {
			t.Errorf("NodeIP(%d) = %s, want %s", i, got, want)
		}
	}
	// Conversion from the provision type, as callers do.
	pn := provision.Network{Subnet: pfx("10.1.0.0/16")}
	if got := Network(pn).NodeIP(300).String(); got != "10.1.1.46" {
		t.Errorf("NodeIP(300) in /16 = %s", got)
	}
	if Network(provision.Network{}).NodeIP(0).IsValid() {
		t.Error("NodeIP of an empty network should be invalid")
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func mkTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

func TestExtractSingleFile(t *testing.T) {
	h, data, err := extractSingleFile(bytes.NewReader(mkTar(t, tarEntry{name: "hosts", body: "127.0.0.1 localhost\n", typ: tar.TypeReg})))
	if err != nil || string(data) != "127.0.0.1 localhost\n" || h.Name != "hosts" {
		t.Fatalf("regular: %v %q %v", h, data, err)
	}
	h, data, err = extractSingleFile(bytes.NewReader(mkTar(t, tarEntry{name: "resolv.conf", link: "../run/resolv.conf", typ: tar.TypeSymlink})))
	if err != nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "../run/resolv.conf" || data != nil {
		t.Fatalf("symlink: %v %q %v", h, data, err)
	}
	h, data, err = extractSingleFile(bytes.NewReader(mkTar(t, tarEntry{name: "empty", typ: tar.TypeReg})))
	if err != nil || len(data) != 0 {
		t.Fatalf("empty file: %v %q %v", h, data, err)
	}
	if _, _, err := extractSingleFile(bytes.NewReader(mkTar(t, tarEntry{name: "etc/", typ: tar.TypeDir}))); err == nil || !strings.Contains(err.Error(), "etc is a directory") {
		t.Fatalf("directory: %v", err)
	}
	if _, _, err := extractSingleFile(bytes.NewReader(mkTar(t))); err == nil || !strings.Contains(err.Error(), "empty archive") {
		t.Fatalf("empty archive: %v", err)
	}
	if _, _, err := extractSingleFile(strings.NewReader("not a tar at all, just text that is long enough to fill a header block? no")); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, _, err := extractSingleFile(bytes.NewReader(mkTar(t, tarEntry{name: "fifo", typ: tar.TypeFifo}))); err == nil {
		t.Fatal("fifo accepted")
	}
}

func TestOnTmpfs(t *testing.T) {
	for name, want := range map[string]bool{
		"run/x": true, "./run/x": true, "/tmp/a/b": true, "run/": false, "./tmp": false, "var/run/x": false,
		"etc/kubeforge/x": false, "runner/x": false, "../run/x": true,
	} {
		if got := onTmpfs(name); got != want {
			t.Errorf("onTmpfs(%q) = %v", name, got)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	tb.Write([]byte("abc"))
	tb.Write([]byte("defg"))
	if tb.String() != "cdefg" {
		t.Fatalf("got %q", tb.String())
	}
}

func TestPingErrorHints(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	d, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Ping(context.Background())
	if err == nil {
		t.Fatal("ping of a missing socket succeeded")
	}
	if kferr.Code(err) != kferr.ExitEnvironment || !strings.Contains(kferr.Hint(err), "systemctl start docker") ||
		!strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("missing socket: %v (hint %q)", err, kferr.Hint(err))
	}
	perm := pingError("unix:///var/run/docker.sock", errors.New("permission denied while trying to connect to the Docker daemon socket"))
	if kferr.Code(perm) != kferr.ExitEnvironment || !strings.Contains(kferr.Hint(perm), "docker group") {
		t.Fatalf("permission: %v (hint %q)", perm, kferr.Hint(perm))
	}
}

func TestBindMounts(t *testing.T) {
	got := bindMounts([]provision.Mount{{HostPath: "/srv/data", ContainerPath: "/data"}, {HostPath: "/etc/x.conf", ContainerPath: "/etc/x.conf", ReadOnly: true}})
	want := []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/data", Target: "/data"},
		{Type: mount.TypeBind, Source: "/etc/x.conf", Target: "/etc/x.conf", ReadOnly: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bindMounts = %+v, want %+v", got, want)
	}
	cfg := provision.NodeConfig{Cluster: "c", Name: "c", Image: "img", IP: netip.MustParseAddr("192.168.49.2"),
		Network: provision.Network{Name: "kubeforge-c", Subnet: netip.MustParsePrefix("192.168.49.0/24")}}
	if err := validate(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Mounts = []provision.Mount{{HostPath: "data", ContainerPath: "/data"}}
	if err := validate(cfg); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative host path: %v", err)
	}
}

func TestCheckNodeLabels(t *testing.T) {
	lab := func(c, n string) map[string]string {
		return map[string]string{provision.LabelCluster: c, provision.LabelNode: n}
	}
	for _, tc := range []struct {
		labels map[string]string
		name   string
		ok     bool
	}{
		{lab("kf", "kf"), "kf", true},
		{lab("kf", "kf-m02"), "kf-m02", true},
		{lab("kf", "kf-lb"), "kf-lb", true},
		{lab("kf", "kf-m02"), "kf-m03", false}, // label is not the name
		{lab("..", ".."), "..", false},
		{lab("kf", "../kf"), "../kf", false},
		{lab("kf", ""), "", false},
		{lab("", "kf"), "kf", false},
		{map[string]string{provision.LabelCluster: "kf"}, "kf", false},
		{nil, "kf", false},
	} {
		if err := checkNodeLabels(tc.labels, tc.name); (err == nil) != tc.ok {
			t.Errorf("checkNodeLabels(%v, %q) = %v, want ok %v", tc.labels, tc.name, err, tc.ok)
		}
	}
}

func TestValidateNames(t *testing.T) {
	cfg := provision.NodeConfig{Cluster: "c", Name: "c-m02", Image: "img", IP: netip.MustParseAddr("192.168.49.3"),
		Network: provision.Network{Name: "kubeforge-c", Subnet: netip.MustParsePrefix("192.168.49.0/24")}}
	if err := validate(cfg); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]string{{"c", "d"}, {"..", "..-m02"}, {"c", "c/../x"}, {"C", "C"}, {"c", "c-" + strings.Repeat("x", 62)}} {
		cfg.Cluster, cfg.Name = bad[0], bad[1]
		if err := validate(cfg); err == nil || kferr.Code(err) != kferr.ExitUsage {
			t.Errorf("validate(cluster %q, node %q) = %v", bad[0], bad[1], err)
		}
	}
}

func TestSecurityOpt(t *testing.T) {
	// What --privileged implies on AppArmor and SELinux hosts, which a node cannot use.
	want := []string{"seccomp=unconfined", "apparmor=unconfined", "label=disable"}
	if !reflect.DeepEqual(SecurityOpt, want) {
		t.Errorf("SecurityOpt = %v, want %v", SecurityOpt, want)
	}
}
