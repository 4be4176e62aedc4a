package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/bootstrap/addons"
	"kubeforge.dev/kubeforge/bootstrap/rbacseed"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

// addonGrace bounds the add-ons' apply once the API server is ready (under emulation a request
// can take seconds).
const addonGrace = 2 * time.Minute

// stepControlPlane waits for the API server's /readyz and, from the moment it serves, applies
// the add-ons and makes its RBAC bootstrap policy alongside (bringUpControlPlane).
func stepControlPlane() step {
	return step{name: "Control plane", run: func(ctx context.Context, b *build) error {
		k, err := newKube(b.dir.SuperAdmin(), 0)
		if err != nil {
			return err
		}
		b.kube = k
		objs, err := addonObjects(b.spec, b.info, b.endpoint)
		if err != nil {
			return err
		}
		return b.bringUpControlPlane(ctx, objs)
	}}
}

// bringUpControlPlane runs three things at once and returns when the API server is ready:
//   - the add-ons, applied as soon as the API server serves, while it still makes its RBAC roles
//     (the super-admin needs none): when the controller-manager starts, at /readyz, its
//     ServiceAccounts and CoreDNS's Deployment are there already. First the system
//     PriorityClasses, which the kubelet's mirror pods of the static pods need. Each object is
//     retried alone while the API server starts; once it is ready they get addonGrace more.
//   - the RBAC bootstrap policy, many at once: the API server's own hook waits a second before
//     its first pass, then makes the ~150 objects one by one; made before then, its pass only
//     reads them and /readyz (which the scheduler and controller-manager wait for,
//     node/startorder) comes ~0.5 s sooner. Best effort, stopped at /readyz: the hook makes
//     whatever this did not. Feature gates change the policy, so a cluster that sets them is
//     left to the hook alone.
//   - the /readyz wait itself.
//
// The first error (an add-on refused, the API server never ready) cancels the others.
func (b *build) bringUpControlPlane(ctx context.Context, objs []runtime.Object) error {
	dyn, err := b.kube.dynamic()
	if err != nil {
		return err
	}
	every := pollInterval(b.spec)
	// The controller-manager's ServiceAccounts and the RBAC seed are the linked (default)
	// release's: another release's controller-manager and API server make their own.
	linked := b.spec.KubernetesVersion == versions.Default().Kubernetes
	prio := addons.SystemPriorityClasses()
	if linked {
		prio = append(prio, addons.ControllerServiceAccounts()...)
	}
	objs = append(prio, objs...)
	g, gctx := errgroup.WithContext(ctx)
	applyCtx, stopApplying := context.WithCancel(gctx)
	defer stopApplying()
	seedCtx, stopSeeding := context.WithCancel(gctx)
	defer stopSeeding()
	safe.Go(g, func() error {
		if err := addons.ApplyUntil(applyCtx, dyn, objs, every); err != nil {
			return fmt.Errorf("applying the add-ons: %w", err)
		}
		return nil
	})
	if linked && len(b.spec.FeatureGates) == 0 {
		safe.Go(g, func() error {
			start := time.Now()
			err := rbacseed.Create(seedCtx, b.kube.cs, rbacseed.Bootstrap(), every)
			switch {
			case err == nil:
				b.p.log.Debugf("RBAC bootstrap policy made in %s", time.Since(start).Round(time.Millisecond))
			case seedCtx.Err() == nil:
				b.p.log.Warnf("the API server will make its RBAC roles itself: %v", err)
			}
			return nil
		})
	}
	safe.Go(g, func() error {
		if err := b.kube.up(gctx, 0, every); err != nil {
			return b.waitError(gctx, err, "the API server")
		}
		stopSeeding()
		// A ready API server that still refuses an add-on will not take it later.
		time.AfterFunc(addonGrace, stopApplying)
		return nil
	})
	return g.Wait()
}

// addonObjects are the add-ons of cluster c: kubeadm's RBAC, kube-proxy, CoreDNS (the node
// image's), the default StorageClass and its provisioner.
func addonObjects(c spec.Cluster, info contract.ImageInfo, endpoint netip.Addr) ([]runtime.Object, error) {
	dnsIP, err := c.ServiceIP(10)
	if err != nil {
		return nil, err
	}
	corednsImage := info.Images["coredns"]
	if corednsImage == "" {
		return nil, fmt.Errorf("the node image's %s names no coredns image", contract.ImageInfoPath)
	}
	return addons.Objects(addons.Config{
		KubernetesVersion:    c.KubernetesVersion,
		ControlPlaneEndpoint: netip.AddrPortFrom(endpoint, bootstrap.APIServerPort).String(),
		PodSubnet:            c.PodSubnet,
		DNSDomain:            c.DNSDomain,
		DNSServiceIP:         dnsIP,
		CoreDNSImage:         corednsImage,
		CoreDNSReplicas:      1,
		FeatureGates:         c.FeatureGates,
	})
}
