package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// stepReady ends a create: the default ServiceAccount exists (pods can be made), every control
// plane's mirror pods are listed and Running, the context is merged into the user's kubeconfig
// and the record marked complete. Undo takes the context out again.
func stepReady() step {
	return step{name: "Ready", run: func(ctx context.Context, b *build) error {
		cs := b.kube.cs
		if err := ready.ServiceAccount(ctx, cs, metav1.NamespaceDefault, "default"); err != nil {
			return b.waitError(ctx, err, "the default ServiceAccount")
		}
		if err := ready.PodsRunning(ctx, cs, metav1.NamespaceSystem, controlPlanePods(b.spec.ControlPlaneNames()...)...); err != nil {
			return b.waitError(ctx, err, "the control-plane pods")
		}
		if err := b.mergeContext(); err != nil {
			return err
		}
		b.rec.Complete = true
		return b.dir.Save(b.rec)
	}, undo: func(_ context.Context, b *build) error {
		return RemoveFromKubeconfig(b.res.Kubeconfig, b.spec.Name)
	}}
}

// stepContext ends a resume: the cluster's context goes (back) into the user's kubeconfig.
func stepContext() step {
	return step{name: "Ready", run: func(_ context.Context, b *build) error { return b.mergeContext() }}
}

func (b *build) mergeContext() error {
	kc, err := os.ReadFile(b.dir.Kubeconfig())
	if err != nil {
		return err
	}
	if err := MergeKubeconfig(b.res.Kubeconfig, kc, b.spec.Name); err != nil {
		return fmt.Errorf("merging context %s into %s: %w", b.spec.Name, b.res.Kubeconfig, err)
	}
	return nil
}

// controlPlaneComponents run on control-plane nodes only.
var controlPlaneComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// controlPlanePods names the mirror pods of the control-plane static pods on the given nodes.
func controlPlanePods(nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		for _, c := range controlPlaneComponents {
			out = append(out, c+"-"+n)
		}
	}
	return out
}

// waitError turns a failed wait into an error that says what did not happen, with the last
// output of the first control plane's supervisor and the hint to look further.
func (b *build) waitError(ctx context.Context, err error, what string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err() // interrupted: the user knows why it stopped
	}
	if !ready.IsTimeout(err) && ctx.Err() == nil {
		return err
	}
	var node provision.Node
	for _, n := range b.nodes {
		if n != nil && n.Role() == string(spec.RoleControlPlane) {
			node = n
			break
		}
	}
	if node == nil {
		return kferr.Timeout(fmt.Sprintf("retry with --keep-on-failure and a longer --wait, then look with `kubeforge ssh --name %s`", b.spec.Name),
			"timed out waiting for %s: %v", what, err)
	}
	hint := fmt.Sprintf("look at the node with `kubeforge ssh %s --name %s` (logs in /var/log/kubeforge), or retry with --keep-on-failure and a longer --wait", node.Name(), b.spec.Name)
	return kferr.Timeout(hint, "timed out waiting for %s: %v%s", what, err, nodeTail(node))
}

// nodeTail is the last output of node's supervisor, for an error message.
func nodeTail(node provision.Node) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := node.Logs(ctx, &buf, false); err != nil || buf.Len() == 0 {
		return ""
	}
	b := buf.Bytes()
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "\nlast output of node " + node.Name() + ":\n" + string(b)
}
