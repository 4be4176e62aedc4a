package cluster

import (
	"context"

	"kubeforge.dev/kubeforge/cluster/internal/kubeconfig"
)

// UserKubeconfig is the file kubectl reads by default: the first entry of $KUBECONFIG, else
// ~/.kube/config.
func UserKubeconfig() string { return kubeconfig.Default() }

// MergeKubeconfig adds (or replaces) the cluster, user and context named name from src into the
// kubeconfig file at path, and makes it current. It refuses, changing nothing, when an entry of
// that name exists that kubeforge did not make. It locks the file as kubectl does (path.lock),
// waiting up to kubeconfig.LockWait for another holder, and writes through symbolic links.
func MergeKubeconfig(path string, src []byte, name string) error {
	return kubeconfig.Merge(context.Background(), path, src, name)
}

// RemoveFromKubeconfig removes name's cluster, user and context from the file at path if
// kubeforge made them (same-named entries of the user's stay); the current context is unset if
// it was that context.
func RemoveFromKubeconfig(path, name string) error {
	return kubeconfig.Remove(context.Background(), path, name)
}
