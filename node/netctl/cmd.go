package netctl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeforge.dev/kubeforge/node/kubeclient"
)

// Flags are the command-line settings of `kubeforge-node netctl`.
type Flags struct {
	Kubeconfig   string
	NodeName     string
	CNIConfDir   string
	ClusterCIDR  string
	MTU          int
	ResyncPeriod time.Duration
}

// NewCommand returns the `netctl` command: the node's network controller, run until SIGTERM or
// SIGINT.
func NewCommand() *cobra.Command {
	f := Flags{
		CNIConfDir:   DefaultCNIConfDir,
		ClusterCIDR:  DefaultClusterCIDR,
		ResyncPeriod: DefaultResyncPeriod,
	}
	cmd := &cobra.Command{
		Use:   "netctl",
		Short: "Node network controller: CNI config, routes to other nodes' pod CIDRs, masquerade",
		Long: "netctl watches the Node objects. When this node has a pod CIDR it writes the CNI config " +
			ConfFileName + " (bridge " + BridgeName + ", host-local IPAM, portmap); it keeps a route to every " +
			"other node's pod CIDR via that node's InternalIP; and it masquerades pod traffic leaving the " +
			"cluster CIDR (nat chain " + MasqueradeChain + ").",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return Run(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.Kubeconfig, "kubeconfig", f.Kubeconfig, "kubeconfig with the node's credentials (e.g. /etc/kubernetes/kubelet.conf); empty: in-cluster config")
	fs.StringVar(&f.NodeName, "node-name", f.NodeName, "this node's Node name (default: the host name, lower-cased)")
	fs.StringVar(&f.CNIConfDir, "cni-conf-dir", f.CNIConfDir, "directory the CNI config "+ConfFileName+" is written to")
	fs.StringVar(&f.ClusterCIDR, "cluster-cidr", f.ClusterCIDR, "pod range of the whole cluster (IPv4); traffic from it to outside it is masqueraded")
	fs.IntVar(&f.MTU, "mtu", f.MTU, "MTU of pod interfaces; 0 leaves the bridge plugin's default")
	fs.DurationVar(&f.ResyncPeriod, "resync-period", f.ResyncPeriod, "how often routes and masquerade rules are re-applied without Node changes")
	cmd.AddCommand(newBootCommand())
	return cmd
}

// newBootCommand is `netctl boot`, a oneshot run at every boot before the kubelet: the pods'
// resolv.conf (on Docker nodes, pod DNS forwarded to Docker's embedded server) and the guard that
// keeps traffic to Service IPs that kube-proxy has not translated (yet) inside the node.
func newBootCommand() *cobra.Command {
	var nodeIP, serviceCIDR, in, out string
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Node network setup before the kubelet: pods' resolv.conf, pod DNS forwarding, Service CIDR guard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ip, err := netip.ParseAddr(nodeIP)
			if err != nil {
				return fmt.Errorf("--node-ip: %w", err)
			}
			svc, err := netip.ParsePrefix(serviceCIDR)
			if err != nil {
				return fmt.Errorf("--service-cidr: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if err := GuardServiceCIDR(svc); err != nil {
				return err
			}
			return SetupDNS(ctx, ip, in, out)
		},
	}
	cmd.Flags().StringVar(&nodeIP, "node-ip", "", "this node's address on the cluster network (pods send DNS there)")
	cmd.Flags().StringVar(&serviceCIDR, "service-cidr", "", "the cluster's Service IP range")
	cmd.Flags().StringVar(&in, "resolv-conf", "/etc/resolv.conf", "the node's resolv.conf")
	cmd.Flags().StringVar(&out, "pod-resolv-conf", DefaultPodResolvConf, "the resolv.conf written for the kubelet's pods")
	return cmd
}

// Run runs the controller with the host's network until ctx is done.
func Run(ctx context.Context, f Flags) error {
	if f.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name not given and no host name: %w", err)
		}
		f.NodeName = strings.ToLower(h)
	}
	cidr, err := netip.ParsePrefix(f.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-cidr: %w", err)
	}
	if !cidr.Addr().Is4() {
		return errors.New("--cluster-cidr: only IPv4 is supported")
	}
	client, err := kubeclient.New(f.Kubeconfig, kubeclient.UserAgent("kubeforge-netctl"))
	if err != nil {
		return err
	}
	applier, err := NewHostApplier(f.CNIConfDir)
	if err != nil {
		return err
	}
	c, err := NewController(client, applier, Options{
		NodeName:     f.NodeName,
		ClusterCIDR:  cidr,
		MTU:          f.MTU,
		ResyncPeriod: f.ResyncPeriod,
	})
	if err != nil {
		return err
	}
	return c.Run(klog.NewContext(ctx, klog.Background().WithName("netctl")))
}
