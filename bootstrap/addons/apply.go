package addons

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/bootstrap/addons/gatewayapi"
	"kubeforge.dev/kubeforge/internal/apiretry"
	"kubeforge.dev/kubeforge/internal/safe"
)

// FieldManager names kubeforge in managedFields.
const FieldManager = "kubeforge"

// resources maps the kinds kubeforge applies to their resource names.
var resources = map[string]string{
	"ServiceAccount":     "serviceaccounts",
	"ConfigMap":          "configmaps",
	"Service":            "services",
	"Secret":             "secrets",
	"Namespace":          "namespaces",
	"DaemonSet":          "daemonsets",
	"Deployment":         "deployments",
	"ClusterRole":        "clusterroles",
	"ClusterRoleBinding": "clusterrolebindings",
	"Role":               "roles",
	"RoleBinding":        "rolebindings",
	"StorageClass":       "storageclasses",
	"PriorityClass":      "priorityclasses",
	"APIService":         "apiservices",
	"IngressClass":       "ingressclasses",
	"GatewayClass":       "gatewayclasses",
	"Gateway":            "gateways",
	crdKind:              "customresourcedefinitions",
}

// crdKind is applied first, and each is waited for until it is Established, so that the objects
// of its kinds and the informers of the add-on's pods find it at their first try.
const crdKind = "CustomResourceDefinition"

// workloads are the kinds applied after everything else: their pods need the ServiceAccounts,
// ConfigMaps and RBAC to exist, or the controllers back off and retry.
var workloads = map[string]bool{"DaemonSet": true, "Deployment": true}

// applyConcurrency bounds the requests in flight.
const applyConcurrency = 8

// apply runs one for each object, in waves, each concurrently: the CustomResourceDefinitions,
// then every object that is not a workload, then the workloads.
func apply(ctx context.Context, objs []runtime.Object, one func(context.Context, runtime.Object) error) error {
	var crds, first, then []runtime.Object
	for _, o := range objs {
		switch k := o.GetObjectKind().GroupVersionKind().Kind; {
		case k == crdKind:
			crds = append(crds, o)
		case workloads[k]:
			then = append(then, o)
		default:
			first = append(first, o)
		}
	}
	for _, wave := range [][]runtime.Object{crds, first, then} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(applyConcurrency)
		for _, o := range wave {
			safe.Go(g, func() error { return one(gctx, o) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// resourceOf returns o as unstructured and the client of its resource.
func resourceOf(dyn dynamic.Interface, o runtime.Object) (*unstructured.Unstructured, dynamic.ResourceInterface, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	gvk := u.GroupVersionKind()
	res, ok := resources[gvk.Kind]
	if !ok {
		return nil, nil, fmt.Errorf("addons: no resource known for kind %s", gvk.Kind)
	}
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: res}
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if ns := u.GetNamespace(); ns != "" {
		ri = dyn.Resource(gvr).Namespace(ns)
	}
	return u, ri, nil
}

// Delete deletes objs (those of an add-on): first the APIServices (so that the aggregated API
// goes before the server behind it), then the workloads, then the rest. Objects already gone
// are no error. CustomResourceDefinitions stay: deleting one would delete every object of its
// kind, the user's too.
func Delete(ctx context.Context, dyn dynamic.Interface, objs []runtime.Object) error {
	order := func(o runtime.Object) int {
		switch k := o.GetObjectKind().GroupVersionKind().Kind; {
		case k == crdKind:
			return -1
		case k == "APIService":
			return 0
		case workloads[k]:
			return 1
		}
		return 2
	}
	for wave := 0; wave <= 2; wave++ {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(applyConcurrency)
		for _, o := range objs {
			if order(o) != wave {
				continue
			}
			safe.Go(g, func() error {
				u, ri, err := resourceOf(dyn, o)
				if err != nil {
					return err
				}
				err = apiretry.Until(gctx, time.Second, func(ctx context.Context) error {
					err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
					if apierrors.IsNotFound(err) {
						return nil
					}
					return err
				})
				if err != nil {
					return fmt.Errorf("deleting %s %s: %w", strings.ToLower(u.GetKind()), name(u), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

func applyOne(ctx context.Context, dyn dynamic.Interface, o runtime.Object) error {
	u, ri, err := resourceOf(dyn, o)
	if err != nil {
		return err
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	gvk := u.GroupVersionKind()
	if gvk.Kind == crdKind {
		have, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case err == nil && !replaces(u, have):
			return established(ctx, ri, u.GetName()) // the user's own, newer or experimental: kept
		case err != nil && !apierrors.IsNotFound(err):
			return fmt.Errorf("reading %s %s: %w", strings.ToLower(gvk.Kind), name(u), err)
		}
	}
	if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying %s %s: %w", strings.ToLower(gvk.Kind), name(u), err)
	}
	if gvk.Kind == crdKind {
		return established(ctx, ri, u.GetName())
	}
	return nil
}

// replaces reports whether CRD want may overwrite CRD have: not when have is of another channel
// (a user's experimental Gateway API) or of a newer release.
func replaces(want, have *unstructured.Unstructured) bool {
	wa, ha := want.GetAnnotations(), have.GetAnnotations()
	if ha[gatewayapi.ChannelAnnotation] != "" && ha[gatewayapi.ChannelAnnotation] != wa[gatewayapi.ChannelAnnotation] {
		return false
	}
	hv, herr := version.ParseSemantic(ha[gatewayapi.BundleVersionAnnotation])
	wv, werr := version.ParseSemantic(wa[gatewayapi.BundleVersionAnnotation])
	if herr != nil || werr != nil {
		return true
	}
	return !hv.GreaterThan(wv)
}

// established waits until the CRD called name serves its kinds.
func established(ctx context.Context, ri dynamic.ResourceInterface, name string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		crd, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		last = fmt.Errorf("not Established yet")
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("customresourcedefinition %s: %w (%v)", name, err, last)
	}
	return nil
}

func name(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return u.GetNamespace() + "/" + u.GetName()
	}
	return u.GetName()
}
