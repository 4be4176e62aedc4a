package controlplane

import (
	"context"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func lease(name string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}},
	}
}

func TestReleaseStaleLeases(t *testing.T) {
	ctx := context.Background()
	since := time.Now()
	cs := fake.NewClientset(
		lease("kube-controller-manager", since.Add(-time.Minute)), // held by an instance that is gone
		lease("kube-scheduler", since.Add(time.Second)),           // already renewed by a new instance
		lease("other", since.Add(-time.Hour)),                     // not a control-plane component's
	)
	released, err := ReleaseStaleLeases(ctx, cs, since)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(released, []string{"kube-controller-manager"}) {
		t.Errorf("released %v, want only the stale kube-controller-manager lease", released)
	}
	leases := cs.CoordinationV1().Leases(metav1.NamespaceSystem)
	if _, err := leases.Get(ctx, "kube-controller-manager", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("stale lease still there: %v", err)
	}
	for _, name := range []string{"kube-scheduler", "other"} {
		if _, err := leases.Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("lease %s was removed: %v", name, err)
		}
	}
	// No leases at all (a cluster whose components never elected): nothing to do.
	if released, err := ReleaseStaleLeases(ctx, fake.NewClientset(), since); err != nil || len(released) != 0 {
		t.Errorf("on an empty cluster: %v %v", released, err)
	}
}
