package cluster

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/spec"
)

// kube is a client of a cluster's API server with kubeforge's own credentials (the super-admin
// kubeconfig: system:masters, so it needs no RBAC and works while the API server bootstraps).
// Every client of the orchestrator is made here.
type kube struct {
	cfg *rest.Config
	cs  *kubernetes.Clientset
}

// newKube returns a client of the API server of kubeconfig; timeout bounds each request (0: none).
func newKube(kubeconfig string, timeout time.Duration) (*kube, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	cfg.Timeout = timeout
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{cfg: cfg, cs: cs}, nil
}

func (k *kube) dynamic() (dynamic.Interface, error) { return dynamic.NewForConfig(k.cfg) }

// up is the one answer to "is the API server up": it waits until /readyz answers ok, asking
// every `every` at most, for at most within (0: until ctx ends). Its error says which checks
// failed last.
func (k *kube) up(ctx context.Context, within, every time.Duration) error {
	if within > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, within)
		defer cancel()
	}
	return ready.APIServerEvery(ctx, k.cs, every)
}

// requestTimeout bounds one request of a readiness check: on emulated CPUs a TLS handshake and
// an answer take seconds.
func requestTimeout(c spec.Cluster) time.Duration {
	if c.Emulated() {
		return 15 * time.Second
	}
	return 2 * time.Second
}

// pollInterval is how often the host asks the API server while it starts: on an emulated machine
// every request costs the API server CPU it is short of (and its start takes minutes anyway).
func pollInterval(c spec.Cluster) time.Duration {
	if c.Emulated() {
		return time.Second
	}
	return ready.APIServerPoll
}
