package kubeconfig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// authority is a cluster's certificate authority, as kubeforge's pki makes one.
type authority struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pem  []byte
}

// newAuthority makes a new certificate authority.
func newAuthority(t testing.TB) *authority {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	return authorityFrom(t, seed)
}

// authorityFrom makes the certificate authority of seed: the same one, byte for byte, in every
// process (Ed25519 signs deterministically), which fuzzing's worker processes need.
func authorityFrom(t testing.TB, seed []byte) *authority {
	t.Helper()
	key := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubernetes"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// clientCert is a client certificate signed by a, PEM; the same for the same a.
func (a *authority) clientCert(t testing.TB) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kubernetes-admin"},
		NotBefore:    a.cert.NotBefore,
		NotAfter:     a.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	pub := a.key.Public() // the CA's own key: enough for a test
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// config is the kubeconfig kubeforge makes for cluster name (pki.Authorities.Kubeconfig): a
// cluster, user and context all named name, and no marks.
func (a *authority) config(t testing.TB, name string) *clientcmdapi.Config {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: a.pem}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: a.clientCert(t), ClientKeyData: []byte("key")}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return cfg
}

func (a *authority) kubeconfig(t testing.TB, name string) []byte {
	t.Helper()
	return encode(t, a.config(t, name))
}

func encode(t testing.TB, cfg *clientcmdapi.Config) []byte {
	t.Helper()
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t testing.TB, path string) *clientcmdapi.Config {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeFile(t testing.TB, path string, b []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noLock fails t if the lock file of path is there.
func noLock(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(lockName(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lock file %s left behind (%v)", lockName(path), err)
	}
}

// unchanged fails t if the file at path no longer holds want.
func unchanged(t testing.TB, path string, want []byte) {
	t.Helper()
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("%s changed:\n%s\nwant:\n%s", path, got, want)
	}
}

// ours tells whether cfg holds cluster, user and context name, all marked for name.
func ours(cfg *clientcmdapi.Config, name string) bool {
	c, u, x := cfg.Clusters[name], cfg.AuthInfos[name], cfg.Contexts[name]
	return c != nil && u != nil && x != nil && marked(c.Extensions, name) && marked(u.Extensions, name) && marked(x.Extensions, name)
}

// kubectlEdit changes the current context of the kubeconfig at path as kubectl's `config
// use-context` does: clientcmd.ModifyConfig, with client-go's lock.
func kubectlEdit(path, current string) error {
	opts := clientcmd.NewDefaultPathOptions()
	opts.LoadingRules.ExplicitPath = path
	cfg, err := opts.GetStartingConfig()
	if err != nil {
		return err
	}
	cfg.CurrentContext = current
	return clientcmd.ModifyConfig(opts, *cfg, true)
}
