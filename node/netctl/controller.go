// Package netctl is the node's network controller (kindnet's job, done small). Run in every node
// with the kubelet's credentials, it watches the Node objects and:
//   - writes the CNI config for this node's pod CIDR (bridge + host-local + portmap) once the
//     node has one, so the runtime can set up pod networking and the Node goes Ready;
//   - keeps a route to every other node's pod CIDR via that node's InternalIP (routes marked
//     with RouteProtocol; stale ones of that protocol are removed);
//   - keeps pod traffic leaving the cluster CIDR masqueraded (nat chain MasqueradeChain).
//
// The decisions are pure functions (DesiredRoutes, DiffRoutes, CNIConfig); the changes go through
// the Applier interface, whose host implementation uses netlink and iptables.
package netctl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Applier makes the node's network match what the controller computed. Implementations must be
// idempotent: every method may be called again with the same input (resyncs, retries).
type Applier interface {
	// WriteCNIConfig installs the CNI config list (a no-op when it is already in place).
	WriteCNIConfig(conf []byte) error
	// SyncRoutes makes the routes of RouteProtocol exactly the desired ones.
	SyncRoutes(desired []Route) error
	// EnsureMasquerade makes pod traffic from clusterCIDR to outside it masqueraded.
	EnsureMasquerade(clusterCIDR string) error
}

// Options configure a Controller.
type Options struct {
	// NodeName is this node's Node object name.
	NodeName string
	// ClusterCIDR is the pod range of the whole cluster (masquerade exemption); IPv4.
	ClusterCIDR netip.Prefix
	// MTU of the pods' interfaces; 0 leaves the bridge plugin's default.
	MTU int
	// ResyncPeriod is how often routes and masquerade rules are re-applied even without Node
	// changes (another program may have removed them). Zero means DefaultResyncPeriod.
	ResyncPeriod time.Duration
}

// DefaultResyncPeriod is the default Options.ResyncPeriod.
const DefaultResyncPeriod = 60 * time.Second

// Work queue keys: the Node-driven state (CNI config and routes), and the masquerade rules.
const (
	keyNodes      = "nodes"
	keyMasquerade = "masquerade"
)

// Controller watches Nodes and drives an Applier.
type Controller struct {
	opts    Options
	applier Applier
	factory informers.SharedInformerFactory
	lister  corelisters.NodeLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]

	// Last states logged, so that repeated syncs do not repeat log lines (worker only).
	mu          sync.Mutex
	lastPodCIDR netip.Prefix
	lastWaiting string
}

// NewController wires a Controller to the Node informer of client. Run starts it.
func NewController(client kubernetes.Interface, applier Applier, opts Options) (*Controller, error) {
	if opts.NodeName == "" {
		return nil, errors.New("netctl: node name is required")
	}
	if !opts.ClusterCIDR.IsValid() || !opts.ClusterCIDR.Addr().Is4() {
		return nil, fmt.Errorf("netctl: cluster CIDR %q is not an IPv4 prefix", opts.ClusterCIDR)
	}
	opts.ClusterCIDR = opts.ClusterCIDR.Masked()
	if opts.MTU < 0 {
		return nil, fmt.Errorf("netctl: MTU %d is negative", opts.MTU)
	}
	if opts.ResyncPeriod <= 0 {
		opts.ResyncPeriod = DefaultResyncPeriod
	}
	if applier == nil {
		return nil, errors.New("netctl: applier is required")
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	informer := nodes.Informer()
	// Keep only what the controller reads: Node status (images, conditions) is large and changes
	// often.
	if err := informer.SetTransform(trimNode); err != nil {
		return nil, err
	}
	c := &Controller{
		opts:    opts,
		applier: applier,
		factory: factory,
		lister:  nodes.Lister(),
		synced:  informer.HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "netctl"}),
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.queue.Add(keyNodes) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1.Node)
			n, ok2 := newObj.(*v1.Node)
			if ok1 && ok2 && relevantEqual(o, n) {
				return
			}
			c.queue.Add(keyNodes)
		},
		DeleteFunc: func(any) { c.queue.Add(keyNodes) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// trimNode is the informer's transform: a Node reduced to its name, pod CIDRs and addresses.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return obj, nil // e.g. cache.DeletedFinalStateUnknown
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              n.Name,
			UID:               n.UID,
			ResourceVersion:   n.ResourceVersion,
			DeletionTimestamp: n.DeletionTimestamp,
		},
		Spec:   v1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status: v1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// relevantEqual reports whether two versions of a Node agree on everything the controller uses.
func relevantEqual(a, b *v1.Node) bool {
	return a.Name == b.Name && a.Spec.PodCIDR == b.Spec.PodCIDR &&
		reflect.DeepEqual(a.Spec.PodCIDRs, b.Spec.PodCIDRs) &&
		reflect.DeepEqual(a.Status.Addresses, b.Status.Addresses)
}

// Run starts the informer, waits for its first full list (so that nothing is removed on the
// strength of an empty cache), applies the state, then follows Node changes and resyncs every
// ResyncPeriod until ctx is done. It returns nil when ctx ends, an error if the cache never synced.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()

	logger := klog.FromContext(ctx)
	logger.Info("Starting network controller", "node", c.opts.NodeName,
		"clusterCIDR", c.opts.ClusterCIDR, "resyncPeriod", c.opts.ResyncPeriod)
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForNamedCacheSync("netctl", ctx.Done(), c.synced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("netctl: Node informer cache did not sync")
	}
	c.queue.Add(keyMasquerade)
	c.queue.Add(keyNodes)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c.processNext(ctx) {
		}
	}()

	ticker := time.NewTicker(c.opts.ResyncPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			wg.Wait()
			logger.Info("Stopped network controller")
			return nil
		case <-ticker.C:
			c.queue.Add(keyMasquerade)
			c.queue.Add(keyNodes)
		}
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	var err error
	switch key {
	case keyNodes:
		err = c.syncNodes(ctx)
	case keyMasquerade:
		err = c.applier.EnsureMasquerade(c.opts.ClusterCIDR.String())
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Sync failed, will retry", "what", key,
			"retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// syncNodes writes the CNI config (once this node has a pod CIDR) and the routes to the other
// nodes, from the informer's cache.
func (c *Controller) syncNodes(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	nodes, err := c.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	self, err := c.lister.Get(c.opts.NodeName)
	switch {
	case apierrors.IsNotFound(err):
		c.waiting(logger, "Node object not registered yet")
	case err != nil:
		errs = append(errs, err)
	default:
		cidr, ok := PodCIDR(self)
		if !ok {
			c.waiting(logger, "no IPv4 pod CIDR assigned yet")
			break
		}
		c.waiting(logger, "")
		c.mu.Lock()
		if cidr != c.lastPodCIDR {
			if c.lastPodCIDR.IsValid() {
				logger.Info("Pod CIDR of this node changed", "node", c.opts.NodeName, "podCIDR", cidr, "previous", c.lastPodCIDR)
			} else {
				logger.Info("Pod CIDR of this node", "node", c.opts.NodeName, "podCIDR", cidr)
			}
			c.lastPodCIDR = cidr
		}
		c.mu.Unlock()
		conf, err := CNIConfig(cidr, c.opts.MTU)
		if err == nil {
			err = c.applier.WriteCNIConfig(conf)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("CNI config: %w", err))
		}
	}
	if err := c.applier.SyncRoutes(DesiredRoutes(nodes, c.opts.NodeName)); err != nil {
		errs = append(errs, fmt.Errorf("routes: %w", err))
	}
	return errors.Join(errs...)
}

// waiting logs why the CNI config cannot be written yet, once per reason ("" clears it).
func (c *Controller) waiting(logger klog.Logger, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason != "" && reason != c.lastWaiting {
		logger.Info("Waiting before writing the CNI config", "node", c.opts.NodeName, "reason", reason)
	}
	c.lastWaiting = reason
}
