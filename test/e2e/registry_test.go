//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/volume"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"kubeforge.dev/kubeforge/provision"
)

const (
	registryName   = "kubeforge-registry"
	registryVolume = "kubeforge-registry-data"
	registryHost   = "localhost:5001"
)

type registryListed struct {
	Name         string   `json:"name"`
	State        string   `json:"state"`
	HostPort     int      `json:"hostPort"`
	Host         string   `json:"host"`
	Clusters     []string `json:"clusters"`
	Repositories []string `json:"repositories"`
	CatalogError string   `json:"catalogError"`
}

// registryList is `kubeforge registry list -o json`.
func (e *env) registryList(ctx context.Context) []registryListed {
	e.t.Helper()
	var list []registryListed
	out := e.ok(ctx, "registry", "list", "-o", "json").Stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("registry list -o json: %v\n%s", err, out)
	}
	return list
}

// dockerCLI runs the docker command (as a user does: docker push, docker build) and returns its
// output; a failure ends the test.
func dockerCLI(ctx context.Context, t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("docker %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// repoDigest is the digest the registry gave ref when it was pushed (its repository digest).
func (e *env) repoDigest(ctx context.Context, ref string) string {
	e.t.Helper()
	insp, err := e.docker.ImageInspect(ctx, ref)
	if err != nil {
		e.t.Fatal(err)
	}
	repo := ref[:strings.LastIndex(ref, ":")]
	for _, d := range insp.RepoDigests {
		if r, digest, ok := strings.Cut(d, "@"); ok && r == repo {
			return digest
		}
	}
	e.t.Fatalf("image %s has no digest of %s: %v", ref, repo, insp.RepoDigests)
	return ""
}

// registryLeft lists the containers and volumes named kubeforge-registry*.
func (e *env) registryLeft(ctx context.Context) []string {
	e.t.Helper()
	var left []string
	cs, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", registryName))})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	vs, err := e.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", registryName))})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range vs.Volumes {
		left = append(left, "volume "+v.Name)
	}
	return left
}

// appPod is a pod of one container running image (sleeping), on node when given.
func appPod(name, image, node string, policy corev1.PullPolicy) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Tolerations:                   []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{
				Name: "app", Image: image, ImagePullPolicy: policy,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
}

// runningImage waits for pod name to run and returns its container's image ID.
func runningImage(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) (*corev1.Pod, string) {
	t.Helper()
	p, err := podRunning(ctx, cs, "default", name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	if err != nil {
		t.Fatalf("pod %s does not run: %v", name, err)
	}
	return p, p.Status.ContainerStatuses[0].ImageID
}

// TestRegistry: `start --nodes 3 --registry` makes the shared registry (its own label, not the
// cluster's; a volume; 127.0.0.1:5001; unless-stopped) and connects it to the cluster's network
// at its reserved address; the host pushes with plain `docker push localhost:5001/...` (Docker
// treats 127.0.0.0/8 as insecure); a Deployment pulls it on every node; a pod pulls it by the
// registry's in-network name; imagePullPolicy Always follows a moved tag; a missing image is
// ErrImagePull/ImagePullBackOff naming it; a node added later and the nodes after stop/start
// still pull from it; `registry list` shows the repository and the cluster; deleting the cluster
// keeps the registry and its images; `registry delete` removes everything; a busy port is refused.
func TestRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e := newEnv(t)
	const name = "kf-reg"
	if left := e.registryLeft(ctx); len(left) > 0 {
		t.Fatalf("a registry is already there (%v): this test makes and deletes the host's one; remove it first (kubeforge registry delete)", left)
	}
	e.deleteOnCleanup(name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if r := e.run(ctx, nil, "registry", "delete"); r.Code != 0 {
			t.Errorf("cleanup: %v", r)
		}
	})

	// Docker pushes to 127.0.0.0/8 over plain HTTP without any daemon setting.
	info, err := e.docker.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.RegistryConfig == nil || !slices.ContainsFunc(info.RegistryConfig.InsecureRegistryCIDRs, func(p *registry.NetIPNet) bool { return p != nil && p.String() == "127.0.0.0/8" }) {
		t.Errorf("the Docker daemon does not treat 127.0.0.0/8 as insecure: %+v", info.RegistryConfig)
	}
	if list := e.registryList(ctx); len(list) != 0 {
		t.Fatalf("registry list before any: %+v", list)
	}

	began := time.Now()
	e.ok(ctx, "start", "--name", name, "--nodes", "3", "--registry")
	t.Logf("start --nodes 3 --registry: %s", time.Since(began).Round(time.Second))
	cs := e.clientset(name)
	nodes := []string{name, name + "-m02", name + "-m03"}

	// The registry container: its own label, not the cluster's; its volume; its port; its restart
	// policy; on the cluster's network at the address reserved for it.
	c, err := e.docker.ContainerInspect(ctx, registryName)
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.Labels["dev.kubeforge.registry"] != "1" || c.Config.Labels["dev.kubeforge.cluster"] != "" {
		t.Errorf("registry labels %v: want dev.kubeforge.registry=1 and no cluster label", c.Config.Labels)
	}
	if c.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("registry restart policy %q", c.HostConfig.RestartPolicy.Name)
	}
	if b := c.HostConfig.PortBindings["5000/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "5001" {
		t.Errorf("registry port bindings %v: want 127.0.0.1:5001", c.HostConfig.PortBindings)
	}
	if v, err := e.docker.VolumeInspect(ctx, registryVolume); err != nil || v.Labels["dev.kubeforge.registry"] != "1" {
		t.Errorf("volume %s: %v %v", registryVolume, err, v.Labels)
	}
	n, err := e.docker.NetworkInspect(ctx, "kubeforge-"+name, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	regIP := provision.Network{Subnet: netip.MustParsePrefix(n.IPAM.Config[0].Subnet)}.RegistryIP()
	if ep := c.NetworkSettings.Networks["kubeforge-"+name]; ep == nil || ep.IPAddress != regIP.String() {
		t.Fatalf("registry on network kubeforge-%s: %+v, want address %s", name, ep, regIP)
	}
	cm, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "local-registry-hosting", metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["localRegistryHosting.v1"], `host: "localhost:5001"`) {
		t.Errorf("ConfigMap kube-public/local-registry-hosting: %v %v", err, cm)
	}

	// Two images from the test image, no registry pulled from: dev, and v2 (another image ID).
	buildBusybox(ctx, t, e.docker)
	dev, v2 := registryHost+"/app:dev", registryHost+"/app:v2"
	if err := e.docker.ImageTag(ctx, BusyboxImage, dev); err != nil {
		t.Fatal(err)
	}
	dockerCLI(ctx, t, "FROM "+BusyboxImage+"\nLABEL dev.kubeforge.test=v2\nENV APP_VERSION=v2\n", "build", "-t", v2, "-")
	dockerCLI(ctx, t, "", "push", dev)
	dockerCLI(ctx, t, "", "push", v2)
	devDigest, v2Digest := e.repoDigest(ctx, dev), e.repoDigest(ctx, v2)
	if devDigest == v2Digest {
		t.Fatalf("dev and v2 have the same digest %s", devDigest)
	}

	t.Run("a Deployment pulls it on every node", func(t *testing.T) {
		labels := map[string]string{"app": "pulled"}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "pulled"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       appPod("", dev, "", "").Spec,
				},
			},
		}
		dep.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: "kubernetes.io/hostname"}}}}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var on []string
		var last []corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=pulled"})
			if err != nil {
				return false, nil
			}
			last, on = pods.Items, nil
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
					if id := p.Status.ContainerStatuses[0].ImageID; id != "localhost:5001/app@"+devDigest {
						return false, fmt.Errorf("pod %s runs image %s, want localhost:5001/app@%s", p.Name, id, devDigest)
					}
					on = append(on, p.Spec.NodeName)
				}
			}
			slices.Sort(on)
			return slices.Equal(on, nodes), nil
		})
		if err != nil {
			for _, p := range last {
				t.Logf("pod %s on %s: %s %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
			}
			t.Fatalf("3 replicas of %s on nodes %v, want one on each of %v: %v", dev, on, nodes, err)
		}
	})

	t.Run("by the registry's in-network name", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, appPod("by-alias", "kubeforge-registry:5000/app:v2", name+"-m02", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, id := runningImage(ctx, t, cs, "by-alias"); id != "kubeforge-registry:5000/app@"+v2Digest {
			t.Errorf("pod by-alias runs %s, want kubeforge-registry:5000/app@%s", id, v2Digest)
		}
	})

	t.Run("imagePullPolicy Always follows a moved tag", func(t *testing.T) {
		// The node already has dev (the Deployment's pod there); the tag now names v2's image.
		if err := e.docker.ImageTag(ctx, v2, dev); err != nil {
			t.Fatal(err)
		}
		dockerCLI(ctx, t, "", "push", dev)
		if d := e.repoDigest(ctx, dev); d != v2Digest {
			t.Fatalf("dev after the move has digest %s, want v2's %s", d, v2Digest)
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, appPod("always", dev, name+"-m03", corev1.PullAlways), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, id := runningImage(ctx, t, cs, "always"); id != "localhost:5001/app@"+v2Digest {
			t.Errorf("pod always runs %s, want the moved tag's image localhost:5001/app@%s (not the old %s)", id, v2Digest, devDigest)
		}
	})

	t.Run("a missing image is ErrImagePull naming it", func(t *testing.T) {
		const missing = registryHost + "/nope:missing"
		if _, err := cs.CoreV1().Pods("default").Create(ctx, appPod("missing", missing, name+"-m02", ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p, err := podRunning(ctx, cs, "default", "missing", func(p *corev1.Pod) bool {
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return false
			}
			r := p.Status.ContainerStatuses[0].State.Waiting.Reason
			return r == "ErrImagePull" || r == "ImagePullBackOff"
		})
		if err != nil {
			t.Fatalf("pod missing: %v", err)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		t.Logf("pod missing: %s: %s", w.Reason, w.Message)
		if !strings.Contains(w.Message, missing) {
			t.Errorf("pod missing waits with %q, which does not name %s", w.Message, missing)
		}
	})

	t.Run("registry list", func(t *testing.T) {
		list := e.registryList(ctx)
		if len(list) != 1 {
			t.Fatalf("registry list: %+v", list)
		}
		r := list[0]
		if r.Name != registryName || r.State != "running" || r.HostPort != 5001 || r.Host != registryHost ||
			!slices.Equal(r.Clusters, []string{name}) || !slices.Contains(r.Repositories, "app") {
			t.Errorf("registry list: %+v", r)
		}
		out := e.ok(ctx, "registry", "list").Stdout
		if !strings.Contains(out, registryHost) || !strings.Contains(out, name) || !strings.Contains(out, "app") {
			t.Errorf("registry list:\n%s", out)
		}
	})

	t.Run("a node added later pulls from it", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "node", "add", "--name", name)
		added := name + "-m04"
		if _, err := cs.CoreV1().Pods("default").Create(ctx, appPod("on-added", dev, added, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, id := runningImage(ctx, t, cs, "on-added"); id != "localhost:5001/app@"+v2Digest {
			t.Errorf("pod on-added runs %s, want localhost:5001/app@%s", id, v2Digest)
		}
	})

	t.Run("after stop and start", func(t *testing.T) {
		e := e.sub(t)
		e.ok(ctx, "stop", "--name", name)
		e.ok(ctx, "start", "--name", name)
		// The pod's earlier container is gone with the node's stop: a new one pulls again.
		_ = cs.CoreV1().Pods("default").Delete(ctx, "always", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Pods("default").Get(ctx, "always", metav1.GetOptions{})
			return err != nil, nil
		}); err != nil {
			t.Fatal("pod always is not gone")
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, appPod("always", dev, name+"-m03", corev1.PullAlways), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, id := runningImage(ctx, t, cs, "always"); id != "localhost:5001/app@"+v2Digest {
			t.Errorf("pod always after the restart runs %s, want localhost:5001/app@%s", id, v2Digest)
		}
	})

	// The cluster goes; the registry and its images stay.
	e.ok(ctx, "delete", "--name", name)
	if left := e.owned(ctx, name); len(left) > 0 {
		t.Errorf("delete left %v", left)
	}
	c, err = e.docker.ContainerInspect(ctx, registryName)
	if err != nil || !c.State.Running || len(c.NetworkSettings.Networks) != 1 {
		t.Fatalf("after the cluster's delete the registry is %v (%v), want running on its default network only", c.State, err)
	}
	if list := e.registryList(ctx); len(list) != 1 || len(list[0].Clusters) != 0 || !slices.Contains(list[0].Repositories, "app") {
		t.Errorf("registry list after the cluster's delete: %+v", list)
	}

	// registry delete removes it all; again, it is nothing to do.
	e.ok(ctx, "registry", "delete")
	if left := e.registryLeft(ctx); len(left) > 0 {
		t.Errorf("registry delete left %v", left)
	}
	if r := e.ok(ctx, "registry", "delete"); !strings.Contains(r.Stdout, "nothing to delete") {
		t.Errorf("registry delete of none: %v", r)
	}

	// A busy port is refused, naming --port, and leaves nothing.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if r := e.run(ctx, nil, "registry", "create", "--port", fmt.Sprint(busy)); r.Code != 3 || !strings.Contains(r.Stderr, "--port") || strings.Contains(r.Stderr, "goroutine") {
		t.Errorf("registry create on a busy port: want exit 3 naming --port, got %v", r)
	}
	if left := e.registryLeft(ctx); len(left) > 0 {
		t.Errorf("a refused create left %v", left)
	}
}
