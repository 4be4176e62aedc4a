package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/provision"
)

// stepDNS waits until cluster DNS works from every node: CoreDNS has a ready endpoint and
// kube-proxy on each node sends the kube-dns Service to it. After a resume, CoreDNS and
// kube-proxy must first run again on the restarted nodes and the Service list the CoreDNS pods'
// new addresses: until then the old ones are still listed as ready and DNS from pods fails.
func stepDNS() step {
	return step{name: "DNS", run: func(ctx context.Context, b *build) error {
		cs := b.kube.cs
		start := time.Now()
		if b.restarted == nil {
			if err := ready.ServiceEndpoints(ctx, cs, metav1.NamespaceSystem, "kube-dns"); err != nil {
				return b.waitError(ctx, err, "CoreDNS")
			}
		} else {
			for _, sel := range []string{"k8s-app=kube-dns", "k8s-app=kube-proxy"} {
				if err := ready.PodsRestartedSince(ctx, cs, metav1.NamespaceSystem, sel, b.since, b.restarted); err != nil {
					return b.waitError(ctx, err, sel+" pods")
				}
			}
			if err := ready.EndpointsMatchPods(ctx, cs, metav1.NamespaceSystem, "kube-dns", "k8s-app=kube-dns"); err != nil {
				return b.waitError(ctx, err, "CoreDNS's endpoints")
			}
		}
		b.p.log.Debugf("CoreDNS ready in %s", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		if err := dnsProgrammed(ctx, cs, b.nodes); err != nil {
			return b.waitError(ctx, err, "cluster DNS on every node")
		}
		b.p.log.Debugf("kube-proxy of %d nodes routes cluster DNS, checked in %s", len(b.nodes), time.Since(start).Round(time.Millisecond))
		return nil
	}}
}

// dnsPortName is how kube-proxy names the kube-dns Service's UDP port in its rules' comments.
const dnsPortName = "kube-system/kube-dns:dns"

// nodeChecks bounds how many nodes a readiness check (an exec in each node) reads at once: a
// check of every node, one after the other, took 2.2 s on a 10-node cluster of a 2-core machine,
// and more while the nodes boot.
const nodeChecks = 4

// dnsProgrammed waits until kube-proxy on every node of nodes sends the kube-dns Service to each
// of CoreDNS's ready pods, as read from the node's NAT table: then a pod on any node resolves
// names when start returns (a Ready kube-proxy may not have synced the Service's new endpoints).
// Each poll reads the nodes not yet found programmed, nodeChecks at a time.
func dnsProgrammed(ctx context.Context, cs kubernetes.Interface, nodes []provision.Node) error {
	var (
		mu      sync.Mutex
		last    string
		done    = map[string]bool{} // the nodes found routing to the addresses doneFor
		doneFor string
	)
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ips := readyPodIPs(pods.Items)
		if len(ips) == 0 {
			last = "no CoreDNS pod is ready"
			return false, nil
		}
		if key := strings.Join(ips, ","); key != doneFor {
			// Other CoreDNS addresses: every node must route to these.
			clear(done)
			doneFor = key
		}
		var g errgroup.Group
		g.SetLimit(nodeChecks)
		for _, n := range nodes {
			if done[n.Name()] {
				continue
			}
			safe.Go(&g, func() error {
				var out bytes.Buffer
				if err := n.Run(ctx, provision.Cmd{Args: []string{"iptables-save", "-t", "nat"}, Stdout: &out}); err != nil {
					mu.Lock()
					last = fmt.Sprintf("reading %s's NAT rules: %v", n.Name(), err)
					mu.Unlock()
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				if !serviceProgrammed(out.String(), dnsPortName, ips, 53) {
					last = fmt.Sprintf("kube-proxy on %s does not send %s to CoreDNS at %v yet", n.Name(), dnsPortName, ips)
					return nil
				}
				done[n.Name()] = true
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return false, err // a panic
		}
		for _, n := range nodes {
			if !done[n.Name()] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for every node to route cluster DNS (%s): %w", last, err)
	}
	return nil
}

func readyPodIPs(pods []corev1.Pod) []string {
	var ips []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ips = append(ips, p.Status.PodIP)
			}
		}
	}
	return ips
}

// serviceProgrammed says whether iptables-save output (the nat table) DNATs the Service port
// named portName (namespace/service:port) to every ip:port.
func serviceProgrammed(rules, portName string, ips []string, port int) bool {
	comment := `--comment "` + portName + `"`
	found := map[string]bool{}
	for _, line := range strings.Split(rules, "\n") {
		if !strings.Contains(line, comment) {
			continue
		}
		if _, dest, ok := strings.Cut(line, "-j DNAT --to-destination "); ok {
			found[strings.Fields(dest)[0]] = true
		}
	}
	for _, ip := range ips {
		if !found[fmt.Sprintf("%s:%d", ip, port)] {
			return false
		}
	}
	return true
}
