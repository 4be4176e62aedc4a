package addons

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"kubeforge.dev/kubeforge/bootstrap/addons/gatewayapi"
	"kubeforge.dev/kubeforge/contract"
)

func TestTraefik(t *testing.T) {
	crds, err := GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	objs := append(crds, Traefik("kubeforge.local/traefik:v3.7.13", 8080, 443)...)
	kinds := map[string]int{}
	var gateways []*unstructured.Unstructured
	for _, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatalf("%T: %v", o, err)
		}
		u := &unstructured.Unstructured{Object: m}
		if _, ok := resources[u.GetKind()]; !ok {
			t.Errorf("%s %s: no resource known for its kind: apply and delete would fail", u.GetKind(), u.GetName())
		}
		kinds[u.GetKind()]++
		if u.GetKind() == "Gateway" || u.GetKind() == "GatewayClass" {
			gateways = append(gateways, u)
		}
	}
	for kind, n := range map[string]int{"CustomResourceDefinition": 7, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1,
		"IngressClass": 1, "GatewayClass": 1, "Gateway": 1, "Service": 1, "Deployment": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d", kinds[kind], kind, n)
		}
	}

	dep := find[*appsv1.Deployment](objs)["kube-system/traefik"]
	if dep == nil {
		t.Fatal("no Deployment kube-system/traefik")
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	for _, a := range []string{"--providers.kubernetesingress=true", "--providers.kubernetesgateway=true",
		"--entryPoints.web.address=:8000", "--entryPoints.websecure.address=:8443", "--entryPoints.websecure.http.tls=true",
		"--global.sendAnonymousUsage=false", "--global.checkNewVersion=false", "--ping=true"} {
		if !slices.Contains(ctr.Args, a) {
			t.Errorf("args %v lack %s", ctr.Args, a)
		}
	}
	for _, a := range ctr.Args {
		if strings.HasPrefix(a, "--api") || strings.Contains(a, "experimentalChannel") {
			t.Errorf("arg %s: no dashboard/API and no experimental channel (its CRDs are not installed)", a)
		}
	}
	// Gateway listeners are matched to entry points by port: the default Gateway's HTTP listener
	// must name the web entry point's port.
	for _, g := range gateways {
		if g.GetKind() != "Gateway" {
			if c, _, _ := unstructured.NestedString(g.Object, "spec", "controllerName"); c != TraefikGatewayController {
				t.Errorf("GatewayClass controller %q", c)
			}
			continue
		}
		ls, _, _ := unstructured.NestedSlice(g.Object, "spec", "listeners")
		if len(ls) != 1 || ls[0].(map[string]any)["port"] != int64(TraefikHTTPPort) {
			t.Errorf("Gateway listeners %v: want one on %d", ls, TraefikHTTPPort)
		}
	}

	svc := find[*corev1.Service](objs)["kube-system/traefik"]
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 2 {
		t.Fatalf("Service %+v: want a LoadBalancer with 2 ports", svc)
	}
	if got := svc.Annotations[contract.AnnotationHostPorts]; got != "80=8080,443=443" {
		t.Errorf("host ports annotation %q", got)
	}
	class := find[*networkingv1.IngressClass](objs)["traefik"]
	if class == nil || class.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" || class.Spec.Controller != TraefikIngressController {
		t.Errorf("IngressClass %+v: want the default class, Traefik's controller", class)
	}
	// Traefik's informers need to list and watch every kind it serves; RBAC denied is a silent
	// provider that serves nothing.
	role := find[*rbacv1.ClusterRole](objs)["traefik"]
	can := func(group, res, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, c := range [][3]string{{"", "services", "watch"}, {"", "secrets", "list"}, {"discovery.k8s.io", "endpointslices", "watch"},
		{"networking.k8s.io", "ingresses", "watch"}, {"networking.k8s.io", "ingressclasses", "list"}, {"networking.k8s.io", "ingresses/status", "update"},
		{"gateway.networking.k8s.io", "httproutes", "watch"}, {"gateway.networking.k8s.io", "tlsroutes", "watch"},
		{"gateway.networking.k8s.io", "gateways/status", "update"}, {"", "namespaces", "watch"}} {
		if !can(c[0], c[1], c[2]) {
			t.Errorf("ClusterRole traefik cannot %s %s.%s", c[2], c[1], c[0])
		}
	}
}

func TestReplacesCRD(t *testing.T) {
	crd := func(ver, channel string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAnnotations(map[string]string{gatewayapi.BundleVersionAnnotation: ver, gatewayapi.ChannelAnnotation: channel})
		return u
	}
	ours := crd("v1.6.3", "standard")
	for _, tc := range []struct {
		have *unstructured.Unstructured
		want bool
	}{
		{crd("v1.5.0", "standard"), true},
		{crd("v1.6.3", "standard"), true},
		{crd("v1.7.0", "standard"), false},     // a newer release of the user's
		{crd("v1.6.3", "experimental"), false}, // the user's experimental channel
		{&unstructured.Unstructured{}, true},   // not the Gateway API's own annotations
		{crd("garbage", "standard"), true},
	} {
		if got := replaces(ours, tc.have); got != tc.want {
			t.Errorf("replaces(v1.6.3 standard, %v) = %v, want %v", tc.have.GetAnnotations(), got, tc.want)
		}
	}
}

func TestApplyOrder(t *testing.T) {
	// The CRDs go first (the Gateway and GatewayClass are of their kinds), the Deployment last.
	crds, err := GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	objs := append(Traefik("x", 80, 443), crds...)
	var mu sync.Mutex
	var seen []string
	if err := apply(t.Context(), objs, func(_ context.Context, o runtime.Object) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, o.GetObjectKind().GroupVersionKind().Kind)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lastCRD := slices.Index(seen, "CustomResourceDefinition")
	for i, k := range seen {
		if k == "CustomResourceDefinition" {
			lastCRD = i
		}
	}
	if lastCRD != 6 || seen[len(seen)-1] != "Deployment" || len(seen) != len(objs) {
		t.Errorf("applied in the order %v: want the 7 CRDs first, the Deployment last", seen)
	}
}
