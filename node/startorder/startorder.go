// Package startorder makes a control-plane component wait, bounded, for what it needs before its
// upstream command runs. The kubelet starts the four static pods at once; without this:
//   - the API server dials etcd before etcd listens, and gRPC then backs off for a second after
//     etcd is up;
//   - the scheduler lists its ~20 resources before the API server has created the RBAC roles
//     that allow it, and each informer backs off for seconds, so it takes its lease and schedules
//     the first pod (CoreDNS) a second or two after it could;
//   - the controller-manager retries its lease on a timer while the roles are made.
//
// Each wait checks the real thing (a TCP connect to etcd, the API server's /readyz with the
// component's own credentials), gives up after its bound and then runs the component anyway: the
// upstream component copes with its dependencies being late, only more slowly.
package startorder

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/node/kubeclient"
)

// Bound is how long a component waits at most before it runs anyway, unless its
// contract.StartWaitEnv says otherwise.
const Bound = 30 * time.Second

const (
	dialEvery  = 50 * time.Millisecond
	readyEvery = 100 * time.Millisecond
	// readyTimeout bounds one /readyz request.
	readyTimeout = 10 * time.Second
)

// Wait waits for what component needs, as its args name it, at most bound (Bound when 0), and
// says on log what it waited for. Components without a dependency to wait for return at once.
func Wait(ctx context.Context, component string, args []string, bound time.Duration, log io.Writer) {
	if bound <= 0 {
		bound = Bound
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
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
		what = "the API server's /readyz"
		err = APIServerReady(ctx, kc)
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

// APIServerReady waits until the API server named by kubeconfig answers /readyz with ok to the
// kubeconfig's identity. /readyz includes the API server's bootstrap of its RBAC roles, so from
// then on the component's requests are authorized.
func APIServerReady(ctx context.Context, kubeconfig string) error {
	// An answer takes milliseconds and a closed port fails at once: the timeout only matters
	// while the API server is starved (an emulated VM), where a short one abandons each TLS
	// handshake half done and starts another, taking CPU from the API server it waits for.
	cs, err := kubeclient.New(kubeconfig, kubeclient.Timeout(readyTimeout))
	if err != nil {
		return err
	}
	return poll(ctx, readyEvery, func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
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
