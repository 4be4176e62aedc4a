package localpv

import (
	"context"
	"errors"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Options configure a Controller.
type Options struct {
	// Namespace the cleanup pods run in.
	Namespace string
	// HelperImage is the image of the cleanup pods (the kube-components image).
	HelperImage string
	// Root is the directory on the nodes under which volumes live; DefaultRoot when empty.
	Root string
}

// key names what the work queue holds: a claim (namespace/name) or a volume (name).
type key struct {
	volume    bool
	namespace string
	name      string
}

// Controller provisions and removes local volumes.
type Controller struct {
	client   kubernetes.Interface
	opts     Options
	factory  informers.SharedInformerFactory
	pods     informers.SharedInformerFactory
	claims   corelisters.PersistentVolumeClaimLister
	volumes  corelisters.PersistentVolumeLister
	classes  storagelisters.StorageClassLister
	cleanups corelisters.PodLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[key]
	events   record.EventBroadcaster
	recorder record.EventRecorder
}

// NewController wires a Controller to client's informers. Run starts it.
func NewController(client kubernetes.Interface, opts Options) (*Controller, error) {
	if opts.Namespace == "" || opts.HelperImage == "" {
		return nil, errors.New("localpv: the cleanup pods' namespace and image are required")
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = CleanupLabel }))
	claimInf := factory.Core().V1().PersistentVolumeClaims()
	volumeInf := factory.Core().V1().PersistentVolumes()
	classInf := factory.Storage().V1().StorageClasses()
	podInf := pods.Core().V1().Pods()
	events := record.NewBroadcaster()
	c := &Controller{
		client:   client,
		opts:     opts,
		factory:  factory,
		pods:     pods,
		claims:   claimInf.Lister(),
		volumes:  volumeInf.Lister(),
		classes:  classInf.Lister(),
		cleanups: podInf.Lister(),
		synced: []cache.InformerSynced{claimInf.Informer().HasSynced, volumeInf.Informer().HasSynced,
			classInf.Informer().HasSynced, podInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "localpv"}),
		events:   events,
		recorder: events.NewRecorder(scheme.Scheme, v1.EventSource{Component: Name}),
	}
	claimKey := func(obj any) {
		if pvc, ok := obj.(*v1.PersistentVolumeClaim); ok {
			c.queue.Add(key{namespace: pvc.Namespace, name: pvc.Name})
		}
	}
	volumeKey := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if pv, ok := obj.(*v1.PersistentVolume); ok {
			c.queue.Add(key{volume: true, name: pv.Name})
		}
	}
	podKey := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*v1.Pod); ok && p.Labels[CleanupLabel] != "" {
			c.queue.Add(key{volume: true, name: p.Labels[CleanupLabel]})
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{claimInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: claimKey, UpdateFunc: func(_, n any) { claimKey(n) }}},
		// A deleted volume's cleanup pod is deleted then.
		{volumeInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: volumeKey, UpdateFunc: func(_, n any) { volumeKey(n) }, DeleteFunc: volumeKey}},
		// A class made after its claims: look at the pending claims again.
		{classInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: func(any) { c.requeueClaims() }}},
		{podInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: podKey, UpdateFunc: func(_, n any) { podKey(n) }, DeleteFunc: podKey}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Controller) requeueClaims() {
	claims, err := c.claims.List(labels.Everything())
	if err != nil {
		return
	}
	for _, pvc := range claims {
		if pvc.Status.Phase == v1.ClaimPending {
			c.queue.Add(key{namespace: pvc.Namespace, name: pvc.Name})
		}
	}
}

// Run starts the informers, waits for their first lists, and handles claims and volumes until
// ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx)
	c.events.StartStructuredLogging(0)
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.events.Shutdown()
	logger.Info("Starting local volume provisioner", "provisioner", Name, "root", c.opts.Root)
	c.factory.Start(ctx.Done())
	c.pods.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer c.pods.Shutdown()
	if !cache.WaitForNamedCacheSync("localpv", ctx.Done(), c.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("localpv: informer caches did not sync")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c.processNext(ctx) {
		}
	}()
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	var err error
	if k.volume {
		err = c.syncVolume(ctx, k.name)
	} else {
		err = c.syncClaim(ctx, k.namespace, k.name)
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Sync failed; retrying", "volume", k.volume, "namespace", k.namespace, "name", k.name)
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

// syncClaim makes the volume of a claim that waits for one.
func (c *Controller) syncClaim(ctx context.Context, namespace, name string) error {
	claim, err := c.claims.PersistentVolumeClaims(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName == "" {
		return nil
	}
	class, err := c.classes.Get(*claim.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	node, ok, err := Wants(claim, class)
	if err != nil {
		c.recorder.Event(claim, v1.EventTypeWarning, "ProvisioningFailed", err.Error())
		return nil
	}
	if !ok {
		return nil
	}
	pv := Volume(claim, class, node, c.opts.Root)
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("creating volume %s for claim %s/%s: %w", pv.Name, namespace, name, err)
	}
	c.recorder.Eventf(claim, v1.EventTypeNormal, "ProvisioningSucceeded",
		"Successfully provisioned volume %s at %s on node %s", pv.Name, pv.Spec.HostPath.Path, node)
	klog.FromContext(ctx).Info("Provisioned volume", "claim", klog.KObj(claim), "volume", pv.Name, "node", node)
	return nil
}

// syncVolume removes a released volume: its directory (by a cleanup pod on its node), then the
// PersistentVolume. A leftover cleanup pod of a volume that is gone is deleted.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pods := c.client.CoreV1().Pods(c.opts.Namespace)
	podName := CleanupPodName(name)
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		if _, err := c.cleanups.Pods(c.opts.Namespace).Get(podName); err == nil {
			return ignoreNotFound(pods.Delete(ctx, podName, metav1.DeleteOptions{}))
		}
		return nil
	} else if err != nil {
		return err
	}
	node, dir, ok := Released(pv)
	if !ok {
		return nil
	}
	logger := klog.FromContext(ctx).WithValues("volume", name, "node", node)
	if _, err := c.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		logger.Info("Node of the released volume is gone; deleting the volume")
		return c.deleteVolume(ctx, name)
	} else if err != nil {
		return err
	}
	pod, err := c.cleanups.Pods(c.opts.Namespace).Get(podName)
	if apierrors.IsNotFound(err) {
		_, err := pods.Create(ctx, CleanupPod(name, node, dir, c.opts.Namespace, c.opts.HelperImage), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating cleanup pod for volume %s: %w", name, err)
		}
		logger.Info("Removing the released volume's directory", "dir", dir)
		return nil // the pod's updates bring the volume back here
	} else if err != nil {
		return err
	}
	switch pod.Status.Phase {
	case v1.PodSucceeded:
		// The pod goes once the volume is gone (the branch above): deleting both here would let
		// a sync that still sees the volume (a stale cache) start another cleanup pod.
		if err := c.deleteVolume(ctx, name); err != nil {
			return err
		}
		logger.Info("Deleted released volume")
		return nil
	case v1.PodFailed:
		c.recorder.Eventf(pv, v1.EventTypeWarning, "VolumeFailedDelete", "removing %s on node %s failed; retrying", dir, node)
		if err := ignoreNotFound(pods.Delete(ctx, podName, metav1.DeleteOptions{})); err != nil {
			return err
		}
		return fmt.Errorf("cleanup pod of volume %s failed", name)
	}
	return nil
}

func (c *Controller) deleteVolume(ctx context.Context, name string) error {
	return ignoreNotFound(c.client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}))
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
