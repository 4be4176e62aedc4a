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

// TestBootstrapHasTheGate: the policy grants the scheduler and the controller-manager their
// authentication ConfigMap with GateRoleBinding, the binding controlplane/startorder waits for.
func TestBootstrapHasTheGate(t *testing.T) {
	p := Bootstrap()
	if len(p.ClusterRoles) < 50 || len(p.ClusterRoleBindings) < 40 || len(p.Roles) == 0 || len(p.RoleBindings) == 0 {
		t.Fatalf("policy looks empty: %d cluster roles, %d cluster role bindings, %d roles, %d role bindings",
			len(p.ClusterRoles), len(p.ClusterRoleBindings), len(p.Roles), len(p.RoleBindings))
	}
	var found bool
	for _, b := range p.RoleBindings {
		if b.Name != GateRoleBinding || b.Namespace != metav1.NamespaceSystem {
			continue
		}
		found = true
		users := map[string]bool{}
		for _, s := range b.Subjects {
			users[s.Name] = true
		}
		if !users[user.KubeScheduler] || !users[user.KubeControllerManager] {
			t.Errorf("%s binds %v, want the scheduler and the controller-manager", GateRoleBinding, b.Subjects)
		}
		if b.RoleRef.Name != "extension-apiserver-authentication-reader" {
			t.Errorf("%s binds role %s", GateRoleBinding, b.RoleRef.Name)
		}
	}
	if !found {
		t.Fatalf("no RoleBinding kube-system/%s in the bootstrap policy", GateRoleBinding)
	}
	// The hook's own lists: the same counts.
	if n := len(bootstrappolicy.ClusterRoles()) + len(bootstrappolicy.ControllerRoles()); n != len(p.ClusterRoles) {
		t.Errorf("%d cluster roles, the hook makes %d", len(p.ClusterRoles), n)
	}
}

// TestCreate: every object is created once, the gate binding after all others; a server still
// starting (503, kube-system missing) is waited out and existing objects are left alone.
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
	if last := order[len(order)-1]; last != metav1.NamespaceSystem+"/"+GateRoleBinding {
		t.Fatalf("last created %s, want the gate binding", last)
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
