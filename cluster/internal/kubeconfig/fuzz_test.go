package kubeconfig

import (
	"crypto/ed25519"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// FuzzMerge: whatever the user's kubeconfig holds, removing, merging and removing again never
// panics, never changes an entry kubeforge did not make, and never leaves the lock file.
func FuzzMerge(f *testing.F) {
	fuzzCA := authorityFrom(f, make([]byte, ed25519.SeedSize)) // the same in every worker process
	legacy := fuzzCA.config(f, "dev")
	legacy.Contexts["mine"] = &clientcmdapi.Context{Cluster: "dev", Namespace: "x"}
	marked := fuzzCA.config(f, "dev")
	marked.Clusters["dev"].Extensions = mark(nil, "dev")
	marked.Contexts["dev"].Extensions = mark(nil, "other")
	for _, seed := range []struct {
		existing []byte
		name     string
	}{
		{nil, "dev"},
		{[]byte("{not yaml"), "dev"},
		{[]byte("apiVersion: v1\nkind: Config\n"), "kubeforge"},
		{[]byte(`apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://prod", extensions: [{name: kubeforge.dev, extension: {cluster: prod}}]}
- name: dev
  cluster: {server: "https://dev"}
users:
- name: me
  user: {token: t, extensions: [{name: kubeforge.dev}]}
contexts:
- name: dev
  context: {cluster: dev, user: me, extensions: [{name: kubeforge.dev, extension: "dev"}]}
current-context: dev
preferences: {colors: true}
extensions: [{name: x, extension: {a: [1, 2.5, null]}}]
`), "dev"},
		{[]byte("contexts:\n- name: a\n  context: {cluster: a, extensions: [{name: kubeforge.dev, extension: {cluster: a}}]}\n"), "a"},
		{encode(f, legacy), "dev"},
		{encode(f, marked), "dev"},
		{encode(f, fuzzCA.config(f, "prod")), "prod"},
	} {
		f.Add(seed.existing, seed.name)
	}
	f.Fuzz(func(t *testing.T, existing []byte, name string) {
		if !utf8.ValidString(name) {
			return // not a name kubeconfig files can hold: kubeforge's names are DNS labels
		}
		path := filepath.Join(t.TempDir(), "config")
		writeFile(t, path, existing, 0o600)
		before, loadErr := clientcmd.LoadFromFile(path)

		// Remove from the file as it is: only entries marked for name go.
		err := Remove(bg, path, name)
		noLock(t, path)
		if loadErr != nil {
			if err == nil {
				t.Fatalf("removed from an unreadable file (%v)", loadErr)
			}
			unchanged(t, path, existing)
			if err := Merge(bg, path, fuzzCA.kubeconfig(t, "x"), "x"); err == nil {
				t.Fatal("merged into an unreadable file")
			}
			unchanged(t, path, existing)
			noLock(t, path)
			return
		}
		if err != nil {
			t.Fatalf("remove: %v", err)
		}
		after := load(t, path)
		sameExcept(t, before, after, name)
		keptUnlessMarked(t, before, after, name)
		before = after

		// Merge, then remove.
		if name == "" {
			return
		}
		src := fuzzCA.kubeconfig(t, name)
		was := readFile(t, path)
		err = Merge(bg, path, src, name)
		noLock(t, path)
		if err != nil {
			if before.Clusters[name] == nil && before.AuthInfos[name] == nil && before.Contexts[name] == nil {
				t.Fatalf("merge with no entry named %q in the way: %v", name, err)
			}
			unchanged(t, path, was)
			return
		}
		after = load(t, path)
		sameExcept(t, before, after, name)
		if !ours(after, name) || after.CurrentContext != name {
			t.Fatalf("not merged: %+v", after)
		}
		if err := Remove(bg, path, name); err != nil {
			t.Fatalf("remove after merge: %v", err)
		}
		noLock(t, path)
		after = load(t, path)
		sameExcept(t, before, after, name)
		if after.Clusters[name] != nil || after.AuthInfos[name] != nil || after.Contexts[name] != nil || after.CurrentContext != "" {
			t.Fatalf("left after remove: %+v", after)
		}
	})
}

// sameExcept fails t unless after holds what before held, but for the entries named name and
// the current context.
func sameExcept(t *testing.T, before, after *clientcmdapi.Config, name string) {
	t.Helper()
	if !reflect.DeepEqual(before.Preferences, after.Preferences) || !reflect.DeepEqual(before.Extensions, after.Extensions) {
		t.Fatalf("preferences or extensions changed: %+v, %+v", after.Preferences, after.Extensions)
	}
	sameMap(t, "cluster", before.Clusters, after.Clusters, name)
	sameMap(t, "user", before.AuthInfos, after.AuthInfos, name)
	sameMap(t, "context", before.Contexts, after.Contexts, name)
}

func sameMap[V any](t *testing.T, kind string, before, after map[string]V, name string) {
	t.Helper()
	for k, v := range before {
		if k != name && !reflect.DeepEqual(after[k], v) {
			t.Fatalf("%s %q changed: %+v, was %+v", kind, k, after[k], v)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok && k != name {
			t.Fatalf("%s %q appeared", kind, k)
		}
	}
}

// keptUnlessMarked fails t unless the entries named name of before are in after exactly when
// they lacked the mark for name, and the current context went only with a removed context.
func keptUnlessMarked(t *testing.T, before, after *clientcmdapi.Config, name string) {
	t.Helper()
	check := func(kind string, kept, m bool) {
		if kept == m {
			t.Fatalf("%s %q: marked %v, kept %v", kind, name, m, kept)
		}
	}
	if c := before.Clusters[name]; c != nil {
		check("cluster", after.Clusters[name] != nil, marked(c.Extensions, name))
	}
	if u := before.AuthInfos[name]; u != nil {
		check("user", after.AuthInfos[name] != nil, marked(u.Extensions, name))
	}
	removed := false
	if c := before.Contexts[name]; c != nil {
		removed = marked(c.Extensions, name)
		check("context", after.Contexts[name] != nil, removed)
	}
	if want := before.CurrentContext; !(removed && want == name) && after.CurrentContext != want {
		t.Fatalf("current context %q, was %q", after.CurrentContext, want)
	}
}
