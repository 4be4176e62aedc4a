package gatewayapi

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range crds {
		if c.GetKind() != "CustomResourceDefinition" || c.GetAPIVersion() != "apiextensions.k8s.io/v1" {
			t.Errorf("%s: kind %s %s, want a CustomResourceDefinition", c.GetName(), c.GetAPIVersion(), c.GetKind())
		}
		if v := c.GetAnnotations()[BundleVersionAnnotation]; v != Version {
			t.Errorf("%s: bundle-version %q, want %q (run hack/update-gateway-api-crds.sh %s)", c.GetName(), v, Version, Version)
		}
		if ch := c.GetAnnotations()[ChannelAnnotation]; ch != "standard" {
			t.Errorf("%s: channel %q, want standard", c.GetName(), ch)
		}
		k, _, _ := unstructured.NestedString(c.Object, "spec", "names", "kind")
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	want := []string{"BackendTLSPolicy", "GRPCRoute", "Gateway", "GatewayClass", "HTTPRoute", "ReferenceGrant", "TLSRoute"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
}
