package cluster

import (
	"context"

	"kubeforge.dev/kubeforge/bootstrap/pki"
)

// stepCertificates makes the cluster's certificate authorities in its state directory. Undo
// removes the state directory: what the failed start wrote there (PKI, kubeconfigs, record).
func stepCertificates() step {
	return step{name: "Certificates", run: func(ctx context.Context, b *build) error {
		auth, err := pki.EnsureAuthorities(b.dir.PKI(), b.spec.Name)
		b.auth = auth
		return err
	}, undo: func(_ context.Context, b *build) error { return b.dir.Remove() }}
}
