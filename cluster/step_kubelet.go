package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/spec"
)

// stepKubelet waits for the nodes' kubelets: each planned node registers (and gets its
// pre-assigned pod CIDR at once, so its network does not wait for the controller-manager), the
// control planes are labelled, and every node of the cluster reports Ready (after b.since, for
// the nodes a resume restarted or a node add made).
func stepKubelet() step {
	return step{name: "Kubelet", run: func(ctx context.Context, b *build) error {
		cs := b.kube.cs
		g, gctx := errgroup.WithContext(ctx)
		for _, np := range b.plans {
			safe.Go(g, func() error {
				n, err := ready.NodeRegistered(gctx, cs, np.Name)
				if err != nil {
					return b.waitError(gctx, err, "node "+np.Name+" to register")
				}
				if !np.PodCIDR.IsValid() {
					return nil
				}
				return assignPodCIDR(gctx, cs, n, np.PodCIDR.String())
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, np := range b.plans {
			if np.Role == spec.RoleControlPlane {
				if err := labelControlPlane(ctx, cs, np.Name); err != nil {
					return err
				}
			}
		}
		if !b.since.IsZero() {
			var again []string
			for _, np := range b.plans {
				again = append(again, np.Name)
			}
			for n := range b.restarted {
				again = append(again, n)
			}
			slices.Sort(again)
			if err := ready.NodesSince(ctx, cs, b.since, again...); err != nil {
				return b.waitError(ctx, err, "nodes "+strings.Join(again, ", "))
			}
		}
		names := b.nodeNames()
		if err := ready.Nodes(ctx, cs, names...); err != nil {
			return b.waitError(ctx, err, "nodes "+strings.Join(names, ", "))
		}
		return nil
	}}
}

func (b *build) nodeNames() []string {
	out := make([]string, len(b.nodes))
	for i, n := range b.nodes {
		out[i] = n.Name()
	}
	return out
}

// assignPodCIDR gives a freshly registered node its pod CIDR at once, so that its network (and
// so the node's Ready condition) does not wait for the controller-manager to win its lease and
// start its IPAM controller, which then finds the CIDR taken and keeps it. Node i always gets
// the i-th range, so a node keeps its pods' addresses over restarts.
func assignPodCIDR(ctx context.Context, cs kubernetes.Interface, n *corev1.Node, cidr string) error {
	if n.Spec.PodCIDR != "" {
		return nil
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, cidr, cidr)
	_, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: addons.FieldManager})
	if err != nil {
		// The controller-manager may have been quicker; its choice stands.
		if cur, gerr := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); gerr == nil && cur.Spec.PodCIDR != "" {
			return nil
		}
		return fmt.Errorf("assigning pod CIDR %s to node %s: %w", cidr, n.Name, err)
	}
	return nil
}

// labelControlPlane marks the node as kubeadm does (the kubelet may not label itself with a
// node-role).
func labelControlPlane(ctx context.Context, cs kubernetes.Interface, name string) error {
	patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"","node.kubernetes.io/exclude-from-external-load-balancers":""}}}`)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: addons.FieldManager}); err != nil {
		return fmt.Errorf("labelling node %s: %w", name, err)
	}
	return nil
}
