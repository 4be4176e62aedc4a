//go:build e2e

package e2e

// The safety tests of issue 14: what kubeforge must never do to the user's files, to other
// clusters or to itself, whatever the user (or another kubeforge) does at the same time. One test
// per class of problem, all named TestSafety*: `make e2e E2E_PKGS=./test/e2e/ E2E_RUN=TestSafety`.
//
// Clusters: the tests that only look at a running cluster share one (sharedOne: kfs-one, one
// node, started with a proxy password in its environment; sharedTwo: kfs-two, two nodes). The
// last test of each group in this file takes the cluster over and deletes it, asserting nothing
// is left; when -run leaves that test out, TestMain deletes the cluster. Every other test makes
// and deletes its own.
//
// TestSafetyDeleteAllHostileLabel runs `kubeforge delete --all`, which deletes every cluster in
// the Docker daemon (not only this test's): it comes before the shared clusters are made, and it
// skips itself when Docker holds any cluster it did not make (another test's, or a developer's).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/test/kfcli"
)

const clusterLabel = "dev.kubeforge.cluster"

// proxyPassword is the password of the proxy URL sharedOne starts with: no exported file may
// hold it.
const proxyPassword = "kfs-pw-5ecret-7431"

var proxyEnv = []string{
	"HTTP_PROXY=http://kfsuser:" + proxyPassword + "@127.0.0.1:3128",
	"HTTPS_PROXY=http://kfsuser:" + proxyPassword + "@127.0.0.1:3128",
	"NO_PROXY=127.0.0.1,localhost",
}

var (
	sharedOne = &sharedCluster{name: "kfs-one", nodes: 1, env: proxyEnv}
	sharedTwo = &sharedCluster{name: "kfs-two", nodes: 2}
)

// TestMain deletes the shared clusters the tests left (when -run left out the test that takes
// each over); a failure to delete one fails the run.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*sharedCluster{sharedOne, sharedTwo} {
		if err := s.teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: deleting shared cluster %s: %v\n", s.name, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// sharedCluster is a cluster several tests use, started by the first of them, with a state
// directory and kubeconfig of its own that outlive the test that started it.
type sharedCluster struct {
	name  string
	nodes int
	env   []string // the environment of its start

	mu      sync.Mutex
	dir     string // holds its KUBEFORGE_HOME and KUBECONFIG
	cli     *kfcli.CLI
	started bool   // a start ran: something may exist
	failed  string // why that start failed
}

// get returns an env of the running shared cluster for t, starting the cluster if needed.
func (s *sharedCluster) get(ctx context.Context, t *testing.T) *env {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli == nil {
		dir, err := os.MkdirTemp("", "kubeforge-e2e-"+s.name+"-")
		if err != nil {
			t.Fatal(err)
		}
		if s.cli, err = kfcli.New(dir, "make e2e"); err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		s.dir = dir
	}
	e := envOf(t, s.cli)
	if s.failed != "" {
		t.Fatalf("the shared cluster %s did not start: %s", s.name, s.failed)
	}
	if !s.started {
		s.started = true
		r := e.run(ctx, s.env, "start", "--name", s.name, "--nodes", fmt.Sprint(s.nodes))
		if r.Code != 0 {
			s.failed = r.String()
			t.Fatalf("starting the shared cluster %s: %v", s.name, r)
		}
	}
	return e
}

// take is get, and t becomes the owner: it must delete the cluster (its state directory is
// removed when t ends, after a last `kubeforge delete`). A later get starts a new cluster.
func (s *sharedCluster) take(ctx context.Context, t *testing.T) *env {
	t.Helper()
	e := s.get(ctx, t)
	s.mu.Lock()
	dir := s.dir
	s.cli, s.dir, s.started, s.failed = nil, "", false, ""
	s.mu.Unlock()
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.cleanupCluster(s.name)
	return e
}

// teardown deletes the cluster if a test started it and none took it over.
func (s *sharedCluster) teardown() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli == nil {
		return nil
	}
	defer os.RemoveAll(s.dir)
	if !s.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	r, err := s.cli.Run(ctx, nil, "delete", "--name", s.name)
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("kubeforge delete: %v", r)
	}
	errs = append(errs, err)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer cli.Close()
	left, err := forceRemove(ctx, cli, s.name)
	if err != nil || len(left) > 0 {
		errs = append(errs, fmt.Errorf("delete left %v, removed by the test (%v)", left, err))
	}
	return errors.Join(errs...)
}

// envOf is an env for t running cli (a state directory and kubeconfig not t's own).
func envOf(t *testing.T, cli *kfcli.CLI) *env {
	t.Helper()
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	return &env{CLI: cli, t: t, docker: dc}
}

// ownedBy lists the containers, networks and volumes labelled as cluster name's.
func ownedBy(ctx context.Context, cli *client.Client, name string) ([]string, error) {
	f := filters.NewArgs(filters.Arg("label", clusterLabel+"="+name))
	var left []string
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		left = append(left, "network "+n.Name)
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	for _, v := range vs.Volumes {
		left = append(left, "volume "+v.Name)
	}
	return left, nil
}

// goStack matches what a Go panic or stack trace prints: the goroutine header, panic:, runtime
// errors and frames ("\tpath/file.go:123 +0x1f"). A component's log line quoted in an error
// (klog's "reconciler.go:251]") is not a frame.
var goStack = regexp.MustCompile(`(?m)goroutine \d+ \[|panic:|runtime/|runtime error|^[ \t]+\S+\.go:\d+( \+0x[0-9a-f]+)?[ \t]*$`)

// noStack fails t when kubeforge's output shows a Go panic or stack trace.
func noStack(t *testing.T, what string, r result) {
	t.Helper()
	if m := goStack.FindString(r.Stdout + r.Stderr); m != "" {
		t.Errorf("%s printed Go stack/panic text %q: %v", what, m, r)
	}
}

// failsCleanly checks a failed run: non-zero, an `Error:` line, no Go stack.
func failsCleanly(t *testing.T, what string, r result) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("%s succeeded, want a failure: %v", what, r)
		return
	}
	if !strings.Contains(r.Stderr, "Error:") {
		t.Errorf("%s: no `Error:` line: %v", what, r)
	}
	noStack(t, what, r)
}

// nothingLeft checks that cluster name has no Docker objects, no state directory and no context
// in the kubeconfig.
func (e *env) nothingLeft(ctx context.Context, name string) {
	e.t.Helper()
	if left := e.owned(ctx, name); len(left) > 0 {
		e.t.Errorf("left of cluster %s: %v", name, left)
	}
	if _, err := e.docker.VolumeInspect(ctx, name+"-var"); err == nil {
		e.t.Errorf("volume %s-var is left", name)
	}
	if _, err := os.Lstat(filepath.Join(e.Home, name)); !errors.Is(err, fs.ErrNotExist) {
		e.t.Errorf("state directory %s is left (%v)", filepath.Join(e.Home, name), err)
	}
	if kc, err := clientcmd.LoadFromFile(e.Kubeconfig); err == nil {
		if _, ok := kc.Contexts[name]; ok {
			e.t.Errorf("context %s is left in %s", name, e.Kubeconfig)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		e.t.Errorf("reading %s: %v", e.Kubeconfig, err)
	}
}

// cleanupCluster deletes cluster name when the test ends, however it ends. When kubeforge cannot
// delete it, or leaves something, that is an error, and the test removes the cluster's labelled
// Docker objects itself so that nothing is left in the shared Docker daemon.
func (e *env) cleanupCluster(name string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r, err := e.Run(ctx, nil, "delete", "--name", name)
		if err == nil && r.Code != 0 {
			err = fmt.Errorf("%v", r)
		}
		if err != nil {
			e.t.Errorf("cleanup: kubeforge delete --name %s: %v", name, err)
		}
		if left, err := forceRemove(ctx, e.docker, name); err != nil || len(left) > 0 {
			e.t.Errorf("cleanup: kubeforge delete --name %s left %v, removed by the test (%v)", name, left, err)
		}
		os.RemoveAll(filepath.Join(e.Home, name))
	})
}

// forceRemove removes the containers, networks and volumes labelled as cluster name's, and
// returns what it found.
func forceRemove(ctx context.Context, cli *client.Client, name string) ([]string, error) {
	left, err := ownedBy(ctx, cli, name)
	if err != nil || len(left) == 0 {
		return left, err
	}
	f := filters.NewArgs(filters.Arg("label", clusterLabel+"="+name))
	var errs []error
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	errs = append(errs, err)
	for _, c := range cs {
		errs = append(errs, cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}))
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, n := range ns {
		errs = append(errs, cli.NetworkRemove(ctx, n.ID))
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	errs = append(errs, err)
	for _, v := range vs.Volumes {
		errs = append(errs, cli.VolumeRemove(ctx, v.Name, true))
	}
	return left, errors.Join(errs...)
}

// deleteLeavesNothing runs `kubeforge delete` (exit 0) and checks that nothing of name is left.
func (e *env) deleteLeavesNothing(ctx context.Context, name string) {
	e.t.Helper()
	r := e.run(ctx, nil, "delete", "--name", name)
	if r.Code != 0 {
		e.t.Errorf("kubeforge delete --name %s: %v", name, r)
	}
	noStack(e.t, "delete", r)
	e.nothingLeft(ctx, name)
}

// record reads cluster name's cluster.json.
func (e *env) record(name string) (rec struct {
	Images []string `json:"images"`
	Spec   struct {
		Nodes []struct {
			Name string `json:"name"`
		} `json:"nodes"`
	} `json:"spec"`
}) {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Home, name, "cluster.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		e.t.Fatalf("cluster.json of %s: %v", name, err)
	}
	return rec
}

// nodeList is `kubeforge node list -o json`.
func (e *env) nodeList(ctx context.Context, name string) []struct{ Name, Machine, Status string } {
	e.t.Helper()
	var list []struct{ Name, Machine, Status string }
	r := e.ok(ctx, "node", "list", "--name", name, "-o", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		e.t.Fatalf("node list -o json: %v: %v", err, r)
	}
	return list
}

// TestSafetyNoGoStack: bad invocations (unknown flags, names that are not DNS labels, clusters
// that do not exist) fail with their exit code and an `Error:` line, never a Go stack; nothing is
// made, and a name like `..` reaches nothing outside the state directory.
func TestSafetyNoGoStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := newEnv(t)
	tmp := filepath.Dir(e.Home)
	canary := filepath.Join(tmp, "canary")
	if err := os.WriteFile(canary, []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(tmp, "snapshot.db")
	if err := os.WriteFile(snap, []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	const missing = "kfs-nothere"
	const (
		usage  = 2  // exit 2
		absent = -2 // a missing cluster: 2 (usage) or 3 (environment), never 1 (internal)
		zero   = 0
	)
	cases := []struct {
		args []string
		code int
	}{
		// Unknown flags.
		{[]string{"start", "--bogus"}, usage},
		{[]string{"status", "--bogus"}, usage},
		{[]string{"node", "add", "--bogus"}, usage},
		{[]string{"export", "logs", "--bogus", out}, usage},
		{[]string{"etcd", "snapshot", "save", "--bogus", snap}, usage},
		{[]string{"image", "load", "--bogus", "x:1"}, usage},
		{[]string{"start", "--nodes", "many"}, usage},
		// Names that are not cluster names.
		{[]string{"start", "--name", ".."}, usage},
		{[]string{"start", "--name", "A"}, usage},
		{[]string{"start", "--name", "../x"}, usage},
		{[]string{"status", "--name", ".."}, usage},
		{[]string{"stop", "--name", ".."}, usage},
		{[]string{"delete", "--name", ".."}, usage},
		{[]string{"delete", "--name", "A"}, usage},
		{[]string{"delete", "--name", "../home"}, usage},
		{[]string{"node", "add", "--name", ".."}, usage},
		{[]string{"node", "list", "--name", "A"}, usage},
		{[]string{"logs", "--name", ".."}, usage},
		{[]string{"ssh", "--name", ".."}, usage},
		{[]string{"export", "logs", "--name", "..", out}, usage},
		{[]string{"etcd", "snapshot", "save", "--name", "..", snap}, usage},
		{[]string{"image", "load", "--name", "..", "x:1"}, usage},
		{[]string{"service", "web", "--name", ".."}, usage},
		{[]string{"kubeconfig", "--name", ".."}, usage},
		{[]string{"kubectl", "--name", "..", "--", "get", "pods"}, usage},
		// A cluster that does not exist.
		{[]string{"status", "--name", missing}, absent},
		{[]string{"stop", "--name", missing}, absent},
		{[]string{"delete", "--name", missing}, zero}, // idempotent
		{[]string{"node", "add", "--name", missing}, absent},
		{[]string{"node", "list", "--name", missing}, absent},
		{[]string{"node", "delete", missing + "-m02", "--name", missing}, absent},
		{[]string{"node", "stop", missing + "-m02", "--name", missing}, absent},
		{[]string{"node", "start", missing + "-m02", "--name", missing}, absent},
		{[]string{"logs", "--name", missing}, absent},
		{[]string{"ssh", "--name", missing}, absent},
		{[]string{"ssh", "--name", missing, "--", "true"}, absent},
		{[]string{"export", "logs", "--name", missing, out}, absent},
		{[]string{"etcd", "snapshot", "save", "--name", missing, snap}, absent},
		{[]string{"etcd", "snapshot", "restore", "--name", missing, snap}, absent},
		{[]string{"image", "load", "--name", missing, "x:1"}, absent},
		{[]string{"image", "ls", "--name", missing}, absent},
		{[]string{"service", "web", "--name", missing}, absent},
		{[]string{"kubeconfig", "--name", missing}, absent},
		{[]string{"kubectl", "--name", missing, "--", "get", "pods"}, absent},
	}
	for _, c := range cases {
		what := "kubeforge " + strings.Join(c.args, " ")
		r := e.run(ctx, nil, c.args...)
		noStack(t, what, r)
		switch c.code {
		case zero:
			if r.Code != 0 {
				t.Errorf("%s: want exit 0: %v", what, r)
			}
			continue
		case usage:
			if r.Code != 2 {
				t.Errorf("%s: exit %d, want 2 (usage): %v", what, r.Code, r)
			}
		case absent:
			if r.Code != 2 && r.Code != 3 {
				t.Errorf("%s: exit %d, want 2 (usage) or 3 (environment) for a cluster that does not exist: %v", what, r.Code, r)
			}
		}
		if !strings.Contains(r.Stderr, "Error:") {
			t.Errorf("%s: no `Error:` line: %v", what, r)
		}
	}
	if b, err := os.ReadFile(canary); err != nil || string(b) != "still here" {
		t.Errorf("the file next to $KUBEFORGE_HOME is gone or changed: %q %v", b, err)
	}
	if _, err := os.Stat(e.Home); err != nil {
		t.Errorf("$KUBEFORGE_HOME is gone: %v", err)
	}
	for _, n := range []string{missing, "x", "home"} {
		if _, err := os.Lstat(filepath.Join(e.Home, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a refused command made %s (%v)", filepath.Join(e.Home, n), err)
		}
		if left := e.owned(ctx, n); len(left) > 0 {
			t.Errorf("a refused command made %v", left)
		}
	}
	if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused export logs made %s (%v)", out, err)
	}
}

// TestSafetyDeleteAllHostileLabel: Docker objects labelled with a cluster name that is not one
// (`..`: it would name the parent of $KUBEFORGE_HOME) are not kubeforge's: `delete --all` leaves
// them and everything around the state directory alone.
func TestSafetyDeleteAllHostileLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newEnv(t)

	// delete --all deletes every cluster of the Docker daemon: not with anyone else's there.
	all := filters.NewArgs(filters.Arg("label", clusterLabel))
	var foreign []string
	cs, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: all})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		foreign = append(foreign, "container "+strings.Join(c.Names, ",")+" of "+c.Labels[clusterLabel])
	}
	ns, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: all})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		foreign = append(foreign, "network "+n.Name+" of "+n.Labels[clusterLabel])
	}
	vs, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: all})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		foreign = append(foreign, "volume "+v.Name+" of "+v.Labels[clusterLabel])
	}
	if len(foreign) > 0 {
		msg := fmt.Sprintf("Docker holds kubeforge objects this test did not make, which `kubeforge delete --all` would delete: %v", foreign)
		if os.Getenv("KUBEFORGE_E2E_CI") != "" {
			t.Fatal(msg + " (in CI every earlier test must leave nothing)")
		}
		t.Skip(msg)
	}

	tmp := filepath.Dir(e.Home) // what `..` names from the state directory
	canary := filepath.Join(tmp, "canary")
	if err := os.WriteFile(canary, []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	homeCanary := filepath.Join(e.Home, "not-a-cluster")
	if err := os.WriteFile(homeCanary, []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	image := strings.TrimSpace(e.ok(ctx, "image", "build").Stdout) // local: nothing is pulled
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	hostile := map[string]string{clusterLabel: "..", "dev.kubeforge.node": "..", "dev.kubeforge.role": "control-plane"}
	ctr, err := e.docker.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"true"}, Labels: hostile},
		nil, nil, nil, "kfs-hostile-"+suffix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.docker.ContainerRemove(context.Background(), ctr.ID, container.RemoveOptions{Force: true})
	})
	vol, err := e.docker.VolumeCreate(ctx, volume.CreateOptions{Name: "kfs-hostile-" + suffix + "-var", Labels: hostile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.docker.VolumeRemove(context.Background(), vol.Name, true) })

	r := e.run(ctx, nil, "delete", "--all")
	noStack(t, "delete --all", r)
	if r.Code != 0 {
		t.Errorf("delete --all with nothing of kubeforge's: %v", r)
	}
	for _, f := range []string{canary, homeCanary} {
		if b, err := os.ReadFile(f); err != nil || string(b) != "still here" {
			t.Errorf("%s is gone or changed after delete --all: %q %v", f, b, err)
		}
	}
	if _, err := e.docker.ContainerInspect(ctx, ctr.ID); err != nil {
		t.Errorf("the container labelled %s=.. was removed by delete --all: %v", clusterLabel, err)
	}
	if _, err := e.docker.VolumeInspect(ctx, vol.Name); err != nil {
		t.Errorf("the volume labelled %s=.. was removed by delete --all: %v", clusterLabel, err)
	}
	for _, args := range [][]string{{"list"}, {"list", "-o", "json"}} {
		r := e.run(ctx, nil, args...)
		noStack(t, "list", r)
		if r.Code != 0 || strings.Contains(r.Stdout, `".."`) || regexp.MustCompile(`(?m)^\.\.\s`).MatchString(r.Stdout) {
			t.Errorf("kubeforge %v with a hostile label around: %v", args, r)
		}
	}
}

// TestSafetyKubectlConfigEdits: after `kubeforge start`, kubectl can edit the kubeconfig (no
// `<kubeconfig>.lock` is left to make it fail with "file exists").
func TestSafetyKubectlConfigEdits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.get(ctx, t)
	name := sharedOne.name
	lock := e.Kubeconfig + ".lock"
	noLock := func(when string) {
		t.Helper()
		if _, err := os.Lstat(lock); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s %s exists (%v): kubectl's config edits fail while it does", when, lock, err)
		}
	}
	noLock("after kubeforge start,")

	type kubectl struct {
		what string
		run  func(args ...string) result
	}
	kubectls := []kubectl{{"kubeforge kubectl", func(args ...string) result {
		return e.run(ctx, nil, append([]string{"kubectl", "--name", name, "--", "--kubeconfig", e.Kubeconfig}, args...)...)
	}}}
	if path, err := exec.LookPath("kubectl"); err == nil {
		kubectls = append(kubectls, kubectl{path, func(args ...string) result {
			cmd := exec.CommandContext(ctx, path, args...)
			cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			r := result{Stdout: out.String(), Stderr: errb.String()}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				r.Code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return r
		}})
	} else {
		t.Logf("no kubectl on PATH: only the built-in one is tried")
	}
	for _, k := range kubectls {
		for _, ns := range []string{"x", "default"} {
			for _, args := range [][]string{{"config", "use-context", name}, {"config", "set-context", "--current", "--namespace=" + ns}} {
				if r := k.run(args...); r.Code != 0 {
					t.Errorf("%s %s: %v", k.what, strings.Join(args, " "), r)
				}
			}
			kc, err := clientcmd.LoadFromFile(e.Kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			if kc.CurrentContext != name || kc.Contexts[name] == nil || kc.Contexts[name].Namespace != ns {
				t.Errorf("after %s: current context %q, context %s %+v; want it current with namespace %s", k.what, kc.CurrentContext, name, kc.Contexts[name], ns)
			}
		}
		noLock("after " + k.what + " config edits,")
	}
	// The cluster still answers through the edited context.
	if names := readyNodeNames(ctx, t, e.clientset(name)); len(names) == 0 {
		t.Errorf("no Ready node through the edited context")
	}
}

// TestSafetyExportLogsRedaction: `export logs` of a cluster started behind a proxy with a
// password holds no password, and every file and directory it writes is private.
func TestSafetyExportLogsRedaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.get(ctx, t)
	name := sharedOne.name
	dir := filepath.Join(t.TempDir(), "export")
	r := e.run(ctx, nil, "export", "logs", "--name", name, dir)
	if r.Code != 0 {
		t.Errorf("export logs: %v", r)
	}
	noStack(t, "export logs", r)
	if strings.Contains(r.Stdout+r.Stderr, proxyPassword) {
		t.Errorf("export logs printed the proxy password: %v", r)
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case fi.IsDir():
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("directory %s: mode %v, want 0700", rel, fi.Mode().Perm())
			}
		case fi.Mode().IsRegular():
			files++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("file %s: mode %v, want 0600", rel, fi.Mode().Perm())
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if i := bytes.Index(b, []byte(proxyPassword)); i >= 0 {
				t.Errorf("file %s holds the proxy password: ...%s...", rel, b[max(0, i-60):min(len(b), i+len(proxyPassword)+20)])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, name, "console.log")); err != nil || files < 5 {
		t.Errorf("export logs wrote %d files and no %s/console.log (%v)", files, name, err)
	}
}

// TestSafetyFailedImageLoad: an image that could not be loaded is not recorded as loaded, so a
// node added later does not try (and warn about) it; a loaded one is.
func TestSafetyFailedImageLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.get(ctx, t)
	name := sharedOne.name
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	const bad = "does-not-exist:1"
	failsCleanly(t, "image load "+bad, e.run(ctx, nil, "image", "load", "--name", name, bad))
	rec := e.record(name)
	if slices.Contains(rec.Images, bad) {
		t.Errorf("cluster.json records %s, which was not loaded: images %v", bad, rec.Images)
	}
	if !slices.Contains(rec.Images, BusyboxImage) {
		t.Errorf("cluster.json does not record %s, which was loaded: images %v", BusyboxImage, rec.Images)
	}
	r := e.run(ctx, nil, "node", "add", "--name", name)
	if r.Code != 0 {
		t.Fatalf("node add: %v", r)
	}
	if out := r.Stdout + r.Stderr; strings.Contains(out, "does-not-exist") || strings.Contains(out, "lacks some of the images") {
		t.Errorf("node add warned about an image that was never loaded: %v", r)
	}
}

// TestSafetyParallelNodeAdd: two `node add`s at once both succeed with distinct nodes, and the
// record keeps both.
func TestSafetyParallelNodeAdd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.get(ctx, t)
	name := sharedOne.name
	before := map[string]bool{}
	for _, n := range e.nodeList(ctx, name) {
		before[n.Name] = true
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run(ctx, nil, "node", "add", "--name", name, "-o", "json")
		}()
	}
	wg.Wait()
	var added []string
	for i, r := range results {
		noStack(t, "node add", r)
		var n struct{ Name string }
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &n) != nil || n.Name == "" {
			t.Errorf("node add #%d: %v", i+1, r)
			continue
		}
		added = append(added, n.Name)
	}
	if len(added) == 2 && added[0] == added[1] {
		t.Errorf("both node adds report node %s", added[0])
	}
	list := e.nodeList(ctx, name)
	var now []string
	for _, n := range list {
		now = append(now, n.Name)
	}
	for _, a := range added {
		if before[a] {
			t.Errorf("node add reported %s, which existed before", a)
		}
		i := slices.IndexFunc(list, func(n struct{ Name, Machine, Status string }) bool { return n.Name == a })
		if i < 0 || list[i].Machine != "running" || list[i].Status != "Ready" {
			t.Errorf("node %s in node list: %+v", a, list)
		}
	}
	if len(list) != len(before)+2 {
		t.Errorf("node list has %v, want %d nodes (%d before, 2 added)", now, len(before)+2, len(before))
	}
	var recorded []string
	for _, n := range e.record(name).Spec.Nodes {
		recorded = append(recorded, n.Name)
	}
	for _, n := range now {
		if !slices.Contains(recorded, n) {
			t.Errorf("node %s is not in cluster.json (nodes %v): a concurrent node add lost it", n, recorded)
		}
	}
}

// TestSafetyInterruptedFollow: Ctrl-C (SIGINT) during `kubeforge ssh NODE -- CMD` and `kubeforge
// logs -f` (a node service's log: tail -F; a pod component's: crictl logs --follow) ends
// kubeforge within seconds, and leaves no process of the command running in the node. `ssh`
// exits 130 ("interrupted"); `logs -f` exits 0 (an interrupt is how a follow ends).
func TestSafetyInterruptedFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.get(ctx, t)
	name := sharedOne.name
	node := name // the first node is named after the cluster

	// inNode lists the node's processes whose command line holds s.
	inNode := func(e *env, s string) []string {
		e.t.Helper()
		r := e.run(ctx, nil, "ssh", "--name", name, node, "--", "ps", "-eo", "args")
		if r.Code != 0 {
			e.t.Fatalf("ps in node %s: %v", node, r)
		}
		var found []string
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.Contains(l, s) {
				found = append(found, strings.TrimSpace(l))
			}
		}
		return found
	}
	cases := []struct {
		what   string
		args   []string
		marker string // in the command line of the command it runs in the node
		code   int    // kubeforge's exit status after the interrupt
	}{
		{"ssh -- sleep 600", []string{"ssh", "--name", name, node, "--", "sleep", "600"}, "sleep 600", 130},
		{"logs -f of the kubelet", []string{"logs", "--name", name, "--component", "kubelet", "-f", "--tail", "5"}, "tail -n 5 -F", 0},
		{"logs -f of kube-apiserver", []string{"logs", "--name", name, "--component", "kube-apiserver", "-f", "--tail", "5"}, "crictl logs --tail=5 --follow", 0},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			e := e.sub(t)
			if left := inNode(e, c.marker); len(left) > 0 {
				t.Fatalf("before the test, node %s already runs %q", node, left)
			}
			p := e.background(c.args...)
			// Interrupt once the command runs in the node.
			deadline := time.Now().Add(time.Minute)
			for len(inNode(e, c.marker)) == 0 {
				select {
				case <-p.done:
					t.Fatalf("kubeforge %s ended before its command ran in the node: %v", strings.Join(c.args, " "), p.result())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %q in node %s a minute after kubeforge %s started: %v", c.marker, node, strings.Join(c.args, " "), p.result())
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			if !p.exited(10 * time.Second) {
				t.Fatalf("kubeforge %s still running 10s after the interrupt: %v", strings.Join(c.args, " "), p.result())
			}
			r := p.result()
			t.Logf("exited %.1fs after the interrupt: %v", time.Since(sent).Seconds(), r)
			noStack(t, c.what, r)
			if r.Code != c.code {
				t.Errorf("interrupted %s: exit %d, want %d", c.what, r.Code, c.code)
			}
			if out := strings.ToLower(r.Stderr); c.code == 130 && (!strings.Contains(out, "interrupted") || strings.Contains(out, "context canceled")) {
				t.Errorf("interrupted %s: want \"interrupted\", not \"context canceled\": %v", c.what, r)
			}
			// The driver stops the command in the node before kubeforge returns.
			if left := inNode(e, c.marker); len(left) > 0 {
				t.Errorf("after the interrupt of %s, node %s still runs %q", c.what, node, left)
			}
		})
	}
}

// TestSafetyCorruptRecordDelete: with cluster.json damaged, status says so (or reports what it
// can) and delete still removes the whole cluster.
func TestSafetyCorruptRecordDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedOne.take(ctx, t)
	name := sharedOne.name
	if err := os.WriteFile(filepath.Join(e.Home, name, "cluster.json"), []byte("{\"spec\": garbage\x00\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run(ctx, nil, "status", "--name", name)
	noStack(t, "status", r)
	if r.Code != 0 && (!strings.Contains(r.Stderr, "Error:") || !strings.Contains(r.Stderr, "cluster.json") || !strings.Contains(r.Stderr, "Fix:")) {
		t.Errorf("status of a cluster with a damaged cluster.json: want a status, or an error naming cluster.json with a Fix: line: %v", r)
	}
	e.deleteLeavesNothing(ctx, name)
}

// TestSafetyCollidingName: a cluster whose name is another cluster's machine name
// (<x>-m02, <x>-lb) is refused before anything is made, and the other cluster is untouched.
func TestSafetyCollidingName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedTwo.get(ctx, t)
	name := sharedTwo.name
	type machines struct{ containers, volumes []string }
	look := func() machines {
		t.Helper()
		var m machines
		cs, err := e.docker.ContainerList(ctx, containerListAll(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			m.containers = append(m.containers, strings.Join(c.Names, ",")+" "+c.ID+" "+c.State)
		}
		vs, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", clusterLabel+"="+name))})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs.Volumes {
			m.volumes = append(m.volumes, v.Name)
		}
		slices.Sort(m.containers)
		slices.Sort(m.volumes)
		return m
	}
	was := look()
	// Two nodes and the cloud provider, each with its /var volume.
	if len(was.containers) != 3 || len(was.volumes) != 3 {
		t.Fatalf("cluster %s: %+v, want 3 containers and 3 volumes", name, was)
	}
	cs := e.clientset(name)
	nodes := readyNodeNames(ctx, t, cs)
	for _, other := range []string{name + "-m02", name + "-lb", name + "-cloud"} {
		e.cleanupCluster(other) // if it was made after all
		r := e.run(ctx, nil, "start", "--name", other)
		failsCleanly(t, "start --name "+other, r)
		if r.Code != 0 && r.Code != 2 {
			t.Logf("start --name %s: exit %d (a usage error, 2, is expected for a name that collides)", other, r.Code)
		}
		if strings.Contains(r.Stderr, "✓ Network") {
			t.Errorf("start --name %s made a network before it failed: refuse the name first", other)
		}
		if left := e.owned(ctx, other); len(left) > 0 {
			t.Errorf("the refused start --name %s made %v", other, left)
		}
		if _, err := os.Lstat(filepath.Join(e.Home, other)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the refused start --name %s made its state directory (%v)", other, err)
		}
		if now := look(); !slices.Equal(now.containers, was.containers) || !slices.Equal(now.volumes, was.volumes) {
			t.Errorf("after start --name %s, cluster %s has %+v, had %+v", other, name, now, was)
		}
		if now := readyNodeNames(ctx, t, cs); !slices.Equal(now, nodes) {
			t.Errorf("after start --name %s, cluster %s has Ready nodes %v, had %v", other, name, now, nodes)
		}
	}
	if out := e.ok(ctx, "kubectl", "--name", name, "--", "get", "nodes").Stdout; strings.Count(out, " Ready ") != 2 {
		t.Errorf("kubectl get nodes on %s:\n%s", name, out)
	}
}

// TestSafetyControlPlaneRemoved: with the control plane's container removed behind kubeforge's
// back, start fails with advice (delete) instead of a panic, and delete cleans up.
func TestSafetyControlPlaneRemoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := sharedTwo.take(ctx, t)
	name := sharedTwo.name
	if err := e.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	r := e.run(ctx, nil, "start", "--name", name)
	failsCleanly(t, "start after the control plane was removed", r)
	if !strings.Contains(r.Stderr, "kubeforge delete") {
		t.Errorf("start after the control plane was removed does not advise `kubeforge delete`: %v", r)
	}
	for _, args := range [][]string{{"status", "--name", name}, {"node", "list", "--name", name}} {
		noStack(t, strings.Join(args, " "), e.run(ctx, nil, args...))
	}
	e.deleteLeavesNothing(ctx, name)
}

// TestSafetyParallelStart: two starts of one cluster at once: one makes it, the other waits and
// finds it running (or fails cleanly); the cluster works and delete leaves nothing.
func TestSafetyParallelStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kfs-par"
	e.cleanupCluster(name)
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run(ctx, nil, "start", "--name", name)
		}()
	}
	wg.Wait()
	succeeded, waited := 0, false
	for i, r := range results {
		t.Logf("start #%d: %v", i+1, r)
		noStack(t, "start", r)
		if r.Code == 0 {
			succeeded++
		} else if !strings.Contains(r.Stderr, "Error:") {
			t.Errorf("start #%d failed without an `Error:` line: %v", i+1, r)
		}
		if strings.Contains(strings.ToLower(r.Stdout+r.Stderr), "waiting for another kubeforge") {
			waited = true
		}
	}
	if succeeded == 0 {
		t.Fatalf("neither start succeeded")
	}
	if succeeded == 2 && !strings.Contains(results[0].Stdout+results[1].Stdout, "already running") {
		t.Errorf("both starts succeeded, neither found the cluster already running")
	}
	if !waited {
		t.Errorf("neither start said it was waiting for another kubeforge")
	}
	cs := e.clientset(name)
	if names := readyNodeNames(ctx, t, cs); !slices.Equal(names, []string{name}) {
		t.Errorf("Ready nodes %v, want [%s]", names, name)
	}
	buildBusybox(ctx, t, e.docker)
	e.ok(ctx, "image", "load", "--name", name, BusyboxImage)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "after-parallel-starts"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "c", Image: BusyboxImage, Command: []string{"sleep", "3600"}}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := podRunning(ctx, cs, "default", pod.Name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }); err != nil {
		t.Errorf("a pod after the parallel starts: %v", err)
	}
	e.deleteLeavesNothing(ctx, name)
}

// TestSafetySymlinkedKubeconfig: a $KUBECONFIG that is a symlink stays one; the file it points
// to gets the context at start and loses it at delete, keeping the user's own entries.
func TestSafetySymlinkedKubeconfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kfs-link"
	tmp := filepath.Dir(e.Home)
	target := filepath.Join(tmp, "dotfiles", "kube-config")
	link := filepath.Join(tmp, "kube", "config")
	for _, d := range []string{filepath.Dir(target), filepath.Dir(link)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const mine = `apiVersion: v1
kind: Config
clusters:
- name: mine
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: mine
  user: {token: "not-a-real-token"}
contexts:
- name: mine
  context: {cluster: mine, user: mine}
current-context: mine
`
	if err := os.WriteFile(target, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	e.Kubeconfig = link // e.CLI is this test's own
	e.cleanupCluster(name)

	check := func(when string, want bool) {
		t.Helper()
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s: %s is no longer a symlink (%v)", when, link, err)
		} else if to, err := os.Readlink(link); err != nil || to != target {
			t.Errorf("%s: %s points to %q (%v), want %s", when, link, to, err, target)
		}
		kc, err := clientcmd.LoadFromFile(target)
		if err != nil {
			t.Fatalf("%s: %s: %v", when, target, err)
		}
		if _, ok := kc.Contexts[name]; ok != want {
			t.Errorf("%s: context %s in %s: %v, want %v", when, name, target, ok, want)
		}
		if kc.Contexts["mine"] == nil || kc.Clusters["mine"] == nil || kc.AuthInfos["mine"] == nil {
			t.Errorf("%s: the user's own context, cluster or user is gone from %s", when, target)
		}
		for _, f := range []string{link + ".lock", target + ".lock"} {
			if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %s is left (%v)", when, f, err)
			}
		}
	}
	e.ok(ctx, "start", "--name", name)
	check("after start", true)
	if kc, err := clientcmd.LoadFromFile(target); err == nil && kc.CurrentContext != name {
		t.Errorf("after start: current context %q, want %s", kc.CurrentContext, name)
	}
	e.deleteLeavesNothing(ctx, name)
	check("after delete", false)
}

// process is a kubeforge run in the background.
type process struct {
	cmd      *exec.Cmd
	mu       sync.Mutex
	out, err bytes.Buffer
	done     chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// background starts kubeforge with args.
func (e *env) background(args ...string) *process {
	e.t.Helper()
	p := &process{cmd: exec.Command(e.Bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "KUBEFORGE_HOME="+e.Home, "KUBECONFIG="+e.Kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{&p.mu, &p.out}, lockedWriter{&p.mu, &p.err}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) result() result {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := result{Stdout: p.out.String(), Stderr: p.err.String(), Code: -1}
	select {
	case <-p.done:
		r.Code = p.cmd.ProcessState.ExitCode()
	default:
	}
	return r
}

// waitOutput waits until the process has printed s, or has ended, or d has passed.
func (p *process) waitOutput(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r := p.result(); strings.Contains(r.Stderr+r.Stdout, s) {
			return true
		}
		select {
		case <-p.done:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// exited waits up to d for the process to end.
func (p *process) exited(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestSafetyInterruptedStart: Ctrl-C during a start (early, while the nodes are made, while the
// control plane starts) exits 130 saying it was interrupted and leaves nothing; a second Ctrl-C
// makes it exit at once, and `delete` removes what that left.
func TestSafetyInterruptedStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kfs-int"
	e.cleanupCluster(name)
	e.ok(ctx, "image", "build") // so that the start's steps, not the image build, are interrupted

	// when waits for the moment to interrupt; false when the start ended before it.
	points := []struct {
		what string
		when func(p *process) bool
	}{
		{"after 1s (the node being made)", func(p *process) bool { return !p.exited(time.Second) }},
		{"while the control plane starts (~4s)", func(p *process) bool {
			return p.waitOutput("• Control plane", 2*time.Minute) && !p.exited(2*time.Second)
		}},
		{"while DNS is awaited (~10s)", func(p *process) bool {
			return p.waitOutput("• DNS", 3*time.Minute) && !p.exited(200*time.Millisecond)
		}},
	}
	for _, pt := range points {
		t.Run(pt.what, func(t *testing.T) {
			e := e.sub(t)
			p := e.background("start", "--name", name)
			if !pt.when(p) {
				p.exited(5 * time.Minute)
				e.deleteLeavesNothing(ctx, name)
				t.Fatalf("the start ended before the interrupt: %v", p.result())
			}
			t.Logf("interrupting; output so far:\n%s", p.result().Stderr)
			if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			if !p.exited(3 * time.Minute) {
				t.Fatalf("start still running 3 minutes after the interrupt: %v", p.result())
			}
			r := p.result()
			t.Logf("%v", r)
			noStack(t, "interrupted start", r)
			if r.Code != 130 {
				t.Errorf("interrupted start: exit %d, want 130", r.Code)
			}
			if out := strings.ToLower(r.Stderr); !strings.Contains(out, "interrupted") || strings.Contains(out, "context canceled") {
				t.Errorf("interrupted start: want \"interrupted\", not \"context canceled\": %v", r)
			}
			e.nothingLeft(ctx, name)
			if t.Failed() {
				e.run(ctx, nil, "delete", "--name", name) // a clean slate for the next point
			}
		})
	}

	t.Run("a second interrupt exits at once", func(t *testing.T) {
		e := e.sub(t)
		p := e.background("start", "--name", name)
		if !p.waitOutput("• Control plane", 2*time.Minute) || p.exited(2*time.Second) {
			p.exited(5 * time.Minute)
			e.deleteLeavesNothing(ctx, name)
			t.Fatalf("the start ended before the interrupt: %v", p.result())
		}
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		second := time.Now()
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		if !p.exited(2500 * time.Millisecond) {
			t.Errorf("start still running %.1fs after the second interrupt", time.Since(second).Seconds())
			if !p.exited(3 * time.Minute) {
				t.Fatalf("start still running 3 minutes after two interrupts: %v", p.result())
			}
		}
		r := p.result()
		t.Logf("exited %.1fs after the second interrupt: %v", time.Since(second).Seconds(), r)
		noStack(t, "twice interrupted start", r)
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); r.Code == 0 || (r.Code == -1 && !(ok && ws.Signaled())) {
			t.Errorf("twice interrupted start: exit %d", r.Code)
		}
		e.deleteLeavesNothing(ctx, name)
	})
}
