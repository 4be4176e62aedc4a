package controlplane

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LeaderLeases are the leader-election leases (in kube-system) of the control-plane components
// that elect a leader.
var LeaderLeases = []string{"kube-controller-manager", "kube-scheduler"}

// ReleaseStaleLeases deletes the leader leases last renewed before since. Call it only when every
// control plane was restarted after since: their holders are then gone, and the new instances,
// instead of waiting out the lease (15 s), take it at their next try (2 s). A lease renewed in
// the meantime is left alone (the delete is conditional on the version read). It returns the
// leases deleted.
func ReleaseStaleLeases(ctx context.Context, cs kubernetes.Interface, since time.Time) ([]string, error) {
	leases := cs.CoordinationV1().Leases(metav1.NamespaceSystem)
	var released []string
	for _, name := range LeaderLeases {
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return released, fmt.Errorf("reading lease %s: %w", name, err)
		}
		if l.Spec.RenewTime != nil && !l.Spec.RenewTime.Time.Before(since) {
			continue
		}
		err = leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion}})
		switch {
		case err == nil:
			released = append(released, name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// taken or removed meanwhile
		default:
			return released, fmt.Errorf("releasing stale lease %s: %w", name, err)
		}
	}
	return released, nil
}
