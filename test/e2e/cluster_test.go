//go:build e2e

// Package e2e runs the kubeforge CLI (bin/kubeforge, built by `make`) against the real Docker
// daemon and checks what kubectl and client-go see. Run with `make e2e` (root, Docker, and
// Debian's busybox-static for the test image; hack/ensure-docker.sh installs them).
package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/test/kfcli"
	"kubeforge.dev/kubeforge/test/testimage"
)

// BusyboxImage is the test image, made from Debian's busybox-static (no registry is needed).
const BusyboxImage = testimage.Busybox

// env is one test's isolated kubeforge: its own state directory and kubeconfig.
type env struct {
	*kfcli.CLI
	t      *testing.T
	docker *client.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, err := kfcli.New(t.TempDir(), "make e2e")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &env{CLI: c, t: t, docker: cli}
}

// sub returns e for a subtest: its failures end the subtest, not the parent.
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// usageCase is a command that must fail with a usage error (exit 2) saying want.
type usageCase struct {
	args []string
	want string
}

// usageErrors runs each case and checks its exit code and message.
func (e *env) usageErrors(ctx context.Context, cases []usageCase) {
	e.t.Helper()
	for _, tc := range cases {
		r := e.run(ctx, nil, tc.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			e.t.Errorf("kubeforge %s: want exit 2 and %q, got %v", strings.Join(tc.args, " "), tc.want, r)
		}
	}
}

// result of one kubeforge run.
type result = kfcli.Result

// run runs kubeforge with args and extra environment variables (KEY=VALUE).
func (e *env) run(ctx context.Context, extraEnv []string, args ...string) result {
	e.t.Helper()
	r, err := e.Run(ctx, extraEnv, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("kubeforge %s: exit %d", strings.Join(args, " "), r.Code)
	return r
}

// ok runs kubeforge and fails the test unless it exits 0.
func (e *env) ok(ctx context.Context, args ...string) result {
	e.t.Helper()
	r := e.run(ctx, nil, args...)
	if r.Code != 0 {
		e.t.Fatalf("kubeforge %v failed: %v", args, r)
	}
	return r
}

// owned lists the Docker containers, networks and volumes labelled as the cluster's.
func (e *env) owned(ctx context.Context, name string) []string {
	e.t.Helper()
	f := filters.NewArgs(filters.Arg("label", "dev.kubeforge.cluster="+name))
	var left []string
	cs, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	ns, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range ns {
		left = append(left, "network "+n.Name)
	}
	vs, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		left = append(left, "volume "+v.Name)
	}
	return left
}

// deleteOnCleanup removes the cluster when the test ends, however it ends.
func (e *env) deleteOnCleanup(name string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if r := e.run(ctx, nil, "delete", "--name", name); r.Code != 0 {
			e.t.Errorf("cleanup: %v", r)
		}
	})
}

func (e *env) clientset(contextName string) *kubernetes.Clientset {
	e.t.Helper()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: e.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: contextName}).ClientConfig()
	if err != nil {
		e.t.Fatalf("loading context %s from %s: %v", contextName, e.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

// buildBusybox makes the test image in the host's Docker.
func buildBusybox(ctx context.Context, t *testing.T, cli *client.Client) {
	t.Helper()
	if err := testimage.BuildBusybox(ctx, cli); err != nil {
		t.Fatal(err)
	}
}

func podRunning(ctx context.Context, cs kubernetes.Interface, ns, name string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil && last != nil {
		return last, fmt.Errorf("pod %s/%s: phase %s, statuses %+v: %w", ns, name, last.Status.Phase, last.Status.ContainerStatuses, err)
	}
	return last, err
}

func freeLocalPort(t *testing.T) (int, net.Listener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().(*net.TCPAddr).Port, l
}
