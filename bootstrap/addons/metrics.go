package addons

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// MetricsServerName names the metrics-server add-on's objects (ServiceAccount, Deployment,
// Service) in kube-system; MetricsAPIService is the APIService it serves.
const (
	MetricsServerName = "metrics-server"
	MetricsAPIService = "v1beta1.metrics.k8s.io"
)

// MetricsServer is metrics-server's objects, as its upstream manifests (manifests/base of
// sigs.k8s.io/metrics-server) make them, with two differences: the kubelets' serving
// certificates are verified against the cluster CA (kubeforge signs them; upstream's kind and
// minikube recipes turn verification off with --kubelet-insecure-tls), and the pod is ready as
// soon as it has scraped once rather than after upstream's 20 s initial delay.
func MetricsServer(image string) []runtime.Object {
	labels := map[string]string{"k8s-app": MetricsServerName}
	sa := serviceAccount(ns, MetricsServerName)
	reader := clusterRole("system:aggregated-metrics-reader",
		rbacv1.PolicyRule{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}})
	reader.Labels = map[string]string{
		"rbac.authorization.k8s.io/aggregate-to-view":  "true",
		"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
		"rbac.authorization.k8s.io/aggregate-to-admin": "true",
	}
	role := clusterRole("system:metrics-server",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}})
	authReader := &rbacv1.RoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server-auth-reader", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
		Subjects:   []rbacv1.Subject{sa},
	}
	https := intstr.FromString("https")
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: https, Scheme: corev1.URISchemeHTTPS}},
			PeriodSeconds: period, FailureThreshold: 3,
		}
	}
	dep := systemDeployment(MetricsServerName, labels, corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:            MetricsServerName,
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args: []string{
				"--cert-dir=/tmp",
				"--secure-port=10250",
				"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
				"--kubelet-use-node-status-port",
				"--kubelet-certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
				"--metric-resolution=15s",
			},
			Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 10250, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("200Mi")},
			},
			ReadinessProbe: probe("/readyz", 2),
			LivenessProbe:  probe("/livez", 10),
			SecurityContext: &corev1.SecurityContext{
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
				RunAsUser:                ptr.To[int64](1000),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "tmp-dir", MountPath: "/tmp"}},
		}},
		Volumes: []corev1.Volume{{Name: "tmp-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	})
	svc := &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: MetricsServerName, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: https, AppProtocol: ptr.To("https")}},
		},
	}
	// apiregistration.k8s.io/v1 APIService, unstructured: its Go types are the aggregator's
	// (k8s.io/kube-aggregator), which the host CLI does not link for this one object.
	api := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": MetricsAPIService, "labels": map[string]any{"k8s-app": MetricsServerName}},
		"spec": map[string]any{
			"service":               map[string]any{"name": MetricsServerName, "namespace": ns},
			"group":                 "metrics.k8s.io",
			"version":               "v1beta1",
			"insecureSkipTLSVerify": true,
			"groupPriorityMinimum":  int64(100),
			"versionPriority":       int64(100),
		},
	}}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: MetricsServerName, Namespace: ns, Labels: labels}},
		reader,
		role,
		authReader,
		crb("metrics-server:system:auth-delegator", "system:auth-delegator", sa),
		crb("system:metrics-server", "system:metrics-server", sa),
		svc,
		dep,
		api,
	}
}
