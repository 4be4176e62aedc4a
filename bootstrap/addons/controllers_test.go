package addons

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// TestControllerServiceAccounts: the accounts made in advance are those the controller-manager of
// the linked Kubernetes makes: a version bump that adds or drops a controller fails here.
func TestControllerServiceAccounts(t *testing.T) {
	notMade := map[string]bool{"route-controller": true, "service-controller": true, "selinux-warning-controller": true}
	want := []string{"bootstrap-signer", "token-cleaner"}
	for _, r := range bootstrappolicy.ControllerRoles() {
		n := strings.TrimPrefix(r.Name, "system:controller:")
		if !notMade[n] {
			want = append(want, n)
		}
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(controllerServiceAccounts))
	if !slices.Equal(got, want) {
		t.Fatalf("controllerServiceAccounts =\n%v\nwant (from the RBAC bootstrap policy)\n%v", got, want)
	}
	for _, o := range ControllerServiceAccounts() {
		if gvk := o.GetObjectKind().GroupVersionKind(); gvk.Kind != "ServiceAccount" || gvk.Version != "v1" {
			t.Fatalf("object kind %v", gvk)
		}
	}
}

// TestApplyUntil: applies that fail while the API server starts (kube-system not there yet) are
// retried until every account is applied.
func TestApplyUntil(t *testing.T) {
	var failing atomic.Int32
	failing.Store(5)
	var mu sync.Mutex
	applied := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const prefix = "/api/v1/namespaces/kube-system/serviceaccounts/"
		if r.Method != http.MethodPatch || !strings.HasPrefix(r.URL.Path, prefix) ||
			r.Header.Get("Content-Type") != "application/apply-patch+yaml" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if failing.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","message":"namespaces \"kube-system\" not found","code":404}`))
			return
		}
		mu.Lock()
		applied[strings.TrimPrefix(r.URL.Path, prefix)] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body) // the applied object, as JSON
	}))
	defer srv.Close()
	dyn, err := dynamic.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ApplyUntil(ctx, dyn, ControllerServiceAccounts(), 10*time.Millisecond); err != nil {
		t.Fatalf("ApplyUntil: %v", err)
	}
	for _, n := range controllerServiceAccounts {
		if !applied[n] {
			t.Errorf("%s not applied", n)
		}
	}

	// A server that never accepts: ApplyUntil gives up with the error when ctx ends.
	failing.Store(1 << 30)
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := ApplyUntil(ctx, dyn, ControllerServiceAccounts(), 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("ApplyUntil against a failing server: %v", err)
	}
}

// TestSystemPriorityClasses: the API server's two system PriorityClasses, as objects Apply knows.
func TestSystemPriorityClasses(t *testing.T) {
	got := map[string]int32{}
	for _, o := range SystemPriorityClasses() {
		gvk := o.GetObjectKind().GroupVersionKind()
		if gvk.Group != "scheduling.k8s.io" || gvk.Version != "v1" || resources[gvk.Kind] != "priorityclasses" {
			t.Fatalf("object kind %v", gvk)
		}
		pc := o.(*schedulingv1.PriorityClass)
		got[pc.Name] = pc.Value
	}
	want := map[string]int32{"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
	if !maps.Equal(got, want) {
		t.Fatalf("priority classes %v, want %v", got, want)
	}
}
