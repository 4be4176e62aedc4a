// Package kubeclient builds the API clients of the node-side programs (netctl, the storage
// provisioner, the cloud provider, the control-plane components' start order) from a kubeconfig.
package kubeclient

import (
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Option adjusts the client's config before the client is made.
type Option func(*rest.Config)

// UserAgent names the program in the API server's logs and metrics.
func UserAgent(ua string) Option { return func(c *rest.Config) { c.UserAgent = ua } }

// Timeout bounds each request.
func Timeout(d time.Duration) Option { return func(c *rest.Config) { c.Timeout = d } }

// New returns a client of the API server kubeconfig names with its credentials; an empty
// kubeconfig means the in-cluster config (the pod's ServiceAccount).
func New(kubeconfig string, opts ...Option) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("loading the in-cluster API client config: %w", err)
		}
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	for _, o := range opts {
		o(cfg)
	}
	return kubernetes.NewForConfig(cfg)
}
