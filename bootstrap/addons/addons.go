// Package addons makes the objects a kubeadm cluster has after `kubeadm init` and that kubeforge's
// own bootstrap must therefore create itself: the RBAC kubeadm would create, kube-proxy, CoreDNS,
// the default StorageClass and its provisioner,
// and the default ServiceAccount. Objects are built as typed API structs and applied server-side.
package addons

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/contract"
)

// Config is what the addons depend on.
type Config struct {
	KubernetesVersion string
	// ControlPlaneEndpoint is host:port where nodes reach the API server.
	ControlPlaneEndpoint string
	PodSubnet            string
	DNSDomain            string
	DNSServiceIP         netip.Addr
	CoreDNSImage         string
	CoreDNSReplicas      int32
	// FeatureGates are kube-proxy's (the cluster's, as the other components get them).
	FeatureGates map[string]bool
}

const ns = metav1.NamespaceSystem

// Objects returns every object to apply, in order.
func Objects(c Config) ([]runtime.Object, error) {
	objs := RBAC()
	objs = append(objs, &corev1.ServiceAccount{
		TypeMeta:   tm("v1", "ServiceAccount"),
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: metav1.NamespaceDefault},
	})
	kp, err := KubeProxy(c)
	if err != nil {
		return nil, err
	}
	objs = append(objs, kp...)
	objs = append(objs, CoreDNS(c)...)
	objs = append(objs, Storage(c)...)
	return objs, nil
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func crb(name, role string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

// NodeNetworkRole lets nodes list and watch Nodes, for their network controller.
const NodeNetworkRole = "kubeforge:node-network"

func clusterRole(name string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      rules,
	}
}

func group(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

func user(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

func serviceAccount(namespace, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}
}

// RBAC is what `kubeadm init` would bind: admins, the API server's kubelet client, node
// bootstrapping and certificate auto-approval for joining nodes.
func RBAC() []runtime.Object {
	return []runtime.Object{
		crb("kubeadm:cluster-admins", "cluster-admin", group("kubeadm:cluster-admins")),
		crb("kubeadm:kube-apiserver-kubelet-client", "system:kubelet-api-admin", user("kube-apiserver-kubelet-client")),
		clusterRole("kubeadm:get-nodes", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}),
		crb("kubeadm:get-nodes", "kubeadm:get-nodes", group("system:bootstrappers:kubeadm:default-node-token")),
		// The node's network controller (netctl, kubelet credentials) keeps routes to every other
		// node's pod CIDR: it lists and watches Nodes, which the Node authorizer leaves to RBAC.
		clusterRole(NodeNetworkRole, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}),
		crb(NodeNetworkRole, NodeNetworkRole, group("system:nodes")),
		crb("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", group("system:bootstrappers:kubeadm:default-node-token")),
		crb("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
			group("system:bootstrappers:kubeadm:default-node-token")),
		crb("kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
			group("system:nodes")),
		// The cloud provider (LoadBalancer Services, node/cloud): upstream's service controller
		// reads Services and Nodes, keeps its finalizer and the status, and records events.
		clusterRole(CloudProviderRole,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}}),
		crb(CloudProviderRole, CloudProviderRole, user(contract.CloudUser)),
	}
}

// CloudProviderRole is the cloud provider's ClusterRole (and its binding's name).
const CloudProviderRole = "kubeforge:cloud-provider"

// KubeProxyMinSyncPeriod is kube-proxy's iptables.minSyncPeriod (upstream 1s).
const KubeProxyMinSyncPeriod = "100ms"

// KubeProxy is kube-proxy's ServiceAccount, RBAC, ConfigMap and DaemonSet, as kubeadm makes them,
// running the node binary's kube-proxy in iptables mode.
func KubeProxy(c Config) ([]runtime.Object, error) {
	conf := map[string]any{
		"apiVersion":  "kubeproxy.config.k8s.io/v1alpha1",
		"kind":        "KubeProxyConfiguration",
		"mode":        "iptables",
		"clusterCIDR": c.PodSubnet,
		"bindAddress": "0.0.0.0",
		"clientConnection": map[string]any{
			"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf",
		},
		// The global conntrack table belongs to the host: a container node must not resize it.
		"conntrack": map[string]any{
			"maxPerCore":            0,
			"min":                   nil,
			"tcpEstablishedTimeout": "0s",
			"tcpCloseWaitTimeout":   "0s",
		},
		"metricsBindAddress": "127.0.0.1:10249",
		// Upstream waits at least 1 s between two syncs of the rules, to batch the churn of big
		// clusters. A local cluster has a few Services: apply a change (CoreDNS turning ready at
		// start) within 100 ms instead of up to a second later.
		"iptables": map[string]any{"minSyncPeriod": KubeProxyMinSyncPeriod},
	}
	if len(c.FeatureGates) > 0 {
		conf["featureGates"] = c.FeatureGates
	}
	confYAML, err := yaml.Marshal(conf)
	if err != nil {
		return nil, err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: https://%s
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
`, c.ControlPlaneEndpoint)
	labels := map[string]string{"k8s-app": "kube-proxy"}
	fileOrCreate := corev1.HostPathFileOrCreate
	dir := corev1.HostPathDirectory
	ds := &appsv1.DaemonSet{
		TypeMeta:   tm("apps/v1", "DaemonSet"),
		ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork:        true,
					PriorityClassName:  "system-node-critical",
					ServiceAccountName: "kube-proxy",
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name:            "kube-proxy",
						Image:           controlplane.ComponentsImage(c.KubernetesVersion),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{contract.NodeBinary, "kube-proxy",
							"--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"},
						Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
							{Name: contract.SteadyGCEnv, Value: controlplane.SteadyGCPercent}},
						SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "node-usr", MountPath: "/usr", ReadOnly: true},
							{Name: "alternatives", MountPath: "/etc/alternatives", ReadOnly: true},
							{Name: "kube-proxy", MountPath: "/var/lib/kube-proxy"},
							{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "node-usr", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/usr", Type: &dir}}},
						{Name: "alternatives", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/alternatives", Type: &dir}}},
						{Name: "kube-proxy", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "kube-proxy"}}}},
						{Name: "xtables-lock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/xtables.lock", Type: &fileOrCreate}}},
					},
				},
			},
		},
	}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: ns}},
		crb("kubeadm:node-proxier", "system:node-proxier", serviceAccount(ns, "kube-proxy")),
		&corev1.ConfigMap{
			TypeMeta:   tm("v1", "ConfigMap"),
			ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: ns, Labels: map[string]string{"app": "kube-proxy"}},
			Data:       map[string]string{"config.conf": string(confYAML), "kubeconfig.conf": kubeconfig},
		},
		ds,
	}, nil
}

// apiServerEnv points a pod's in-cluster client straight at the control-plane endpoint (the
// API server, or the load balancer of an HA cluster) rather than at the kubernetes Service: the
// cluster's DNS and storage then start without waiting for kube-proxy to program the Service
// (which matters at every start and restart of the cluster). kube-proxy itself does the same.
func apiServerEnv(c Config) []corev1.EnvVar {
	host, port, err := net.SplitHostPort(c.ControlPlaneEndpoint)
	if err != nil {
		return nil
	}
	return []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: host}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}}
}

// Corefile is CoreDNS's configuration, as kubeadm ships it.
func Corefile(domain string) string {
	return strings.ReplaceAll(`.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes DOMAIN in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`, "DOMAIN", domain)
}

// CoreDNS is the cluster DNS: ServiceAccount, RBAC, ConfigMap, Deployment and the kube-dns Service.
func CoreDNS(c Config) []runtime.Object {
	labels := map[string]string{"k8s-app": "kube-dns"}
	replicas := c.CoreDNSReplicas
	if replicas == 0 {
		replicas = 1
	}
	role := &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: "coredns",
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
					},
					Containers: []corev1.Container{{
						Name:            "coredns",
						Image:           c.CoreDNSImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"-conf", "/etc/coredns/Corefile"},
						Env:             apiServerEnv(c),
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt(8080), Scheme: corev1.URISchemeHTTP}},
							InitialDelaySeconds: 60, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 5,
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt(8181), Scheme: corev1.URISchemeHTTP}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
							ReadOnlyRootFilesystem:   ptr.To(true),
						},
					}},
					Volumes: []corev1.Volume{{Name: "config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"},
						Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
					}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta: tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: ns,
			Labels:      map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
			Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
		Spec: corev1.ServiceSpec{
			Selector:  labels,
			ClusterIP: c.DNSServiceIP.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(9153)},
			},
		},
	}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: ns}},
		role,
		crb("system:coredns", "system:coredns", serviceAccount(ns, "coredns")),
		&corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: ns},
			Data: map[string]string{"Corefile": Corefile(c.DNSDomain)}},
		dep,
		svc,
	}
}

// systemDeployment is an add-on's Deployment in kube-system: pods of the system-cluster-critical
// class, run by the ServiceAccount of the same name, tolerating the control plane's taint, and
// rolled without ever having fewer ready than wanted. pod is the rest of the pod's spec.
func systemDeployment(name string, labels map[string]string, pod corev1.PodSpec) *appsv1.Deployment {
	pod.ServiceAccountName = name
	pod.PriorityClassName = "system-cluster-critical"
	pod.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	pod.Tolerations = append(pod.Tolerations,
		corev1.Toleration{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
		corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
	)
	return &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0))},
			},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
}
