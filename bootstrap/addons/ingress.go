package addons

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/bootstrap/addons/gatewayapi"
	"kubeforge.dev/kubeforge/contract"
)

// The ingress add-on's names: Traefik's ServiceAccount, Deployment and Service in kube-system,
// its IngressClass and GatewayClass, and the Gateway every namespace's routes may attach to.
const (
	TraefikName        = "traefik"
	IngressClassName   = "traefik"
	GatewayClassName   = "traefik"
	DefaultGatewayName = "traefik-gateway"
	// TraefikGatewayController is the controllerName Traefik serves GatewayClasses of.
	TraefikGatewayController = "traefik.io/gateway-controller"
	// TraefikIngressController is the controller Traefik serves IngressClasses of.
	TraefikIngressController = "traefik.io/ingress-controller"
)

// Traefik's entry points (container ports): Gateway listeners name these port numbers.
const (
	TraefikHTTPPort  = 8000
	TraefikHTTPSPort = 8443
	traefikPingPort  = 8080
)

// GatewayAPICRDs are the Gateway API CRDs the ingress add-on needs (standard channel).
func GatewayAPICRDs() ([]runtime.Object, error) {
	crds, err := gatewayapi.CRDs()
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Object, len(crds))
	for i, c := range crds {
		out[i] = c
	}
	return out, nil
}

// Traefik is the ingress add-on's objects: Traefik serving networking.k8s.io/v1 Ingresses (its
// IngressClass is the cluster's default) and Gateway API routes (a GatewayClass and a Gateway
// kube-system/traefik-gateway on HTTP), behind a LoadBalancer Service whose ports 80 and 443 are
// published on the host's httpPort and httpsPort.
func Traefik(image string, httpPort, httpsPort int) []runtime.Object {
	labels := map[string]string{"app.kubernetes.io/name": TraefikName, "app.kubernetes.io/instance": TraefikName}
	sa := serviceAccount(ns, TraefikName)
	read := []string{"get", "list", "watch"}
	status := []string{"update"}
	role := clusterRole(TraefikName,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services", "secrets", "configmaps", "nodes"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: status},
		rbacv1.PolicyRule{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{
			"gatewayclasses", "gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "referencegrants", "backendtlspolicies",
		}, Verbs: read},
		rbacv1.PolicyRule{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{
			"gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status", "tlsroutes/status", "tcproutes/status", "backendtlspolicies/status",
		}, Verbs: status},
	)
	args := []string{
		"--global.checkNewVersion=false",
		"--global.sendAnonymousUsage=false",
		"--log.level=INFO",
		"--log.format=common",
		"--log.noColor=true",
		fmt.Sprintf("--entryPoints.web.address=:%d", TraefikHTTPPort),
		fmt.Sprintf("--entryPoints.websecure.address=:%d", TraefikHTTPSPort),
		"--entryPoints.websecure.http.tls=true",
		fmt.Sprintf("--entryPoints.traefik.address=:%d", traefikPingPort),
		"--ping=true",
		"--ping.terminatingStatusCode=503",
		"--providers.providersThrottleDuration=500ms",
		"--providers.kubernetesingress=true",
		"--providers.kubernetesingress.ingressEndpoint.publishedService=" + ns + "/" + TraefikName,
		"--providers.kubernetesgateway=true",
		"--providers.kubernetesgateway.statusAddress.service.name=" + TraefikName,
		"--providers.kubernetesgateway.statusAddress.service.namespace=" + ns,
	}
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ping", Port: intstr.FromString("traefik")}},
			PeriodSeconds: period, FailureThreshold: failures,
		}
	}
	dep := systemDeployment(TraefikName, labels, corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](10),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:            TraefikName,
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            args,
			Env: []corev1.EnvVar{
				// A soft limit: the Go heap stays small on a laptop's cluster.
				{Name: "GOMEMLIMIT", Value: "200MiB"},
			},
			Ports: []corev1.ContainerPort{
				{Name: "web", ContainerPort: TraefikHTTPPort, Protocol: corev1.ProtocolTCP},
				{Name: "websecure", ContainerPort: TraefikHTTPSPort, Protocol: corev1.ProtocolTCP},
				{Name: "traefik", ContainerPort: traefikPingPort, Protocol: corev1.ProtocolTCP},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			ReadinessProbe: probe(2, 1),
			LivenessProbe:  probe(10, 3),
			SecurityContext: &corev1.SecurityContext{
				ReadOnlyRootFilesystem:   ptr.To(true),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		}},
		Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	})
	svc := &corev1.Service{
		TypeMeta: tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: TraefikName, Namespace: ns, Labels: labels,
			Annotations: map[string]string{contract.AnnotationHostPorts: "80=" + strconv.Itoa(httpPort) + ",443=" + strconv.Itoa(httpsPort)}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web"), AppProtocol: ptr.To("http")},
				{Name: "websecure", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("websecure"), AppProtocol: ptr.To("https")},
			},
		},
	}
	class := &networkingv1.IngressClass{
		TypeMeta: tm("networking.k8s.io/v1", "IngressClass"),
		ObjectMeta: metav1.ObjectMeta{Name: IngressClassName, Labels: labels,
			Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: TraefikIngressController},
	}
	// Gateway API objects, unstructured: the host CLI does not link sigs.k8s.io/gateway-api for
	// two objects.
	gwClass := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "GatewayClass",
		"metadata":   map[string]any{"name": GatewayClassName, "labels": toAny(labels)},
		"spec":       map[string]any{"controllerName": TraefikGatewayController},
	}}
	gw := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "Gateway",
		"metadata":   map[string]any{"name": DefaultGatewayName, "namespace": ns, "labels": toAny(labels)},
		"spec": map[string]any{
			"gatewayClassName": GatewayClassName,
			"listeners": []any{map[string]any{
				"name": "web", "protocol": "HTTP", "port": int64(TraefikHTTPPort),
				"allowedRoutes": map[string]any{"namespaces": map[string]any{"from": "All"}},
			}},
		},
	}}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: TraefikName, Namespace: ns, Labels: labels}},
		role,
		crb(TraefikName, TraefikName, sa),
		class,
		gwClass,
		gw,
		svc,
		dep,
	}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
