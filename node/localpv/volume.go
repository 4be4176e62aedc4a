// Package localpv is kubeforge's storage provisioner: it gives every PersistentVolumeClaim of a
// StorageClass whose provisioner is Name a directory on the node the claim's first pod was
// scheduled to (the class binds WaitForFirstConsumer, so the scheduler picks the node and records
// it on the claim), as a hostPath PersistentVolume pinned to that node by node affinity: a pod
// finds its data again after a restart or a reschedule. When such a volume is released and its
// reclaim policy is Delete, a short-lived pod on that node removes the directory, then the volume
// is deleted.
//
// The decisions are pure functions (Wants, Volume, CleanupPod); the Controller applies them.
package localpv

import (
	"errors"
	"fmt"
	"path"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/contract"
)

const (
	// Name is the provisioner name StorageClasses refer to.
	Name = contract.LocalVolumeProvisioner
	// DefaultRoot is the directory on every node under which volumes live.
	DefaultRoot = contract.LocalVolumesRoot

	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	annSelectedNode  = "volume.kubernetes.io/selected-node"
	// CleanupLabel marks the pods that remove a released volume's directory; its value is the
	// volume's name.
	CleanupLabel = "kubeforge.dev/volume-cleanup"
	hostnameKey  = "kubernetes.io/hostname"
)

// Wants returns the node a claim's volume must be made on, or ok=false when the claim is not
// this provisioner's to serve (bound, of another class, or its node not chosen yet). An error
// means the claim asks for something this provisioner cannot give; it stays pending.
func Wants(claim *v1.PersistentVolumeClaim, class *storagev1.StorageClass) (node string, ok bool, err error) {
	if class == nil || class.Provisioner != Name || claim.Spec.VolumeName != "" ||
		claim.Status.Phase != v1.ClaimPending || claim.DeletionTimestamp != nil {
		return "", false, nil
	}
	if claim.Spec.Selector != nil {
		return "", false, errors.New("a claim with a selector cannot be provisioned: remove spec.selector")
	}
	if claim.Spec.DataSource != nil || claim.Spec.DataSourceRef != nil {
		return "", false, errors.New("local volumes cannot be cloned or restored from a snapshot: remove spec.dataSource")
	}
	if _, ok := claim.Spec.Resources.Requests[v1.ResourceStorage]; !ok {
		return "", false, errors.New("the claim requests no storage: set spec.resources.requests.storage")
	}
	node = claim.Annotations[annSelectedNode]
	if node == "" {
		if class.VolumeBindingMode == nil || *class.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			return "", false, fmt.Errorf("storage class %s must bind WaitForFirstConsumer: a local volume lives on the node its pod runs on", class.Name)
		}
		return "", false, nil // the scheduler has not picked a node yet
	}
	return node, true, nil
}

// VolumeName is the name of the volume made for a claim: pvc-<claim UID>, as upstream names them.
func VolumeName(claim *v1.PersistentVolumeClaim) string { return "pvc-" + string(claim.UID) }

// Volume is the PersistentVolume for claim on node: a directory under root, bound to the claim
// and reachable only from that node.
func Volume(claim *v1.PersistentVolumeClaim, class *storagev1.StorageClass, node, root string) *v1.PersistentVolume {
	name := VolumeName(claim)
	reclaim := v1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: Name},
		},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: claim.Spec.Resources.Requests[v1.ResourceStorage]},
			AccessModes:                   claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			MountOptions:                  class.MountOptions,
			ClaimRef: &v1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{
				Path: path.Join(root, name),
				Type: ptr.To(v1.HostPathDirectoryOrCreate),
			}},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: hostnameKey, Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
}

// Released returns the node and directory of a volume this provisioner made and must now remove
// (released by its claim, reclaim policy Delete), or ok=false.
func Released(pv *v1.PersistentVolume) (node, dir string, ok bool) {
	if pv.Annotations[annProvisionedBy] != Name || pv.Status.Phase != v1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimDelete ||
		pv.Spec.HostPath == nil || pv.DeletionTimestamp != nil {
		return "", "", false
	}
	node = volumeNode(pv)
	if node == "" {
		return "", "", false
	}
	return node, pv.Spec.HostPath.Path, true
}

// volumeNode reads the node out of the volume's affinity, as Volume wrote it.
func volumeNode(pv *v1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, t := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range t.MatchExpressions {
			if e.Key == hostnameKey && e.Operator == v1.NodeSelectorOpIn && len(e.Values) == 1 {
				return e.Values[0]
			}
		}
	}
	return ""
}

// CleanupPodName is the name of the pod that removes a volume's directory.
func CleanupPodName(volume string) string { return "cleanup-" + volume }

// CleanupPod is the pod that removes dir on node. It runs image with the node's /usr mounted
// (the kube-components image has no binaries of its own) and the directory's parent as /volumes.
func CleanupPod(volume, node, dir, namespace, image string) *v1.Pod {
	dirType, parentType := v1.HostPathDirectory, v1.HostPathDirectoryOrCreate
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      CleanupPodName(volume),
			Namespace: namespace,
			Labels:    map[string]string{CleanupLabel: volume},
		},
		Spec: v1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 v1.RestartPolicyNever,
			PriorityClassName:             "system-node-critical",
			Tolerations:                   []v1.Toleration{{Operator: v1.TolerationOpExists}},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []v1.Container{{
				Name:            "cleanup",
				Image:           image,
				ImagePullPolicy: v1.PullIfNotPresent,
				Command:         []string{"/usr/bin/rm", "-rf", "--one-file-system", "--", path.Join("/volumes", path.Base(dir))},
				VolumeMounts: []v1.VolumeMount{
					{Name: "node-usr", MountPath: "/usr", ReadOnly: true},
					{Name: "volumes", MountPath: "/volumes"},
				},
			}},
			Volumes: []v1.Volume{
				{Name: "node-usr", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/usr", Type: &dirType}}},
				{Name: "volumes", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: path.Dir(dir), Type: &parentType}}},
			},
		},
	}
}
