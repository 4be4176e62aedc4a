package containerd

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/services"
)

// get walks a decoded TOML document along keys.
func get(t *testing.T, doc map[string]any, keys ...string) any {
	t.Helper()
	var cur any = doc
	for i, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s is not a table", strings.Join(keys[:i], "."))
		}
		cur, ok = m[k]
		if !ok {
			t.Fatalf("missing %s", strings.Join(keys[:i+1], "."))
		}
	}
	return cur
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("generated config is not valid TOML: %v\n%s", err, b)
	}
	return doc
}

func TestContainerdConfigDefaults(t *testing.T) {
	b, err := ContainerdConfig(Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, b)
	rt := []string{"plugins", "io.containerd.cri.v1.runtime"}
	img := []string{"plugins", "io.containerd.cri.v1.images"}
	at := func(base []string, keys ...string) []string { return append(append([]string{}, base...), keys...) }
	checks := []struct {
		keys []string
		want any
	}{
		{[]string{"version"}, int64(3)},
		{[]string{"root"}, "/var/lib/containerd"},
		{[]string{"state"}, "/run/containerd"},
		{at(rt, "restrict_oom_score_adj"), true},
		{at(rt, "containerd", "default_runtime_name"), "runc"},
		{at(rt, "containerd", "runtimes", "runc", "runtime_type"), "io.containerd.runc.v2"},
		{at(rt, "containerd", "runtimes", "runc", "options", "SystemdCgroup"), false},
		{at(rt, "cni", "conf_dir"), "/etc/cni/net.d"},
		{at(img, "snapshotter"), "overlayfs"},
		{at(img, "discard_unpacked_layers"), false},
		{at(img, "pinned_images", "sandbox"), "kubeforge.local/pause:3.10"},
		{at(img, "registry", "config_path"), "/etc/containerd/certs.d"},
	}
	for _, c := range checks {
		if got := get(t, doc, c.keys...); got != c.want {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.keys, "."), got, c.want)
		}
	}
	bins := get(t, doc, at(rt, "cni", "bin_dirs")...).([]any)
	if len(bins) != 1 || bins[0] != "/usr/lib/cni" {
		t.Errorf("cni.bin_dirs = %v, want [/usr/lib/cni]", bins)
	}
	// containerd 1.x names (io.containerd.grpc.v1.cri) would be migrated but must not be used.
	if strings.Contains(string(b), "io.containerd.grpc.v1.cri") {
		t.Errorf("config uses the containerd 1.x CRI plugin ID:\n%s", b)
	}
}

func TestContainerdConfigOptionsAndEscaping(t *testing.T) {
	b, err := ContainerdConfig(Options{
		SandboxImage: "registry.example/pause:3.10",
		CNIBinDir:    `/opt/cni "odd" \bin`,
		CNIConfDir:   "/etc/cni/other",
		LogLevel:     "debug",
		Root:         "/var/lib/c2",
	})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, b)
	if got := get(t, doc, "plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"); got != "registry.example/pause:3.10" {
		t.Errorf("sandbox = %v", got)
	}
	if got := get(t, doc, "plugins", "io.containerd.cri.v1.runtime", "cni", "bin_dirs").([]any)[0]; got != `/opt/cni "odd" \bin` {
		t.Errorf("bin_dirs[0] = %q", got)
	}
	if got := get(t, doc, "debug", "level"); got != "debug" {
		t.Errorf("debug.level = %v", got)
	}
	if got := get(t, doc, "root"); got != "/var/lib/c2" {
		t.Errorf("root = %v", got)
	}
}

func TestContainerdConfigRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{CNIBinDir: "relative/dir"},
		{LogLevel: "loud"},
		{SandboxImage: "pause 3.10"},
	} {
		if _, err := ContainerdConfig(o); err == nil {
			t.Errorf("ContainerdConfig(%+v) accepted bad options", o)
		}
	}
}

func TestTOMLStringControlCharacters(t *testing.T) {
	s := "a\tb\nc\x01d\x7f\"\\é"
	var doc map[string]any
	if err := toml.Unmarshal([]byte("k = "+tomlString(s)+"\n"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["k"] != s {
		t.Errorf("round trip: got %q, want %q", doc["k"], s)
	}
}

func TestServices(t *testing.T) {
	svcs := Services(Options{HTTPProxy: "http://proxy:3128", NoProxy: "10.0.0.0/8"})
	cfg := &services.Config{Services: append(svcs, services.Service{
		Name: "kubelet", Path: "/usr/local/bin/kubeforge-node", After: []string{ServiceContainerd, ServiceImportImages},
	})}
	// What the host writes must pass the supervisor's own strict parsing.
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := services.ParseConfig(b)
	if err != nil {
		t.Fatalf("supervisor rejects the runtime services: %v\n%s", err, b)
	}
	levels, err := parsed.Levels()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"containerd"}, {"import-addon-images", "import-images"}, {"kubelet"}}
	if gotJSON, wantJSON := mustJSON(levels), mustJSON(want); gotJSON != wantJSON {
		t.Errorf("levels = %s, want %s", gotJSON, wantJSON)
	}
	c := parsed.Service(ServiceContainerd)
	if c.Path != ContainerdPath || c.ReadyPath != contract.ContainerdSocket || c.Restart != services.RestartAlways {
		t.Errorf("containerd service = %+v", c)
	}
	if strings.Join(c.Args, " ") != "--config /etc/containerd/config.toml" {
		t.Errorf("containerd args = %v", c.Args)
	}
	if c.Env["HTTP_PROXY"] != "http://proxy:3128" || c.Env["http_proxy"] != "http://proxy:3128" || c.Env["NO_PROXY"] != "10.0.0.0/8" {
		t.Errorf("containerd env = %v", c.Env)
	}
	if _, ok := c.Env["HTTPS_PROXY"]; ok {
		t.Errorf("unset proxy in env: %v", c.Env)
	}
	imp := parsed.Service(ServiceImportImages)
	if !imp.Oneshot || imp.DoneMarker != "/var/lib/kubeforge/images-imported" || imp.DoneKey != "/kubeforge/images/boot/*.tar" {
		t.Errorf("import service = %+v", imp)
	}
	addons := parsed.Service(ServiceImportAddonImages)
	if !addons.Oneshot || addons.DoneMarker != "/var/lib/kubeforge/addon-images-imported" || addons.DoneKey != "/kubeforge/images/*.tar" || addons.Args[3] != "/kubeforge/images" {
		t.Errorf("addon import service = %+v", addons)
	}
	if len(ContainerdService(Options{}).Env) != 0 {
		t.Errorf("no proxy options should mean no env")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestImportScript runs the import script with a fake ctr to check the command line it builds
// for each archive (archives are imported concurrently), that an empty directory is not an error,
// and that one failed import fails the script.
func TestImportScript(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Fatal("needs /bin/sh")
	}
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeCtr := filepath.Join(dir, "ctr")
	calls := filepath.Join(dir, "calls")
	if err := os.WriteFile(fakeCtr, []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(importScript, CtrPath, fakeCtr)
	run := func() string {
		out, err := exec.Command("/bin/sh", "-c", script, "kubeforge-import-images", images).CombinedOutput()
		if err != nil {
			t.Fatalf("import script: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "imported 0 image archive(s)") {
		t.Errorf("empty dir output: %s", out)
	}
	for _, n := range []string{"b.tar", "a b.tar", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(images, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out := run(); !strings.Contains(out, "imported 2 image archive(s)") {
		t.Errorf("output: %s", out)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	sort.Strings(lines)
	got := strings.Join(lines, "")
	want := "--address /run/containerd/containerd.sock --namespace k8s.io images import --all-platforms " + images + "/a b.tar\n" +
		"--address /run/containerd/containerd.sock --namespace k8s.io images import --all-platforms " + images + "/b.tar\n"
	if got != want {
		t.Errorf("ctr calls:\n%s\nwant:\n%s", got, want)
	}

	failing := strings.ReplaceAll(importScript, CtrPath, filepath.Join(dir, "failing-ctr"))
	if err := os.WriteFile(filepath.Join(dir, "failing-ctr"), []byte("#!/bin/sh\ncase \"$*\" in *a\\ b.tar) exit 3;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/sh", "-c", failing, "kubeforge-import-images", images).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "1 of 2 image archive(s)") {
		t.Errorf("a failed import: err %v, output %s", err, out)
	}
}

// The local registry's hosts.toml files: one per name, valid TOML in containerd's hosts format,
// plain HTTP to the registry's address with pull and resolve only.
func TestRegistryHosts(t *testing.T) {
	m := RegistryMirror{Addr: netip.MustParseAddrPort("192.168.49.252:5000"), HostName: "localhost:5001", Alias: "kubeforge-registry:5000"}
	files, err := RegistryHosts("", m)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("got %d files, want 2: %v", len(files), files)
	}
	for _, p := range []string{"/etc/containerd/certs.d/localhost:5001/hosts.toml", "/etc/containerd/certs.d/kubeforge-registry:5000/hosts.toml"} {
		var doc struct {
			Server string `toml:"server"`
			Host   map[string]struct {
				Capabilities []string `toml:"capabilities"`
				SkipVerify   *bool    `toml:"skip_verify"`
			} `toml:"host"`
		}
		if err := toml.Unmarshal(files[p], &doc); err != nil {
			t.Fatalf("%s: %v\n%s", p, err, files[p])
		}
		h, ok := doc.Host["http://192.168.49.252:5000"]
		if doc.Server != "http://192.168.49.252:5000" || !ok || strings.Join(h.Capabilities, ",") != "pull,resolve" || h.SkipVerify != nil || len(doc.Host) != 1 {
			t.Errorf("%s: %+v\n%s", p, doc, files[p])
		}
	}
	for _, bad := range []RegistryMirror{
		{Addr: netip.AddrPort{}, HostName: "localhost:5001"},
		{Addr: m.Addr, HostName: "../etc"},
		{Addr: m.Addr, HostName: `a"b`},
	} {
		if _, err := RegistryHosts("", bad); err == nil {
			t.Errorf("RegistryHosts(%+v): want an error", bad)
		}
	}
}
