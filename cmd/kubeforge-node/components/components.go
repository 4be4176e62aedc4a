// Package components maps component names to the upstream command that runs them.
package components

import (
	"context"
	"os"
	"sort"

	"github.com/spf13/cobra"
	etcdmain "go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream mains do
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream mains do
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream mains do
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
	"kubeforge.dev/kubeforge/node/etcdmember"
	"kubeforge.dev/kubeforge/node/etcdsnapshot"
	"kubeforge.dev/kubeforge/node/localpv"
	"kubeforge.dev/kubeforge/node/verbosity"
	_ "time/tzdata" // CronJob time zones, as upstream's apiserver and controller-manager do
)

// Runner runs a component with its command-line arguments and returns the exit code.
type Runner func(args []string) int

func cobraRunner(newCmd func() *cobra.Command) Runner {
	return func(args []string) int {
		cmd := newCmd()
		cmd.SetArgs(args)
		return cli.Run(cmd)
	}
}

var table = map[string]Runner{
	"etcd": func(args []string) int {
		etcdmain.Main(append([]string{"etcd"}, args...))
		return 0
	},
	"kube-apiserver":          cobraRunner(apiserver.NewAPIServerCommand),
	"kube-controller-manager": cobraRunner(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          cobraRunner(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kubelet":                 cobraRunner(func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) }),
	"kube-proxy":              cobraRunner(proxy.NewProxyCommand),
	"netctl":                  netctlRunner,
	"cloud-provider":          cloudRunner,
	// storage-provisioner serves the default StorageClass "standard": see node/localpv.
	"storage-provisioner": cobraRunner(localpv.NewCommand),
	// etcd-member adds or removes a stacked etcd member (HA control planes): see node/etcdmember.
	"etcd-member": func(args []string) int { return etcdmember.Main(args, os.Stdout, os.Stderr) },
	// etcd-snapshot saves or restores the local etcd (kubeforge etcd snapshot): see node/etcdsnapshot.
	"etcd-snapshot": func(args []string) int { return etcdsnapshot.Main(args, os.Stdout, os.Stderr) },
	// verbosity sets a running scheduler's or controller-manager's log level (kubeforge trace --why).
	"verbosity": func(args []string) int { return verbosity.Main(args, os.Stdout, os.Stderr) },
}

// Lookup returns the runner of a component.
func Lookup(name string) (Runner, bool) {
	r, ok := table[name]
	return r, ok
}

// Names lists the components, sorted.
func Names() []string {
	out := make([]string, 0, len(table))
	for n := range table {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var _ = os.Args
