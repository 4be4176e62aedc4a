package localpv

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeforge.dev/kubeforge/node/kubeclient"
)

// NewCommand returns the `storage-provisioner` command, run until SIGTERM or SIGINT.
func NewCommand() *cobra.Command {
	var kubeconfig string
	opts := Options{Root: DefaultRoot}
	cmd := &cobra.Command{
		Use:   "storage-provisioner",
		Short: "Provisions node-local volumes for the claims of StorageClasses whose provisioner is " + Name,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// An empty kubeconfig path means the in-cluster config (the pod's ServiceAccount).
			client, err := kubeclient.New(kubeconfig, kubeclient.UserAgent("kubeforge-storage-provisioner"))
			if err != nil {
				return err
			}
			c, err := NewController(client, opts)
			if err != nil {
				return err
			}
			return c.Run(klog.NewContext(ctx, klog.Background().WithName("localpv")))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server; empty: in-cluster config")
	fs.StringVar(&opts.Namespace, "namespace", "kube-system", "namespace of the pods that remove released volumes' directories")
	fs.StringVar(&opts.HelperImage, "helper-image", "", "image of the cleanup pods (required)")
	fs.StringVar(&opts.Root, "root", opts.Root, "directory on every node under which volumes live")
	return cmd
}
