package rbacseed

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// TestBootstrap: the policy is the hook's: the same lists (counts), with the bindings the
// scheduler and the controller-manager need.
func TestBootstrap(t *testing.T) {
	p := Bootstrap()
	if n := len(bootstrappolicy.ClusterRoles()) + len(bootstrappolicy.ControllerRoles()); n != len(p.ClusterRoles) || n < 50 {
		t.Errorf("%d cluster roles, the hook makes %d", len(p.ClusterRoles), n)
	}
	if n := len(bootstrappolicy.ClusterRoleBindings()) + len(bootstrappolicy.ControllerRoleBindings()); n != len(p.ClusterRoleBindings) || n < 40 {
		t.Errorf("%d cluster role bindings, the hook makes %d", len(p.ClusterRoleBindings), n)
	}
	if len(p.Roles) == 0 || len(p.RoleBindings) == 0 {
		t.Fatalf("%d roles, %d role bindings", len(p.Roles), len(p.RoleBindings))
	}
	bound := map[string]bool{}
	for _, b := range p.ClusterRoleBindings {
		for _, s := range b.Subjects {
			bound[b.RoleRef.Name+" "+s.Name] = true
		}
	}
	for _, want := range []string{"system:kube-scheduler " + user.KubeScheduler, "system:kube-controller-manager " + user.KubeControllerManager} {
		if !bound[want] {
			t.Errorf("no cluster role binding %s", want)
		}
	}
}

// TestCreate: every object is created once; a server still starting (503, kube-system missing)
// is waited out and existing objects are left alone.
func TestCreate(t *testing.T) {
	cs := fake.NewClientset()
	p := Bootstrap()
	total := len(p.ClusterRoles) + len(p.ClusterRoleBindings) + len(p.Roles) + len(p.RoleBindings)

	var mu sync.Mutex
	var order []string
	var calls atomic.Int32
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n := calls.Add(1)
		ca := a.(k8stesting.CreateAction)
		name := ca.GetObject().(metav1.Object).GetName()
		switch {
		case n <= 5: // the API server is not ready for writes yet
			return true, nil, apierrors.NewServiceUnavailable("starting")
		case a.GetNamespace() != "" && n <= 40: // kube-system not made yet
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, a.GetNamespace())
		case a.GetResource().Resource == "clusterroles" && name == "cluster-admin": // made before (by the hook)
			return true, nil, apierrors.NewAlreadyExists(a.GetResource().GroupResource(), name)
		}
		mu.Lock()
		order = append(order, a.GetNamespace()+"/"+name)
		mu.Unlock()
		return false, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Create(ctx, cs, p, time.Millisecond); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(order) != total-1 {
		t.Fatalf("%d objects created, want %d (all but cluster-admin)", len(order), total-1)
	}
	crs, err := cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil || len(crs.Items) != len(p.ClusterRoles)-1 {
		t.Fatalf("%v cluster roles stored (%v), want %d", len(crs.Items), err, len(p.ClusterRoles)-1)
	}
}

// TestCreateStops: a malformed object ends Create with the server's error; a server that never
// gets ready ends it when ctx ends.
func TestCreateStops(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "clusterroles", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}, "x", nil)
	})
	if err := Create(context.Background(), cs, Bootstrap(), time.Millisecond); !apierrors.IsInvalid(err) {
		t.Fatalf("Create = %v, want the Invalid error", err)
	}

	cs = fake.NewClientset()
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("starting")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Create(ctx, cs, Bootstrap(), 5*time.Millisecond); err == nil || ctx.Err() == nil {
		t.Fatalf("Create = %v before its context ended", err)
	}
}
