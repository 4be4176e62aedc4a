package cloud

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	cloudprovider "k8s.io/cloud-provider"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	"k8s.io/component-base/featuregate"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/klog/v2"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/node/kubeclient"
	"kubeforge.dev/kubeforge/node/nodelb"
)

// provider is the cloudprovider.Interface: load balancers only.
type provider struct{ lb cloudprovider.LoadBalancer }

var _ cloudprovider.Interface = provider{}

func (provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (p provider) LoadBalancer() (cloudprovider.LoadBalancer, bool)                { return p.lb, true }
func (provider) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (provider) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return nil, false }
func (provider) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (provider) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (provider) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (provider) ProviderName() string                                              { return "kubeforge" }
func (provider) HasClusterID() bool                                                { return true }

// Options configure Run.
type Options struct {
	Kubeconfig string
	Cluster    string
	Network    string
	Image      string
	DockerHost string
	// NodeAddresses (VM clusters) gives each Service its nodes' addresses (node/nodelb) instead
	// of a container of its own: no Docker, no network, no image.
	NodeAddresses bool
}

// Run runs upstream's service controller over kubeforge's load balancers until ctx ends.
func Run(ctx context.Context, o Options) error {
	if !o.NodeAddresses && (o.Cluster == "" || o.Network == "" || o.Image == "") {
		return errors.New("kubeforge-cloud: -cluster, -network and -image are required (or -node-addresses)")
	}
	cs, err := kubeclient.New(o.Kubeconfig, kubeclient.UserAgent("kubeforge-cloud"))
	if err != nil {
		return err
	}
	// Wait, asking every 2 s, until the API server is ready: informers and the event recorder
	// started earlier retry on their own, and on an emulated VM each retry is a TLS handshake
	// the starting API server must answer.
	err = wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(rctx).Error() == nil, nil
	})
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	nodes := factory.Core().V1().Nodes()
	var lb cloudprovider.LoadBalancer
	if o.NodeAddresses {
		lb = &nodelb.LoadBalancers{Client: cs, Nodes: nodes.Lister()}
	} else {
		dc, err := client.NewClientWithOpts(client.WithHost(o.DockerHost), client.WithAPIVersionNegotiation())
		if err != nil {
			return fmt.Errorf("docker at %s: %w", o.DockerHost, err)
		}
		defer dc.Close()
		if _, err := dc.Ping(ctx); err != nil {
			return fmt.Errorf("docker at %s: %w", o.DockerHost, err)
		}
		lb = &LoadBalancers{Cluster: o.Cluster, Network: o.Network, Image: o.Image, Docker: dc, Nodes: nodes.Lister()}
	}
	ctrl, err := servicecontroller.New(provider{lb: lb}, cs, factory.Core().V1().Services(), nodes, o.Cluster, featuregate.NewFeatureGate())
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	klog.InfoS("kubeforge cloud provider: LoadBalancer Services", "cluster", o.Cluster, "network", o.Network, "nodeAddresses", o.NodeAddresses)
	ctrl.Run(ctx, 2, controllersmetrics.NewControllerManagerMetrics("kubeforge-cloud"))
	return nil
}

// Main is `kubeforge-cloud`.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubeforge-cloud", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{}
	fs.StringVar(&o.Kubeconfig, "kubeconfig", contract.CloudKubeconfigPath, "kubeconfig of the cloud provider's user")
	fs.StringVar(&o.Cluster, "cluster", "", "the cluster's name")
	fs.StringVar(&o.Network, "network", "", "the cluster's Docker network")
	fs.StringVar(&o.Image, "image", "", "the node image the load balancers run")
	fs.StringVar(&o.DockerHost, "docker-host", "unix://"+contract.DockerSocket, "the Docker daemon")
	fs.BoolVar(&o.NodeAddresses, "node-addresses", false, "give each Service the nodes' addresses (VM clusters; no Docker)")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
