package addons

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/bootstrap/controlplane"
	"kubeforge.dev/kubeforge/contract"
)

// StorageClassName is the default StorageClass, named as minikube and kind name theirs.
const StorageClassName = "standard"

// Storage is the default StorageClass and its provisioner (node/localpv): a Deployment in
// kube-system on a control-plane node, as minikube's storage-provisioner pod, with the RBAC to
// manage PersistentVolumes and the cleanup pods that remove released volumes' directories.
func Storage(c Config) []runtime.Object {
	const name = "storage-provisioner"
	labels := map[string]string{"k8s-app": name}
	image := controlplane.ComponentsImage(c.KubernetesVersion)
	dir := corev1.HostPathDirectory
	role := clusterRole("kubeforge:"+name,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	)
	podsRole := &rbacv1.Role{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: metav1.ObjectMeta{Name: "kubeforge:" + name, Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"},
			Verbs: []string{"get", "list", "watch", "create", "delete"}}},
	}
	podsBinding := &rbacv1.RoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: "kubeforge:" + name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: podsRole.Name},
		Subjects:   []rbacv1.Subject{serviceAccount(ns, name)},
	}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// One provisioner at a time: it acts without leader election.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: name,
					// On a control plane, so that workers stay as lean as they can be.
					NodeSelector: map[string]string{"kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""},
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
					},
					Containers: []corev1.Container{{
						Name:            name,
						Image:           image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{contract.NodeBinary, name,
							"--namespace=" + ns, "--helper-image=" + image, "--root=" + contract.LocalVolumesRoot},
						Env: append(apiServerEnv(c), corev1.EnvVar{Name: contract.SteadyGCEnv, Value: controlplane.SteadyGCPercent}),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("20Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "node-usr", MountPath: "/usr", ReadOnly: true}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							ReadOnlyRootFilesystem:   ptr.To(true),
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "node-usr", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/usr", Type: &dir}}},
					},
				},
			},
		},
	}
	return []runtime.Object{
		storageClass(StorageClassName),
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}},
		role,
		crb("kubeforge:"+name, role.Name, serviceAccount(ns, name)),
		podsRole,
		podsBinding,
		dep,
	}
}

// storageClass is the default class, served by the storage provisioner (node/localpv).
func storageClass(name string) *storagev1.StorageClass {
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	reclaim := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{
		TypeMeta: metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       contract.LocalVolumeProvisioner,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &mode,
	}
}
