package apiretry

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestUntil(t *testing.T) {
	ns := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "kube-system")
	transient := []error{errors.New("connection refused"), apierrors.NewServiceUnavailable("starting"),
		apierrors.NewTooManyRequests("busy", 1), ns}
	n := 0
	err := Until(context.Background(), time.Millisecond, func(context.Context) error {
		if n < len(transient) {
			n++
			return transient[n-1]
		}
		return nil
	})
	if err != nil || n != len(transient) {
		t.Fatalf("Until = %v after %d tries, want nil after %d", err, n, len(transient))
	}

	// A final error ends it at once, as is.
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "x", nil)
	n = 0
	err = Until(context.Background(), time.Millisecond, func(context.Context) error { n++; return invalid })
	if !apierrors.IsInvalid(err) || n != 1 {
		t.Fatalf("Until = %v after %d tries, want the Invalid error after 1", err, n)
	}

	// The Service IP allocator before it has read the default ServiceCIDR: retried.
	notSynced := apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "kube-dns", field.ErrorList{
		field.Invalid(field.NewPath("spec", "clusterIPs"), []string{"10.96.0.10"},
			"failed to allocate IP 10.96.0.10: the provided network does not match the current range")})
	n = 0
	err = Until(context.Background(), time.Millisecond, func(context.Context) error {
		if n++; n < 3 {
			return notSynced
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Until = %v after %d tries, want nil after 3 (the allocator's not-synced Invalid retried)", err, n)
	}

	// A server that stays unready: ctx's end, with the last error.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err = Until(ctx, 5*time.Millisecond, func(context.Context) error { return apierrors.NewServiceUnavailable("starting") })
	if !errors.Is(err, context.DeadlineExceeded) || !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("Until = %v, want the deadline and the last 503", err)
	}
}
