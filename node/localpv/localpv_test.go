package localpv

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func claim(mutate ...func(*v1.PersistentVolumeClaim)) *v1.PersistentVolumeClaim {
	c := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data", UID: "1234",
			Annotations: map[string]string{annSelectedNode: "dev-m02"}},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("standard"),
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimPending},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func TestWants(t *testing.T) {
	class := testClass("standard")
	immediate := testClass("fast")
	immediate.VolumeBindingMode = ptr.To(storagev1.VolumeBindingImmediate)
	other := testClass("other")
	other.Provisioner = "example.com/nfs"
	for _, tc := range []struct {
		name     string
		claim    *v1.PersistentVolumeClaim
		class    *storagev1.StorageClass
		wantNode string
		wantErr  string
	}{
		{name: "pending with a node", claim: claim(), class: class, wantNode: "dev-m02"},
		{name: "node not chosen yet", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Annotations = nil }), class: class},
		{name: "bound", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeName = "pvc-1234" }), class: class},
		{name: "other provisioner", claim: claim(), class: other},
		{name: "no class", claim: claim(), class: nil},
		{name: "being deleted", claim: claim(func(c *v1.PersistentVolumeClaim) { c.DeletionTimestamp = &metav1.Time{} }), class: class},
		{name: "selector", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Spec.Selector = &metav1.LabelSelector{} }), class: class, wantErr: "spec.selector"},
		{name: "data source", claim: claim(func(c *v1.PersistentVolumeClaim) {
			c.Spec.DataSource = &v1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "x"}
		}), class: class, wantErr: "spec.dataSource"},
		{name: "no size", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Spec.Resources.Requests = nil }), class: class, wantErr: "requests.storage"},
		{name: "immediate binding", claim: claim(func(c *v1.PersistentVolumeClaim) { c.Annotations = nil }), class: immediate, wantErr: "WaitForFirstConsumer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, ok, err := Wants(tc.claim, tc.class)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.wantNode != "") || node != tc.wantNode {
				t.Fatalf("Wants = %q, %v; want %q", node, ok, tc.wantNode)
			}
		})
	}
}

func TestVolumeAndRelease(t *testing.T) {
	c := claim()
	pv := Volume(c, testClass("standard"), "dev-m02", DefaultRoot)
	if pv.Name != "pvc-1234" || pv.Spec.HostPath.Path != DefaultRoot+"/pvc-1234" {
		t.Errorf("volume %s at %s", pv.Name, pv.Spec.HostPath.Path)
	}
	if pv.Spec.ClaimRef.UID != c.UID || pv.Spec.ClaimRef.Name != "data" || pv.Spec.ClaimRef.Namespace != "db" {
		t.Errorf("claimRef %+v does not name the claim", pv.Spec.ClaimRef)
	}
	if q := pv.Spec.Capacity[v1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("capacity %s, want the 1Gi requested", q.String())
	}
	if volumeNode(pv) != "dev-m02" {
		t.Errorf("volume pinned to %q, want dev-m02", volumeNode(pv))
	}
	if _, _, ok := Released(pv); ok {
		t.Error("a fresh volume counts as released")
	}
	pv.Status.Phase = v1.VolumeReleased
	node, dir, ok := Released(pv)
	if !ok || node != "dev-m02" || dir != DefaultRoot+"/pvc-1234" {
		t.Errorf("Released = %q %q %v", node, dir, ok)
	}
	pv.Spec.PersistentVolumeReclaimPolicy = v1.PersistentVolumeReclaimRetain
	if _, _, ok := Released(pv); ok {
		t.Error("a Retain volume would be removed")
	}
	pod := CleanupPod(pv.Name, node, dir, "kube-system", "img")
	if got := strings.Join(pod.Spec.Containers[0].Command, " "); got != "/usr/bin/rm -rf --one-file-system -- /volumes/pvc-1234" {
		t.Errorf("cleanup command %q", got)
	}
	if pod.Spec.NodeName != "dev-m02" || pod.Spec.Volumes[1].HostPath.Path != DefaultRoot {
		t.Errorf("cleanup pod on %q mounts %q", pod.Spec.NodeName, pod.Spec.Volumes[1].HostPath.Path)
	}
}

// TestController runs the controller against a fake API: a claim gets its volume, a released
// volume gets a cleanup pod, and once that pod succeeds the volume and the pod are gone.
func TestController(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dev-m02"}}
	client := fake.NewClientset(testClass("standard"), claim(), node)
	c, err := NewController(client, Options{Namespace: "kube-system", HelperImage: "img"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	pvs := client.CoreV1().PersistentVolumes()
	var pv *v1.PersistentVolume
	poll(t, "the volume is made", func() bool {
		pv, err = pvs.Get(ctx, "pvc-1234", metav1.GetOptions{})
		return err == nil
	})
	if volumeNode(pv) != "dev-m02" {
		t.Fatalf("volume on %q", volumeNode(pv))
	}

	pv.Status.Phase = v1.VolumeReleased
	if _, err := pvs.UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := client.CoreV1().Pods("kube-system")
	var pod *v1.Pod
	poll(t, "a cleanup pod runs", func() bool {
		pod, err = pods.Get(ctx, CleanupPodName("pvc-1234"), metav1.GetOptions{})
		return err == nil
	})
	if _, err := pvs.Get(ctx, "pvc-1234", metav1.GetOptions{}); err != nil {
		t.Fatalf("volume deleted before its directory: %v", err)
	}
	pod.Status.Phase = v1.PodSucceeded
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the volume and the cleanup pod are gone", func() bool {
		_, errV := pvs.Get(ctx, "pvc-1234", metav1.GetOptions{})
		_, errP := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(errV) && apierrors.IsNotFound(errP)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestControllerNodeGone: a released volume whose node was deleted is deleted without a cleanup
// pod (which could never run).
func TestControllerNodeGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pv := Volume(claim(), testClass("standard"), "gone", DefaultRoot)
	pv.Status.Phase = v1.VolumeReleased
	client := fake.NewClientset(testClass("standard"), pv)
	c, err := NewController(client, Options{Namespace: "kube-system", HelperImage: "img"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(ctx) }()
	poll(t, "the volume is deleted", func() bool {
		_, err := client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if pods, _ := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("cleanup pods made for a node that is gone: %d", len(pods.Items))
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}

// testClass is a StorageClass of this provisioner, as the default "standard" one is made.
func testClass(name string) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       Name,
		ReclaimPolicy:     ptr.To(v1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
	}
}
