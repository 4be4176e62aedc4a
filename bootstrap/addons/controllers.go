package addons

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	schedulingapiv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"

	"kubeforge.dev/kubeforge/internal/apiretry"
)

// controllerServiceAccounts are the ServiceAccounts in kube-system that the controller-manager
// (with --use-service-account-credentials, as kubeadm runs it) gets or creates for its
// controllers, one after the other, before any controller runs. Made in advance, its start skips
// a create per controller: ~0.4 s of a fresh cluster's start here (0.76 s -> 0.33 s from its
// lease to its controllers running). They are exactly the accounts it would make: the controller
// roles of the linked Kubernetes' RBAC bootstrap policy, less the cloud ones (route, service) and
// one disabled by default (selinux-warning), plus bootstrap-signer and token-cleaner, which have
// kube-system roles (TestControllerServiceAccounts checks the list against that policy). One the
// controller-manager no longer uses would be an idle account; one missing, it makes itself.
var controllerServiceAccounts = []string{
	"attachdetach-controller", "bootstrap-signer", "certificate-controller",
	"clusterrole-aggregation-controller", "cronjob-controller", "daemon-set-controller",
	"deployment-controller", "device-taint-eviction-controller", "disruption-controller",
	"endpoint-controller", "endpointslice-controller", "endpointslicemirroring-controller",
	"ephemeral-volume-controller", "expand-controller", "generic-garbage-collector",
	"horizontal-pod-autoscaler", "job-controller", "kube-apiserver-serving-clustertrustbundle-publisher",
	"legacy-service-account-token-cleaner", "namespace-controller", "node-controller",
	"persistent-volume-binder", "pod-garbage-collector", "podcertificaterequestcleaner",
	"pv-protection-controller", "pvc-protection-controller", "replicaset-controller",
	"replication-controller", "resource-claim-controller", "resourcequota-controller",
	"root-ca-cert-publisher", "service-account-controller", "service-cidrs-controller",
	"statefulset-controller", "storage-version-migrator-controller", "token-cleaner",
	"ttl-after-finished-controller", "ttl-controller",
	"validatingadmissionpolicy-status-controller", "volumeattributesclass-protection-controller",
}

// ControllerServiceAccounts returns the controller-manager's ServiceAccounts, to apply as soon as
// the API server serves (ApplyUntil), before the controller-manager starts at /readyz.
func ControllerServiceAccounts() []runtime.Object {
	out := make([]runtime.Object, 0, len(controllerServiceAccounts))
	for _, n := range controllerServiceAccounts {
		out = append(out, &corev1.ServiceAccount{
			TypeMeta:   tm("v1", "ServiceAccount"),
			ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: metav1.NamespaceSystem},
		})
	}
	return out
}

// SystemPriorityClasses returns the API server's system PriorityClasses (system-node-critical,
// system-cluster-critical), exactly as its scheduling/bootstrap-system-priority-classes hook makes
// them, to apply as soon as the API server serves. The hook waits a second before it makes them,
// and until then the API server refuses the kubelet's mirror pods of the static pods (they ask
// for system-node-critical); the kubelet retries at its next sync of each pod, sometimes seconds
// later, and start waits for those mirror pods. The hook finds them made and leaves them.
func SystemPriorityClasses() []runtime.Object {
	var out []runtime.Object
	for _, pc := range schedulingapiv1.SystemPriorityClasses() {
		pc.TypeMeta = tm("scheduling.k8s.io/v1", "PriorityClass")
		out = append(out, pc)
	}
	return out
}

// ApplyUntil applies objs with server-side apply (so applying again converges; workloads after
// everything else), each retried every interval while the API server is starting
// (not serving yet, 5xx, kube-system not made yet) until it is applied, the server refuses it for
// good (an invalid object) or ctx ends.
func ApplyUntil(ctx context.Context, dyn dynamic.Interface, objs []runtime.Object, interval time.Duration) error {
	return apply(ctx, objs, func(ctx context.Context, o runtime.Object) error {
		return apiretry.Until(ctx, interval, func(ctx context.Context) error { return applyOne(ctx, dyn, o) })
	})
}
