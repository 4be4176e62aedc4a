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
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

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
}

// workloads are the kinds applied after everything else: their pods need the ServiceAccounts,
// ConfigMaps and RBAC to exist, or the controllers back off and retry.
var workloads = map[string]bool{"DaemonSet": true, "Deployment": true}

// applyConcurrency bounds the requests in flight.
const applyConcurrency = 8

// apply runs one for each object: first every object that is not a workload, concurrently, then
// the workloads.
func apply(ctx context.Context, objs []runtime.Object, one func(context.Context, runtime.Object) error) error {
	var first, then []runtime.Object
	for _, o := range objs {
		if workloads[o.GetObjectKind().GroupVersionKind().Kind] {
			then = append(then, o)
		} else {
			first = append(first, o)
		}
	}
	for _, wave := range [][]runtime.Object{first, then} {
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
// are no error.
func Delete(ctx context.Context, dyn dynamic.Interface, objs []runtime.Object) error {
	order := func(o runtime.Object) int {
		switch k := o.GetObjectKind().GroupVersionKind().Kind; {
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
	if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying %s %s: %w", strings.ToLower(gvk.Kind), name(u), err)
	}
	return nil
}

func name(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return u.GetNamespace() + "/" + u.GetName()
	}
	return u.GetName()
}
