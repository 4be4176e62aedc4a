package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

func tarball(t *testing.T, entries map[string]string) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range entries {
		if strings.HasSuffix(name, "/") {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755})
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	return &b
}

func TestUntar(t *testing.T) {
	dir := t.TempDir()
	err := untar(tarball(t, map[string]string{"kubeforge/": "", "kubeforge/kubelet.log": "k", "pods/a_b_1/c/0.log": "p"}), dir)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"kubeforge/kubelet.log": "k", "pods/a_b_1/c/0.log": "p"} {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", file, b, err)
		}
	}
	for _, bad := range []string{"../evil", "/etc/evil", "a/../../evil"} {
		if err := untar(tarball(t, map[string]string{bad: "x"}), t.TempDir()); err == nil {
			t.Errorf("entry %q was written", bad)
		}
	}
}

func TestTables(t *testing.T) {
	pods := []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns-x"},
		Spec:       corev1.PodSpec{NodeName: "dev", Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.3",
			ContainerStatuses: []corev1.ContainerStatus{{Ready: true, RestartCount: 2}}},
	}}
	if got := string(podTable(pods)); !strings.Contains(got, "coredns-x") || !strings.Contains(got, "1/1") || !strings.Contains(got, "10.244.0.3") {
		t.Errorf("pod table:\n%s", got)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	events := []corev1.Event{
		{Reason: "Second", LastTimestamp: metav1.NewTime(t0.Add(time.Minute))},
		{Reason: "First", EventTime: metav1.NewMicroTime(t0)},
	}
	got := string(eventTable(events))
	if strings.Index(got, "First") > strings.Index(got, "Second") {
		t.Errorf("events not oldest first:\n%s", got)
	}
}

// TestRunTimeout: a step that fails because the deadline passed (a Docker call cut short) is a
// timeout (exit 4), whatever error it returned.
func TestRunTimeout(t *testing.T) {
	p := &Provider{log: ui.Discard()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.runSteps(ctx, &build{}, []step{{name: "Node", run: func(ctx context.Context, _ *build) error {
		<-ctx.Done()
		return errors.New(`Get "http://docker/archive": context deadline exceeded`)
	}}}, true)
	if kferr.Code(err) != kferr.ExitTimeout || !strings.Contains(err.Error(), "timed out waiting") {
		t.Errorf("err %v (exit %d), want a timeout", err, kferr.Code(err))
	}
	// Without a deadline passed, a failure stays what it is.
	err = p.runSteps(context.Background(), &build{}, []step{{name: "Node", run: func(context.Context, *build) error { return errors.New("boom") }}}, true)
	if kferr.Code(err) != kferr.ExitInternal {
		t.Errorf("err %v (exit %d), want an internal failure", err, kferr.Code(err))
	}
}

func TestServiceProgrammed(t *testing.T) {
	rules := `*nat
-A KUBE-SEP-AAA -s 10.244.0.3/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAA -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.3:53
-A KUBE-SEP-BBB -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp" -m tcp -j DNAT --to-destination 10.244.0.9:53
-A KUBE-SVC-X -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SEP-AAA
COMMIT`
	if !serviceProgrammed(rules, dnsPortName, []string{"10.244.0.3"}, 53) {
		t.Error("the programmed endpoint was not found")
	}
	for _, ips := range [][]string{{"10.244.0.9"}, {"10.244.0.3", "10.244.1.2"}} {
		if serviceProgrammed(rules, dnsPortName, ips, 53) {
			t.Errorf("%v reported programmed (only 10.244.0.3 is, and 10.244.0.9 only for dns-tcp)", ips)
		}
	}
	if serviceProgrammed("", dnsPortName, []string{"10.244.0.3"}, 53) {
		t.Error("empty rules reported programmed")
	}
}

// exportNodeFake is a running node whose files and command outputs hold credentials.
type exportNodeFake struct {
	provision.Node
	name    string
	tarball []byte
}

func (n *exportNodeFake) Name() string { return n.name }
func (n *exportNodeFake) Role() string { return "control-plane" }
func (n *exportNodeFake) State(context.Context) (provision.State, error) {
	return provision.StateRunning, nil
}
func (n *exportNodeFake) Logs(_ context.Context, w io.Writer, _ bool) error {
	_, err := io.WriteString(w, "supervisor: containerd env HTTPS_PROXY=http://alice:s3cret@proxy.corp:3128\nsupervisor: started kubelet\n")
	return err
}
func (n *exportNodeFake) Inspect(context.Context) ([]byte, error) {
	return []byte(`{"Config":{"Env":["HTTP_PROXY=alice:s3cret@proxy.corp:3128","PATH=/usr/bin"],"Hostname":"dev"}}`), nil
}
func (n *exportNodeFake) Run(_ context.Context, cmd provision.Cmd) error {
	var out string
	switch cmd.Args[0] {
	case "tar":
		_, err := cmd.Stdout.Write(n.tarball)
		return err
	case "ps":
		out = "root 1 kubeadm join --token abcdef.0123456789abcdef --discovery-token-unsafe-skip-ca-verification\n"
	case "cat":
		out = `{"services":[{"name":"containerd","env":{"HTTP_PROXY":"http://alice:s3cret@proxy.corp:3128"}}]}`
	default:
		out = strings.Join(cmd.Args, " ") + ": ok\n"
	}
	_, err := io.WriteString(cmd.Stdout, out)
	return err
}

type exportDriverFake struct {
	provision.Driver
	nodes []provision.Node
}

func (d *exportDriverFake) Nodes(context.Context, string) ([]provision.Node, error) {
	return d.nodes, nil
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

// TestExportLogsRedacts: nothing of the credentials in the record, the node's files, command
// outputs and logs reaches the bundle, whose files are 0600 in 0700 directories.
func TestExportLogsRedacts(t *testing.T) {
	home := t.TempDir()
	rec := state.Record{Spec: spec.Cluster{Name: "dev", Driver: "docker", Proxy: spec.Proxy{
		HTTPProxy: "http://alice:s3cret@proxy.corp:3128", HTTPSProxy: "alice:s3cret@proxy.corp:3129", NoProxy: "localhost,.svc"},
		ExtraArgs: map[string]map[string]string{"kube-apiserver": {"oidc-client-secret": "s3cret", "v": "4"}}},
		Image: "kubeforge/node:dev", APIServerPort: 6443, Complete: true}
	dir0, _ := state.Home(home).Dir("dev")
	if err := dir0.Save(rec); err != nil {
		t.Fatal(err)
	}
	key := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIs3cret\n-----END EC PRIVATE KEY-----\n"
	kubeconfig := "apiVersion: v1\nusers:\n- name: admin\n  user:\n    client-certificate-data: czNjcmV0Cg==\n    client-key-data: czNjcmV0Cg==\n    token: s3cret\n"
	node := &exportNodeFake{name: "dev-control-plane", tarball: tarball(t, map[string]string{
		"kubeforge/":               "",
		"kubeforge/kubelet.log":    "I0101 kubelet.go:1] using bearer token s3cretTokenValue1234 for https://alice:s3cret@10.0.0.1:6443\n",
		"kubeforge/init.log":       "wrote key\n" + key + "wrote kubeconfig\n" + kubeconfig,
		"pods/ns_app_1/c/0.log":    `2026-01-01T00:00:00Z stdout F {"msg":"login","password":"s3cret"}` + "\n",
		"pods/ns_app_1/c/1.log.gz": gzipped("2026-01-01T00:00:00Z stderr F app --password=s3cret started\n"),
	}).Bytes()}
	p := &Provider{home: state.Home(home), log: ui.Discard()}
	c := &Cluster{p: p, name: "dev", dir: dir0, rec: rec, hasRec: true, driver: &exportDriverFake{nodes: []provision.Node{node}}}
	dir := filepath.Join(t.TempDir(), "bundle")
	// No API server (no super-admin.conf): that part fails, the rest is written.
	if err := c.ExportLogs(t.Context(), dir); err == nil || !strings.Contains(err.Error(), "no API access") {
		t.Errorf("export: %v", err)
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if want := fs.FileMode(0o600); d.IsDir() {
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", path, fi.Mode().Perm())
			}
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, filepath.ToSlash(rel))
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, leak := range []string{"s3cret", "alice", "0123456789abcdef", "MHcCAQEEI", "czNjcmV0"} {
			if strings.Contains(string(b), leak) {
				t.Errorf("%s holds %q:\n%s", rel, leak, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster.json", "dev-control-plane/console.log", "dev-control-plane/inspect.json", "dev-control-plane/ps.txt",
		"dev-control-plane/supervisor.json", "dev-control-plane/logs/kubeforge/kubelet.log", "dev-control-plane/logs/kubeforge/init.log",
		"dev-control-plane/logs/pods/ns_app_1/c/0.log", "dev-control-plane/logs/pods/ns_app_1/c/1.log"} {
		if !slices.Contains(files, want) {
			t.Errorf("no %s in the bundle: %v", want, files)
		}
	}
	// What is not a secret stays.
	b, _ := os.ReadFile(filepath.Join(dir, "cluster.json"))
	var got state.Record
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("cluster.json: %v\n%s", err, b)
	}
	px := got.Spec.Proxy
	if px.HTTPProxy != "http://REDACTED@proxy.corp:3128" || px.HTTPSProxy != "REDACTED@proxy.corp:3129" || px.NoProxy != "localhost,.svc" ||
		got.Spec.ExtraArgs["kube-apiserver"]["oidc-client-secret"] != "REDACTED" || got.Spec.ExtraArgs["kube-apiserver"]["v"] != "4" ||
		got.Image != rec.Image || got.APIServerPort != 6443 || !got.Complete || got.Spec.Name != "dev" {
		t.Errorf("cluster.json:\n%s", b)
	}
	for file, want := range map[string]string{
		"dev-control-plane/console.log":                "HTTPS_PROXY=http://REDACTED@proxy.corp:3128\nsupervisor: started kubelet",
		"dev-control-plane/ps.txt":                     "--token REDACTED --discovery-token-unsafe-skip-ca-verification",
		"dev-control-plane/logs/kubeforge/kubelet.log": "using bearer token REDACTED for https://REDACTED@10.0.0.1:6443",
		"dev-control-plane/logs/kubeforge/init.log":    "-----BEGIN EC PRIVATE KEY----- REDACTED -----END EC PRIVATE KEY-----\nwrote kubeconfig\napiVersion: v1\nusers:\n- name: admin\n  user:\n    client-certificate-data: REDACTED\n    client-key-data: REDACTED\n    token: REDACTED\n",
		"dev-control-plane/logs/pods/ns_app_1/c/0.log": `{"msg":"login","password":"REDACTED"}`,
		"dev-control-plane/logs/pods/ns_app_1/c/1.log": "app --password=REDACTED started",
		"dev-control-plane/inspect.json":               `"HTTP_PROXY=REDACTED@proxy.corp:3128"`,
		"dev-control-plane/supervisor.json":            `"HTTP_PROXY": "http://REDACTED@proxy.corp:3128"`,
		"dev-control-plane/containers.txt":             "crictl ps --all: ok",
	} {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: want %q in:\n%s (%v)", file, want, b, err)
		}
	}
}

// TestExportModesOverEarlierBundle: files and directories an earlier (looser) export left are
// made private when written again.
func TestExportModesOverEarlierBundle(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "n", "logs", "kubeforge")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "kubelet.log"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := untar(tarball(t, map[string]string{"kubeforge/kubelet.log": "token: abc"}), filepath.Join(dir, "n", "logs")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{filepath.Join(dir, "n", "logs"): 0o700, old: 0o700, filepath.Join(old, "kubelet.log"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(old, "kubelet.log")); string(b) != "token: REDACTED" {
		t.Errorf("kubelet.log: %q", b)
	}
}

// TestRedactedYAML: the API objects a bundle holds lose their credentials, field by field.
func TestRedactedYAML(t *testing.T) {
	pods := &corev1.PodList{Items: []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "app:1", Args: []string{"--token", "s3cret1", "--listen=:8080"},
			Env: []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "s3cret2"}, {Name: "HTTPS_PROXY", Value: "http://u:s3cret3@proxy:3128"}, {Name: "MODE", Value: "prod"}},
		}}},
	}}}
	secrets := &corev1.SecretList{Items: []corev1.Secret{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Data:       map[string][]byte{"password": []byte("s3cret4")},
		StringData: map[string]string{"user": "s3cret5"},
	}}}
	for _, obj := range []runtime.Object{pods, secrets} {
		b, err := redactedYAML(obj)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "czNjcmV0NA") {
			t.Errorf("secret left in:\n%s", b)
		}
	}
	b, _ := redactedYAML(secrets)
	if !strings.Contains(string(b), "password: REDACTED") || !strings.Contains(string(b), "user: REDACTED") || !strings.Contains(string(b), "name: db") {
		t.Errorf("secrets:\n%s", b)
	}
	b, _ = redactedYAML(pods)
	for _, keep := range []string{"- --token\n", "- --listen=:8080", "name: DB_PASSWORD\n        value: REDACTED", "http://REDACTED@proxy:3128", "value: prod", "image: app:1"} {
		if !strings.Contains(string(b), keep) {
			t.Errorf("no %q in:\n%s", keep, b)
		}
	}
}
