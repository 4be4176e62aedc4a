//go:build e2e

package e2e

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// volumeFile is where the volume writers keep their file.
const volumeFile = "/data/f"

// writeVolume makes a claim of the default StorageClass and a pod (both named name) that writes
// text into it, and returns the node the pod runs on (where the volume lives).
func (e *env) writeVolume(ctx context.Context, cs kubernetes.Interface, clusterName, name, text string) string {
	e.t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Mi")}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	node := e.volumePod(ctx, cs, name, text)
	got, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil || got.Status.Phase != corev1.ClaimBound || *got.Spec.StorageClassName != "standard" {
		e.t.Fatalf("claim %s: %+v %v; want Bound to a volume of class standard", name, got, err)
	}
	e.checkVolume(ctx, clusterName, name, text)
	return node
}

// volumePod creates pod name on claim name, which writes text into the volume unless the volume
// has its file already, and returns the node it runs on once it runs. Called again after the pod
// was removed (a drain removes a pod no controller owns), it reads the volume's kept data.
func (e *env) volumePod(ctx context.Context, cs kubernetes.Interface, name, text string) string {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "writer", Image: BusyboxImage,
				Command:      []string{"sh", "-c", "test -f " + volumeFile + " || echo " + text + " > " + volumeFile + "; exec sleep 3600"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	p, err := podRunning(ctx, cs, "default", name, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if err != nil {
		e.t.Fatalf("the pod of claim %s never ran: %v", name, err)
	}
	return p.Spec.NodeName
}

// checkVolume checks that the pod name reads text from its volume.
func (e *env) checkVolume(ctx context.Context, clusterName, name, text string) {
	e.t.Helper()
	var r result
	// After a restart the pod may still be starting again.
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r = e.run(ctx, nil, "kubectl", "--name", clusterName, "--", "exec", name, "--", "cat", volumeFile)
		return r.Code == 0, nil
	})
	if strings.TrimSpace(r.Stdout) != text {
		e.t.Errorf("%s in pod %s: want %q, got %v", volumeFile, name, text, r)
	}
}

// releaseVolume deletes the pod and claim name and checks that the volume, and its directory on
// node, are removed.
func (e *env) releaseVolume(ctx context.Context, cs kubernetes.Interface, clusterName, node, name string) {
	e.t.Helper()
	claim, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pvName := claim.Spec.VolumeName
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	dir := pv.Spec.HostPath.Path
	if out := e.ok(ctx, "ssh", "--name", clusterName, node, "--", "ls", dir).Stdout; !strings.Contains(out, "f") {
		e.t.Errorf("volume directory %s on %s: %q, want the file f", dir, node, out)
	}
	_ = cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{})
	if err := cs.CoreV1().PersistentVolumeClaims("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		e.t.Fatalf("volume %s not deleted after its claim was: %v", pvName, err)
	}
	if r := e.run(ctx, nil, "ssh", "--name", clusterName, node, "--", "test", "-e", dir); r.Code == 0 {
		e.t.Errorf("directory %s of deleted volume %s still on %s", dir, pvName, node)
	}
}
