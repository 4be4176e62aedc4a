package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// freePort returns a TCP port free on 127.0.0.1 now; the driver checks it again when publishing.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// nodeAddr is the fixed address of the i-th node on the cluster network.
func nodeAddr(n provision.Network, i int) (netip.Addr, error) {
	ip := n.NodeIP(i)
	if !ip.IsValid() {
		return ip, fmt.Errorf("network %s (%s) has no address for node %d", n.Name, n.Subnet, i)
	}
	return ip, nil
}

func removeAll(dir string) error { return os.RemoveAll(dir) }

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

// apiReady tells whether the API server of the kubeconfig answers /readyz within 2 seconds.
// requestTimeout bounds one request of a readiness check: on emulated CPUs a TLS handshake and
// an answer take seconds.
func requestTimeout(c spec.Cluster) time.Duration {
	if c.Emulated() {
		return 15 * time.Second
	}
	return 2 * time.Second
}

func apiReady(ctx context.Context, kubeconfig string, timeout time.Duration) bool {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return false
	}
	cfg.Timeout = timeout
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false
	}
	_, err = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil
}
