package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeforge.dev/kubeforge/internal/kferr"
)

var bg = context.Background()

func TestMergeAndRemove(t *testing.T) {
	ca := newAuthority(t)
	dir := filepath.Join(t.TempDir(), "kube")
	path := filepath.Join(dir, "config")
	if err := Remove(bg, path, "a"); err != nil {
		t.Fatalf("removing from a missing file: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removing from a missing file made its directory: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		if err := Merge(bg, path, ca.kubeconfig(t, n), n); err != nil {
			t.Fatal(err)
		}
		noLock(t, path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %v", p, fi.Mode(), err, want)
		}
	}
	cfg := load(t, path)
	if cfg.CurrentContext != "b" || !ours(cfg, "a") || !ours(cfg, "b") {
		t.Fatalf("after merging a and b: current %q, contexts %v", cfg.CurrentContext, cfg.Contexts)
	}
	// Merging again (a restart) replaces ours.
	if err := Merge(bg, path, ca.kubeconfig(t, "a"), "a"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(bg, path, "a"); err != nil {
		t.Fatal(err)
	}
	noLock(t, path)
	cfg = load(t, path)
	if cfg.CurrentContext != "" || cfg.Contexts["a"] != nil || cfg.Clusters["a"] != nil || cfg.AuthInfos["a"] != nil || !ours(cfg, "b") {
		t.Fatalf("after removing a: current %q, contexts %v", cfg.CurrentContext, cfg.Contexts)
	}
	// b is not current any more: removing it leaves the current context alone.
	if err := kubectlEdit(path, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(bg, path, "b"); err != nil {
		t.Fatal(err)
	}
	if cfg = load(t, path); cfg.CurrentContext != "elsewhere" || len(cfg.Contexts)+len(cfg.Clusters)+len(cfg.AuthInfos) != 0 {
		t.Fatalf("after removing b: %+v", cfg)
	}
}

// The mark is a plain JSON object that survives client-go's encoding both ways.
func TestMarkRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, path)
	if want := "    extensions:\n    - extension:\n        cluster: dev\n      name: kubeforge.dev\n"; strings.Count(string(b), want) != 3 {
		t.Fatalf("want the mark on the cluster, user and context:\n%s", b)
	}
	cfg := load(t, path)
	again, err := clientcmd.Load(encode(t, cfg))
	if err != nil || !ours(cfg, "dev") || !ours(again, "dev") {
		t.Fatalf("mark lost: %v", err)
	}
	if marked(cfg.Contexts["dev"].Extensions, "other") {
		t.Fatal("dev's mark taken for other's")
	}
}

// Issue 14, bug 1: kubectl's edits (client-go's lock, O_EXCL on <path>.lock) work after ours,
// successful or not.
func TestKubectlEditsAfterOurs(t *testing.T) {
	ca := newAuthority(t)
	path := filepath.Join(t.TempDir(), "config")
	step := func(what string, err error) {
		t.Helper()
		noLock(t, path)
		if err := kubectlEdit(path, "x"); err != nil {
			t.Fatalf("kubectl's edit after %s (%v): %v", what, err, err)
		}
	}
	step("a merge", Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"))
	step("a remove", Remove(bg, path, "dev"))
	cfg := load(t, path)
	cfg.Contexts["dev"] = &clientcmdapi.Context{Cluster: "mine"}
	writeFile(t, path, encode(t, cfg), 0o600)
	err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev")
	if err == nil {
		t.Fatal("merged over a foreign context")
	}
	step("a refused merge", err)
	step("a no-op remove", Remove(bg, path, "dev"))
	writeFile(t, path, []byte("{not yaml"), 0o600)
	noLock(t, path)
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err == nil {
		t.Fatal("merged into a broken file")
	}
	noLock(t, path)
}

// Our lock is client-go's: kubectl fails while we hold it.
func TestLockIsClientGos(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, nil, 0o600)
	unlock, err := lock(bg, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubectlEdit(path, "x"); err == nil || !errors.Is(err, os.ErrExist) {
		t.Fatalf("kubectl's edit under our lock: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	noLock(t, path)
	if err := kubectlEdit(path, "x"); err != nil {
		t.Fatal(err)
	}
}

// kubectlLock makes the lock file as client-go does.
func kubectlLock(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(lockName(path), os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestWaitsForKubectlsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	kubectlLock(t, path)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev") }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("merged under kubectl's lock: %v", err)
	default:
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("wrote under kubectl's lock: %v", err)
	}
	if err := os.Remove(lockName(path)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the lock went")
	}
	t.Logf("merged %v after the start, the lock went at 300ms", time.Since(start))
	noLock(t, path)
	if !ours(load(t, path), "dev") {
		t.Fatal("not merged")
	}
}

func TestLockTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	before := encode(t, clientcmdapi.NewConfig())
	writeFile(t, path, before, 0o600)
	kubectlLock(t, path)
	ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
	defer cancel()
	err := Merge(ctx, path, newAuthority(t).kubeconfig(t, "dev"), "dev")
	if err == nil {
		t.Fatal("merged under kubectl's lock")
	}
	if kferr.Code(err) != kferr.ExitEnvironment || !strings.Contains(err.Error(), "kubeconfig "+path+" is locked") ||
		!strings.Contains(err.Error(), "kubectl") || !strings.Contains(kferr.Hint(err), "rm "+lockName(path)) {
		t.Fatalf("error %q, hint %q", err, kferr.Hint(err))
	}
	t.Logf("%v; hint: %s", err, kferr.Hint(err))
	unchanged(t, path, before)
	if _, err := os.Stat(lockName(path)); err != nil {
		t.Fatalf("kubectl's lock removed: %v", err)
	}
	// Remove waits just the same.
	ctx, cancel = context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	if err := Remove(ctx, path, "dev"); err == nil || kferr.Code(err) != kferr.ExitEnvironment {
		t.Fatalf("remove under kubectl's lock: %v", err)
	}

	// A lock left by a kubeforge that died is named so.
	os.WriteFile(lockName(path), []byte("kubeforge pid 4194305\n"), 0o600) // above Linux's pid_max
	ctx, cancel = context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	if err := Merge(ctx, path, newAuthority(t).kubeconfig(t, "dev"), "dev"); err == nil || !strings.Contains(err.Error(), "kubeforge pid 4194305, which is no longer running") {
		t.Fatalf("stale kubeforge lock: %v", err)
	}

	// Interrupted (Ctrl-C) is not a timeout.
	ctx, cancel = context.WithCancel(bg)
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := Merge(ctx, path, newAuthority(t).kubeconfig(t, "dev"), "dev"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		// links makes the links in home to dotfiles/kubeconfig and returns the kubeconfig path.
		links func(t *testing.T, home, target string) string
	}{
		{"absolute", func(t *testing.T, home, target string) string {
			return link(t, target, filepath.Join(home, ".kube", "config"))
		}},
		{"relative", func(t *testing.T, home, target string) string {
			return link(t, filepath.Join("..", "dotfiles", "kubeconfig"), filepath.Join(home, ".kube", "config"))
		}},
		{"chain", func(t *testing.T, home, target string) string {
			mid := link(t, filepath.Join("dotfiles", "kubeconfig"), filepath.Join(home, "kubeconfig-link"))
			return link(t, mid, filepath.Join(home, ".kube", "config"))
		}},
		{"linked directory", func(t *testing.T, home, target string) string {
			link(t, filepath.Join(home, "dotfiles"), filepath.Join(home, ".kube"))
			return filepath.Join(home, ".kube", "kubeconfig")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newAuthority(t)
			home := t.TempDir()
			target := filepath.Join(home, "dotfiles", "kubeconfig")
			mine := clientcmdapi.NewConfig()
			mine.Contexts["mine"] = &clientcmdapi.Context{Cluster: "mine", Namespace: "ns"}
			writeFile(t, target, encode(t, mine), 0o640)
			path := tc.links(t, home, target)
			links := map[string]string{}
			for _, p := range []string{filepath.Join(home, ".kube", "config"), filepath.Join(home, "kubeconfig-link"), filepath.Join(home, ".kube")} {
				if l, err := os.Readlink(p); err == nil {
					links[p] = l
				}
			}

			if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
				t.Fatal(err)
			}
			noLock(t, path)
			cfg := load(t, target)
			if !ours(cfg, "dev") || cfg.Contexts["mine"] == nil {
				t.Fatalf("target not updated: %v", cfg.Contexts)
			}
			if err := Remove(bg, path, "dev"); err != nil {
				t.Fatal(err)
			}
			noLock(t, path)
			if cfg := load(t, target); cfg.Contexts["dev"] != nil || cfg.Contexts["mine"] == nil {
				t.Fatalf("target after remove: %v", cfg.Contexts)
			}
			for p, want := range links {
				if got, err := os.Readlink(p); err != nil || got != want {
					t.Errorf("link %s: %q, %v; want it kept, to %s", p, got, err, want)
				}
			}
			if fi, err := os.Lstat(target); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
				t.Fatalf("target %v, %v; want a file of mode 0640", fi.Mode(), err)
			}
			entries, _ := os.ReadDir(filepath.Dir(target))
			if len(entries) != 1 && tc.name != "linked directory" {
				t.Fatalf("left in the target's directory: %v", entries)
			}
		})
	}
}

func link(t *testing.T, to, at string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(at), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(to, at); err != nil {
		t.Fatal(err)
	}
	return at
}

func TestBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	dangling := link(t, filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))
	loop := link(t, filepath.Join(dir, "loop-b"), filepath.Join(dir, "loop-a"))
	link(t, loop, filepath.Join(dir, "loop-b"))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fifoLink := link(t, fifo, filepath.Join(dir, "fifo-link"))
	for path, want := range map[string]string{
		dangling: "is a symbolic link to " + filepath.Join(dir, "nowhere") + ", which does not exist",
		loop:     "is a symbolic link (to " + filepath.Join(dir, "loop-b") + ") that does not resolve",
		fifoLink: "is not a regular file",
	} {
		err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev")
		if err == nil || !strings.Contains(err.Error(), "kubeconfig "+path) || !strings.Contains(err.Error(), want) || kferr.Hint(err) == "" {
			t.Errorf("merge into %s: %v; want %q", path, err, want)
		}
		t.Logf("%v; hint: %s", err, kferr.Hint(err))
		noLock(t, path)
		if err := Remove(bg, path, "dev"); err != nil {
			t.Errorf("remove from %s: %v", path, err)
		}
		noLock(t, path)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was made: %v", err)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("the fifo was replaced: %v", err)
	}
}

func TestKeepsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, nil, 0o644)
	os.Chmod(path, 0o644) // whatever the umask
	if err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode())
	}
}

// The user's own cluster, user or context of the cluster's name is never replaced or removed.
func TestForeignEntries(t *testing.T) {
	ca := newAuthority(t)
	for _, tc := range []struct {
		kind string
		add  func(cfg *clientcmdapi.Config)
	}{
		{"context", func(cfg *clientcmdapi.Config) {
			cfg.Contexts["dev"] = &clientcmdapi.Context{Cluster: "prod", AuthInfo: "me"}
		}},
		{"cluster", func(cfg *clientcmdapi.Config) {
			cfg.Clusters["dev"] = &clientcmdapi.Cluster{Server: "https://dev.example.com"}
		}},
		{"user", func(cfg *clientcmdapi.Config) { cfg.AuthInfos["dev"] = &clientcmdapi.AuthInfo{Token: "secret"} }},
		{"cluster and context", func(cfg *clientcmdapi.Config) {
			// Another CA: another cluster.
			cfg.Clusters["dev"] = &clientcmdapi.Cluster{Server: "https://dev.example.com", CertificateAuthorityData: newAuthority(t).pem}
			cfg.Contexts["dev"] = &clientcmdapi.Context{Cluster: "dev"}
		}},
		{"context", func(cfg *clientcmdapi.Config) {
			// kubeforge's context of cluster "old", renamed by the user.
			cfg.Contexts["dev"] = &clientcmdapi.Context{Cluster: "old", Extensions: mark(nil, "old")}
		}},
		{"user", func(cfg *clientcmdapi.Config) {
			// A certificate of another CA.
			cfg.AuthInfos["dev"] = &clientcmdapi.AuthInfo{ClientCertificateData: newAuthority(t).clientCert(t)}
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config")
			cfg := clientcmdapi.NewConfig()
			cfg.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://prod.example.com"}
			cfg.CurrentContext = "dev"
			tc.add(cfg)
			before := encode(t, cfg)
			writeFile(t, path, before, 0o600)

			err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev")
			want := "kubeconfig " + path + " already has a " + tc.kind + " named dev that kubeforge did not make"
			if err == nil || !strings.Contains(err.Error(), want) || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(kferr.Hint(err), "--name") {
				t.Fatalf("merge: %v (hint %q); want %q", err, kferr.Hint(err), want)
			}
			t.Logf("%v; hint: %s", err, kferr.Hint(err))
			unchanged(t, path, before)
			noLock(t, path)
			if err := Remove(bg, path, "dev"); err != nil {
				t.Fatal(err)
			}
			unchanged(t, path, before)
			noLock(t, path)
		})
	}
}

// Entries an older kubeforge made, without marks, are recognised by the cluster's CA.
func TestAdoptsLegacyEntries(t *testing.T) {
	ca := newAuthority(t)
	path := filepath.Join(t.TempDir(), "config")
	legacy := ca.config(t, "dev")
	legacy.Contexts["mine"] = &clientcmdapi.Context{Cluster: "dev", AuthInfo: "dev", Namespace: "x"}
	writeFile(t, path, encode(t, legacy), 0o600)
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	if cfg := load(t, path); !ours(cfg, "dev") || len(cfg.Contexts["mine"].Extensions) != 0 {
		t.Fatalf("not adopted: %+v", cfg)
	}
	if err := Remove(bg, path, "dev"); err != nil {
		t.Fatal(err)
	}
	if cfg := load(t, path); len(cfg.Clusters)+len(cfg.AuthInfos) != 0 || len(cfg.Contexts) != 1 {
		t.Fatalf("after remove: %+v", cfg)
	}

	// Without the user's context or cluster: each entry on its own.
	only := clientcmdapi.NewConfig()
	only.AuthInfos["dev"] = legacy.AuthInfos["dev"]
	writeFile(t, path, encode(t, only), 0o600)
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
}

func TestKeepsEverythingElse(t *testing.T) {
	ca := newAuthority(t)
	path := filepath.Join(t.TempDir(), "config")
	const mine = `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example.com
    certificate-authority: /etc/prod/ca.crt
    extensions:
    - name: other.tool
      extension: {level: 3, tags: [a, b]}
- name: minikube
  cluster: {server: "https://192.168.49.2:8443"}
users:
- name: me
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, args: [eks, get-token], interactiveMode: Never}
contexts:
- name: prod
  context: {cluster: prod, user: me, namespace: shop}
- name: minikube
  context:
    cluster: minikube
    user: me
    extensions:
    - name: context_info
      extension: {provider: minikube.sigs.k8s.io}
current-context: prod
preferences:
  colors: true
extensions:
- name: top.level
  extension: {x: y}
`
	writeFile(t, path, []byte(mine), 0o600)
	before := load(t, path)
	check := func(after *clientcmdapi.Config) {
		t.Helper()
		for _, n := range []string{"prod", "minikube"} {
			if !reflect.DeepEqual(after.Clusters[n], before.Clusters[n]) || !reflect.DeepEqual(after.Contexts[n], before.Contexts[n]) {
				t.Errorf("%s changed: %+v", n, after.Clusters[n])
			}
		}
		if !reflect.DeepEqual(after.AuthInfos["me"], before.AuthInfos["me"]) || !reflect.DeepEqual(after.Preferences, before.Preferences) || !reflect.DeepEqual(after.Extensions, before.Extensions) {
			t.Errorf("changed: %+v", after)
		}
	}
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	after := load(t, path)
	check(after)
	if after.CurrentContext != "dev" {
		t.Fatalf("current context %q", after.CurrentContext)
	}
	if err := kubectlEdit(path, "prod"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(bg, path, "dev"); err != nil {
		t.Fatal(err)
	}
	after = load(t, path)
	check(after)
	if after.CurrentContext != "prod" || len(after.Clusters) != 2 || len(after.Contexts) != 2 || len(after.AuthInfos) != 1 {
		t.Fatalf("after remove: %+v", after)
	}
}

// What the user set on our context (its namespace, another tool's extension) survives a restart.
func TestRemergeKeepsNamespace(t *testing.T) {
	ca := newAuthority(t)
	path := filepath.Join(t.TempDir(), "config")
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	cfg := load(t, path)
	cfg.Contexts["dev"].Namespace = "shop"
	cfg.Contexts["dev"].Extensions["other.tool"] = &runtime.Unknown{Raw: []byte(`{"a":1}`), ContentType: runtime.ContentTypeJSON}
	writeFile(t, path, encode(t, cfg), 0o600)
	if err := Merge(bg, path, ca.kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	if cfg := load(t, path); cfg.Contexts["dev"].Namespace != "shop" || cfg.Contexts["dev"].Extensions["other.tool"] == nil || !ours(cfg, "dev") {
		t.Fatalf("after a second merge: %+v", cfg.Contexts["dev"])
	}
}

func TestBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, []byte("{not yaml"), 0o600)
	err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev")
	if err == nil || !strings.Contains(err.Error(), "kubeconfig "+path+" is not a valid kubeconfig") || !strings.Contains(kferr.Hint(err), "fix the file") {
		t.Fatalf("%v (hint %q)", err, kferr.Hint(err))
	}
	unchanged(t, path, []byte("{not yaml"))
	noLock(t, path)
	if err := Remove(bg, path, "dev"); err == nil {
		t.Fatal("removed from a broken file")
	}
	unchanged(t, path, []byte("{not yaml"))
	noLock(t, path)
}

func TestBadSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	for _, name := range []string{"", "other"} {
		if err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), name); err == nil {
			t.Errorf("merged %q from a kubeconfig of dev", name)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file made: %v", err)
	}
}

// Concurrent merges of this process queue; those of other processes take turns through the
// lock file. No context is lost.
func TestConcurrentMerges(t *testing.T) {
	if path := os.Getenv("KUBEFORGE_TEST_MERGE_INTO"); path != "" { // a child process
		ca := newAuthority(t)
		for i := range 4 {
			n := fmt.Sprintf("%s-%d", os.Getenv("KUBEFORGE_TEST_MERGE_NAME"), i)
			if err := Merge(bg, path, ca.kubeconfig(t, n), n); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	ca := newAuthority(t)
	path := filepath.Join(t.TempDir(), "config")
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentMerges$", "-test.count=1")
			cmd.Env = append(os.Environ(), "KUBEFORGE_TEST_MERGE_INTO="+path, fmt.Sprintf("KUBEFORGE_TEST_MERGE_NAME=p%d", p))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("process %d: %v\n%s", p, err, out)
			}
		})
	}
	for i := range 16 {
		wg.Go(func() {
			n := fmt.Sprintf("c%d", i)
			if err := Merge(bg, path, ca.kubeconfig(t, n), n); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	noLock(t, path)
	if cfg := load(t, path); len(cfg.Contexts) != 16+3*4 {
		t.Fatalf("%d contexts survived, want %d", len(cfg.Contexts), 16+3*4)
	}
}

// With a real kubectl: it reads our file and edits it after us; we remove ours after its edits.
func TestKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("no kubectl on PATH: run the tests with `make unit` (it builds one), or put a kubectl on PATH")
	}
	home := t.TempDir()
	target := filepath.Join(home, "dotfiles", "kubeconfig")
	writeFile(t, target, nil, 0o600)
	path := link(t, target, filepath.Join(home, ".kube", "config"))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("config", "set-context", "mine", "--cluster=prod")
	if err := Merge(bg, path, newAuthority(t).kubeconfig(t, "dev"), "dev"); err != nil {
		t.Fatal(err)
	}
	if out := run("config", "view", "-o", "jsonpath={.contexts[?(@.name==\"dev\")].context.extensions[0]}"); !strings.Contains(out, `"name":"kubeforge.dev"`) || !strings.Contains(out, `"cluster":"dev"`) {
		t.Fatalf("kubectl config view: %s", out)
	}
	run("config", "view")
	run("config", "use-context", "mine")
	run("config", "set-context", "dev", "--namespace=shop")
	if cfg := load(t, path); !ours(cfg, "dev") || cfg.Contexts["dev"].Namespace != "shop" {
		t.Fatalf("after kubectl's edits: %+v", cfg.Contexts["dev"])
	}
	if err := Remove(bg, path, "dev"); err != nil {
		t.Fatal(err)
	}
	run("config", "use-context", "mine")
	if cfg := load(t, path); cfg.Contexts["dev"] != nil || cfg.Contexts["mine"] == nil || cfg.CurrentContext != "mine" {
		t.Fatalf("after remove: %+v", cfg)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link replaced: %v", err)
	}
	noLock(t, path)
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	if err := Check(path, "a"); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Contexts["a"] = &clientcmdapi.Context{Cluster: "x", AuthInfo: "x"}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, "a"); err == nil || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), "context named a") {
		t.Errorf("foreign context: %v", err)
	}
	if err := Check(path, "b"); err != nil {
		t.Errorf("other name: %v", err)
	}
}
