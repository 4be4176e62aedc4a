// Package startorder makes a control-plane component wait, bounded, for what it needs before its
// upstream command runs. The kubelet starts the four static pods at once; without this:
//   - the API server dials etcd before etcd listens, and gRPC then backs off for a second after
//     etcd is up;
//   - the scheduler lists its ~20 resources before the RBAC bootstrap policy allows it, and each
//     informer backs off for seconds, so it takes its lease and schedules the first pod (CoreDNS)
//     a second or two after it could;
//   - the controller-manager retries its lease on a timer while the roles are made.
//
// Each wait checks the real thing (a TCP connect to etcd; for the scheduler and the
// controller-manager, that their own credentials may read their authentication ConfigMap, which
// the RBAC bootstrap policy allows with the namespaced bindings it makes last), gives up after
// its bound and then runs the component anyway: the upstream component copes with its
// dependencies being late, only more slowly.
package startorder

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Bound is how long a component waits at most before it runs anyway.
const Bound = 30 * time.Second

const (
	dialEvery  = 50 * time.Millisecond
	readyEvery = 100 * time.Millisecond
)

// Wait waits for what component needs, as its args name it, and says on log what it waited for.
// Components without a dependency to wait for return at once.
func Wait(ctx context.Context, component string, args []string, log io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, Bound)
	defer cancel()
	start := time.Now()
	var what string
	var err error
	switch component {
	case "kube-apiserver":
		servers := strings.Split(flagValue(args, "etcd-servers"), ",")
		what = "etcd at " + strings.Join(servers, ",")
		err = EtcdListening(ctx, servers)
	case "kube-scheduler", "kube-controller-manager":
		kc := flagValue(args, "kubeconfig")
		if kc == "" {
			return
		}
		what = "its RBAC roles (kube-system/" + AuthConfigMap + " readable)"
		err = Authorized(ctx, kc)
	default:
		return
	}
	if err != nil {
		fmt.Fprintf(log, "kubeforge-node: %s: starting without %s after %s: %v\n", component, what, time.Since(start).Round(time.Millisecond), err)
		return
	}
	fmt.Fprintf(log, "kubeforge-node: %s: waited %s for %s\n", component, time.Since(start).Round(time.Millisecond), what)
}

// EtcdListening waits until one of the etcd client URLs accepts a TCP connection. etcd opens its
// client listener before it has a leader and serves the connection once it has one, so a client
// that connects from then on does not meet gRPC's reconnect back-off.
func EtcdListening(ctx context.Context, servers []string) error {
	var addrs []string
	for _, s := range servers {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			continue
		}
		addrs = append(addrs, u.Host)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("no etcd server URL in %q", servers)
	}
	var d net.Dialer
	return poll(ctx, dialEvery, func(ctx context.Context) (err error) {
		for _, a := range addrs {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			c, derr := d.DialContext(dctx, "tcp", a)
			cancel()
			if derr == nil {
				return c.Close()
			}
			err = derr
		}
		return err
	})
}

// AuthConfigMap is the kube-system ConfigMap the scheduler and the controller-manager read at
// their start for their delegated authentication. The API server writes it as it starts; the
// RBAC bootstrap policy lets them read it with a kube-system RoleBinding, made after every
// ClusterRole and ClusterRoleBinding (by the API server's hook and by bootstrap/rbacseed alike).
const AuthConfigMap = "extension-apiserver-authentication"

// Authorized waits until the identity of kubeconfig may read AuthConfigMap: the API server
// serves, its authorizer knows the bootstrap roles and bindings, and the ConfigMap is written.
// (It need not wait for the whole of /readyz: the controller-manager waits for /healthz itself
// before its controllers start.)
func Authorized(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 2 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return poll(ctx, readyEvery, func(ctx context.Context) error {
		_, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, AuthConfigMap, metav1.GetOptions{})
		return err
	})
}

// poll runs try at once and then every interval until it returns nil or ctx ends; then it returns
// ctx's error with try's last one.
func poll(ctx context.Context, interval time.Duration, try func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		last = try(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return nil
}

// flagValue returns the value of --name=value or --name value in args ("" if absent); the last
// one wins, as with pflag.
func flagValue(args []string, name string) string {
	var v string
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--"+name+"="):
			v = strings.TrimPrefix(a, "--"+name+"=")
		case a == "--"+name && i+1 < len(args):
			v = args[i+1]
		}
	}
	return v
}
