package addons

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestMetricsServer(t *testing.T) {
	objs := MetricsServer("kubeforge.local/metrics-server:v0.8.0")
	kinds := map[string]int{}
	for _, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatalf("%T: %v", o, err)
		}
		u := unstructured.Unstructured{Object: m}
		kind := u.GetKind()
		if _, ok := resources[kind]; !ok {
			t.Errorf("%s %s: no resource known for its kind: apply and delete would fail", kind, u.GetName())
		}
		kinds[kind]++
	}
	for kind, n := range map[string]int{"ServiceAccount": 1, "ClusterRole": 2, "RoleBinding": 1, "ClusterRoleBinding": 2, "Service": 1, "Deployment": 1, "APIService": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d", kinds[kind], kind, n)
		}
	}
	deps := find[*appsv1.Deployment](objs)
	if len(deps) != 1 {
		t.Fatalf("%d Deployments", len(deps))
	}
	ctr := deps["kube-system/metrics-server"].Spec.Template.Spec.Containers[0]
	if ctr.Image != "kubeforge.local/metrics-server:v0.8.0" {
		t.Errorf("image %q", ctr.Image)
	}
	// The kubelets' serving certificates are the cluster CA's: verified, never skipped.
	if !slices.Contains(ctr.Args, "--kubelet-certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt") {
		t.Errorf("args %v do not verify the kubelets against the cluster CA", ctr.Args)
	}
	for _, a := range ctr.Args {
		if a == "--kubelet-insecure-tls" {
			t.Errorf("args %v skip the kubelets' TLS verification", ctr.Args)
		}
	}
	// A read-only root: metrics-server writes its self-signed certificate to the emptyDir /tmp.
	if len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].MountPath != "/tmp" || !slices.Contains(ctr.Args, "--cert-dir=/tmp") {
		t.Errorf("mounts %v, args %v: the certificate directory must be the mounted /tmp", ctr.VolumeMounts, ctr.Args)
	}
}

func TestDeleteOrder(t *testing.T) {
	// The APIService goes first: an aggregated API whose server is gone makes discovery fail
	// for every client until the APIService is removed.
	objs := MetricsServer("x")
	if objs[len(objs)-1].GetObjectKind().GroupVersionKind().Kind != "APIService" {
		t.Errorf("the APIService is applied last (after the server it names); got %v", objs[len(objs)-1].GetObjectKind())
	}
}
