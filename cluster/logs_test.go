package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
)

func tarball(t *testing.T, entries map[string]string) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range entries {
		if strings.HasSuffix(name, "/") {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755})
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	return &b
}

func TestUntar(t *testing.T) {
	dir := t.TempDir()
	err := untar(tarball(t, map[string]string{"kubeforge/": "", "kubeforge/kubelet.log": "k", "pods/a_b_1/c/0.log": "p"}), dir)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"kubeforge/kubelet.log": "k", "pods/a_b_1/c/0.log": "p"} {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", file, b, err)
		}
	}
	for _, bad := range []string{"../evil", "/etc/evil", "a/../../evil"} {
		if err := untar(tarball(t, map[string]string{bad: "x"}), t.TempDir()); err == nil {
			t.Errorf("entry %q was written", bad)
		}
	}
}

func TestTables(t *testing.T) {
	pods := []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns-x"},
		Spec:       corev1.PodSpec{NodeName: "dev", Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.3",
			ContainerStatuses: []corev1.ContainerStatus{{Ready: true, RestartCount: 2}}},
	}}
	if got := string(podTable(pods)); !strings.Contains(got, "coredns-x") || !strings.Contains(got, "1/1") || !strings.Contains(got, "10.244.0.3") {
		t.Errorf("pod table:\n%s", got)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	events := []corev1.Event{
		{Reason: "Second", LastTimestamp: metav1.NewTime(t0.Add(time.Minute))},
		{Reason: "First", EventTime: metav1.NewMicroTime(t0)},
	}
	got := string(eventTable(events))
	if strings.Index(got, "First") > strings.Index(got, "Second") {
		t.Errorf("events not oldest first:\n%s", got)
	}
}

// TestRunTimeout: a step that fails because the deadline passed (a Docker call cut short) is a
// timeout (exit 4), whatever error it returned.
func TestRunTimeout(t *testing.T) {
	p := &Provider{log: ui.Discard()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.runSteps(ctx, &build{}, []step{{name: "Node", run: func(ctx context.Context, _ *build) error {
		<-ctx.Done()
		return errors.New(`Get "http://docker/archive": context deadline exceeded`)
	}}}, true)
	if kferr.Code(err) != kferr.ExitTimeout || !strings.Contains(err.Error(), "timed out waiting") {
		t.Errorf("err %v (exit %d), want a timeout", err, kferr.Code(err))
	}
	// Without a deadline passed, a failure stays what it is.
	err = p.runSteps(context.Background(), &build{}, []step{{name: "Node", run: func(context.Context, *build) error { return errors.New("boom") }}}, true)
	if kferr.Code(err) != kferr.ExitInternal {
		t.Errorf("err %v (exit %d), want an internal failure", err, kferr.Code(err))
	}
}

func TestServiceProgrammed(t *testing.T) {
	rules := `*nat
-A KUBE-SEP-AAA -s 10.244.0.3/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAA -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.3:53
-A KUBE-SEP-BBB -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp" -m tcp -j DNAT --to-destination 10.244.0.9:53
-A KUBE-SVC-X -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SEP-AAA
COMMIT`
	if !serviceProgrammed(rules, dnsPortName, []string{"10.244.0.3"}, 53) {
		t.Error("the programmed endpoint was not found")
	}
	for _, ips := range [][]string{{"10.244.0.9"}, {"10.244.0.3", "10.244.1.2"}} {
		if serviceProgrammed(rules, dnsPortName, ips, 53) {
			t.Errorf("%v reported programmed (only 10.244.0.3 is, and 10.244.0.9 only for dns-tcp)", ips)
		}
	}
	if serviceProgrammed("", dnsPortName, []string{"10.244.0.3"}, 53) {
		t.Error("empty rules reported programmed")
	}
}
