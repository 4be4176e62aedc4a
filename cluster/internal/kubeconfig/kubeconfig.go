// Package kubeconfig edits the user's kubeconfig safely: it adds and removes the cluster, user
// and context kubeforge makes for a cluster, and nothing else.
//
//   - Locking: client-go's protocol (the file <path>.lock, made with O_EXCL, removed when done),
//     so kubectl and kubeforge never lose each other's edits; see lock.
//   - Symbolic links: the final target is written (atomically, keeping its mode); the link stays.
//   - Ownership: what kubeforge writes carries the extension Extension, {"cluster": <name>}; an
//     entry of the same name without it belongs to the user and is never replaced or removed.
package kubeconfig

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// Extension names the kubeconfig extension that marks the clusters, users and contexts
// kubeforge wrote. Its value is a JSON object, {"cluster": "<cluster name>"}, which kubeconfig
// files keep as YAML:
//
//	extensions:
//	- extension:
//	    cluster: dev
//	  name: kubeforge.dev
const Extension = "kubeforge.dev"

type marker struct {
	Cluster string `json:"cluster"`
}

// Default is the file kubectl edits by default: the first entry of $KUBECONFIG, else
// ~/.kube/config.
func Default() string {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if len(rules.Precedence) > 0 {
		return rules.Precedence[0]
	}
	return rules.GetDefaultFilename()
}

// Merge adds (or replaces) the cluster, user and context named name of the kubeconfig src in the
// kubeconfig file at path, marked as kubeforge's, and makes the context current. A missing file
// is made. An entry named name that kubeforge did not make is an error, and nothing changes.
// Entries kubeforge made keep the namespace the user set on the context and other programs'
// extensions.
func Merge(ctx context.Context, path string, src []byte, name string) error {
	if name == "" {
		return fmt.Errorf("merging into kubeconfig %s: no name", path)
	}
	in, err := clientcmd.Load(src)
	if err != nil {
		return fmt.Errorf("reading the kubeconfig of cluster %s: %w", name, err)
	}
	cluster, user, kctx := in.Clusters[name], in.AuthInfos[name], in.Contexts[name]
	if cluster == nil || user == nil || kctx == nil {
		return fmt.Errorf("the kubeconfig of cluster %s has no cluster, user and context named %s", name, name)
	}
	ca := cluster.CertificateAuthorityData
	return edit(ctx, path, true, func(cfg *clientcmdapi.Config) (bool, error) {
		var foreign []string
		oldCluster, oldUser, oldContext := cfg.Clusters[name], cfg.AuthInfos[name], cfg.Contexts[name]
		if oldCluster != nil && !marked(oldCluster.Extensions, name) && !sameCA(oldCluster, ca) {
			foreign = append(foreign, "cluster")
		}
		if oldUser != nil && !marked(oldUser.Extensions, name) && !signedBy(oldUser, ca) {
			foreign = append(foreign, "user")
		}
		if oldContext != nil && !marked(oldContext.Extensions, name) && !sameCA(cfg.Clusters[oldContext.Cluster], ca) {
			foreign = append(foreign, "context")
		}
		if len(foreign) > 0 {
			return false, conflict(path, name, foreign)
		}
		if oldCluster != nil {
			cluster.Extensions = others(oldCluster.Extensions, cluster.Extensions)
		}
		if oldUser != nil {
			user.Extensions = others(oldUser.Extensions, user.Extensions)
		}
		if oldContext != nil {
			kctx.Extensions = others(oldContext.Extensions, kctx.Extensions)
			if kctx.Namespace == "" {
				kctx.Namespace = oldContext.Namespace
			}
		}
		cluster.Extensions = mark(cluster.Extensions, name)
		user.Extensions = mark(user.Extensions, name)
		kctx.Extensions = mark(kctx.Extensions, name)
		cfg.Clusters[name], cfg.AuthInfos[name], cfg.Contexts[name] = cluster, user, kctx
		cfg.CurrentContext = name
		return true, nil
	})
}

// Remove removes the cluster, user and context named name that kubeforge made from the
// kubeconfig at path, and unsets the current context if it was that context. Entries of that
// name kubeforge did not make stay, silently: a delete must not fail because of them. A missing
// file, or a link to nothing, stays so.
func Remove(ctx context.Context, path, name string) error {
	return edit(ctx, path, false, func(cfg *clientcmdapi.Config) (bool, error) {
		changed := false
		if c := cfg.Clusters[name]; c != nil && marked(c.Extensions, name) {
			delete(cfg.Clusters, name)
			changed = true
		}
		if u := cfg.AuthInfos[name]; u != nil && marked(u.Extensions, name) {
			delete(cfg.AuthInfos, name)
			changed = true
		}
		if c := cfg.Contexts[name]; c != nil && marked(c.Extensions, name) {
			delete(cfg.Contexts, name)
			changed = true
			if cfg.CurrentContext == name {
				cfg.CurrentContext = ""
			}
		}
		return changed, nil
	})
}

// marked tells whether extensions hold kubeforge's mark for cluster name. An entry marked for
// another cluster (a context renamed with `kubectl config rename-context`) is not name's.
func marked(extensions map[string]runtime.Object, name string) bool {
	u, ok := extensions[Extension].(*runtime.Unknown)
	if !ok || u == nil {
		return false
	}
	var m marker
	return json.Unmarshal(u.Raw, &m) == nil && m.Cluster == name
}

// mark returns extensions with kubeforge's mark for cluster name.
func mark(extensions map[string]runtime.Object, name string) map[string]runtime.Object {
	b, err := json.Marshal(marker{Cluster: name})
	if err != nil {
		panic(err) // a struct of one string
	}
	if extensions == nil {
		extensions = map[string]runtime.Object{}
	}
	extensions[Extension] = &runtime.Unknown{Raw: b, ContentType: runtime.ContentTypeJSON}
	return extensions
}

// others returns the extensions of the new entry plus those other programs set on the old one.
func others(old, new map[string]runtime.Object) map[string]runtime.Object {
	out := map[string]runtime.Object{}
	for k, v := range old {
		if k != Extension {
			out[k] = v
		}
	}
	for k, v := range new {
		out[k] = v
	}
	return out
}

// sameCA tells whether cluster trusts the certificate authority ca (PEM). An unmarked entry with
// kubeforge's CA was made by a kubeforge from before the marks: same CA, same cluster.
func sameCA(cluster *clientcmdapi.Cluster, ca []byte) bool {
	ca = bytes.TrimSpace(ca)
	return cluster != nil && len(ca) > 0 && bytes.Equal(bytes.TrimSpace(cluster.CertificateAuthorityData), ca)
}

// signedBy tells whether user's client certificate was issued by the certificate authority ca
// (PEM): an unmarked user of a kubeforge from before the marks.
func signedBy(user *clientcmdapi.AuthInfo, ca []byte) bool {
	leaf := firstCert(user.ClientCertificateData)
	if leaf == nil {
		return false
	}
	for rest := ca; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return false
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && leaf.CheckSignatureFrom(c) == nil {
			return true
		}
	}
}

func firstCert(b []byte) *x509.Certificate {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return c
}

// conflict is the error for entries named name that kubeforge did not make; kinds are among
// "cluster", "user" and "context".
func conflict(path, name string, kinds []string) error {
	what := strings.Join(kinds, ", ")
	if i := strings.LastIndex(what, ", "); i >= 0 {
		what = what[:i] + " and " + what[i+2:]
	}
	fixes := []string{"start the cluster under another name (--name)"}
	if slices.Contains(kinds, "context") {
		fixes = append(fixes, "rename your context: kubectl config rename-context "+name+" <new name>")
	}
	if slices.Contains(kinds, "cluster") || slices.Contains(kinds, "user") {
		fixes = append(fixes, "rename your cluster or user "+name+" in "+path+" (and in the contexts that use it)")
	}
	return &kferr.Error{Code: kferr.ExitUsage, Hint: strings.Join(fixes, ", or "), Err: fmt.Errorf(
		"kubeconfig %s already has a %s named %s that kubeforge did not make: left unchanged", path, what, name)}
}

// Check says, without changing anything, whether Merge of a new cluster named name into the
// kubeconfig at path would be refused: an entry of that name exists that kubeforge did not
// make. A start checks before it makes anything. A missing or unreadable file is no conflict
// (Merge reports an unreadable one).
func Check(path, name string) error {
	target, fi, err := resolve(path, false)
	if err != nil || fi == nil {
		return nil
	}
	cfg, err := clientcmd.LoadFromFile(target)
	if err != nil {
		return nil
	}
	var foreign []string
	if c := cfg.Clusters[name]; c != nil && !marked(c.Extensions, name) {
		foreign = append(foreign, "cluster")
	}
	if u := cfg.AuthInfos[name]; u != nil && !marked(u.Extensions, name) {
		foreign = append(foreign, "user")
	}
	if c := cfg.Contexts[name]; c != nil && !marked(c.Extensions, name) {
		foreign = append(foreign, "context")
	}
	if len(foreign) > 0 {
		return conflict(path, name, foreign)
	}
	return nil
}
