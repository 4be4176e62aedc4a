package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// ServiceURL is one port of a Service as reached from the host.
type ServiceURL struct {
	Port     string `json:"port"` // the Service port's name, or its number
	NodePort int    `json:"nodePort"`
	URL      string `json:"url"`
	// LoadBalancer (a LoadBalancer Service) is the URL at the Service's external IP, on the
	// cluster's network (routable from a Linux host); URL is then its port on 127.0.0.1 (Docker),
	// or the same (VMs: the external IP is a node's).
	LoadBalancer string `json:"loadBalancer,omitempty"`
}

// ServiceURLs returns URLs that reach a NodePort (or LoadBalancer) Service from the host: a port
// published with `start --port` when there is one, otherwise a running node's address (node
// addresses are routable from a Linux host; elsewhere only published ports are).
func (c *Cluster) ServiceURLs(ctx context.Context, namespace, service string) ([]ServiceURL, error) {
	name := c.name
	l, err := c.live(ctx)
	if err != nil {
		return nil, err
	}
	k, err := c.kube(0)
	if err != nil {
		return nil, err
	}
	cs := k.cs
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, kferr.Usage("service %s not found in namespace %s of cluster %q (`kubectl get services -n %s` lists them)", service, namespace, name, namespace)
	}
	if err != nil {
		return nil, kferr.WithHint(fmt.Errorf("reading service %s/%s: %w", namespace, service, err), kferr.ExitEnvironment,
			fmt.Sprintf("is the cluster running? `kubeforge status --name %s`", name))
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil, kferr.Usage("service %s/%s is of type %s, which is not reachable from the host: make it a NodePort, e.g. `kubectl expose deployment NAME --type=NodePort --port=80`, or `kubectl patch service %s -n %s -p '{\"spec\":{\"type\":\"NodePort\"}}'`",
			namespace, service, svc.Spec.Type, service, namespace)
	}
	published := map[int]int{}
	for _, pm := range l.rec.Spec.Ports {
		published[pm.NodePort] = pm.HostPort
	}
	host := ""
	for _, n := range l.nodes {
		if st, err := n.State(ctx); err == nil && st == provision.StateRunning && n.IP().IsValid() {
			// Prefer a worker: that is where the pods usually run, and it shows the NodePort
			// answering on any node.
			if host == "" || n.Role() != "control-plane" {
				host = n.IP().String()
			}
			if n.Role() != "control-plane" {
				break
			}
		}
	}
	lbPorts, lbIP, err := c.loadBalancerPorts(ctx, l, svc)
	if err != nil {
		return nil, err
	}
	// A LoadBalancer Service of a VM cluster has no machine of its own: its address is a node's
	// (node/nodelb), reached on the Service's own port.
	ingress := ""
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && lbPorts == nil {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ingress = in.IP
				break
			}
		}
	}
	var out []ServiceURL
	for _, sp := range svc.Spec.Ports {
		if sp.NodePort == 0 && ingress == "" {
			continue
		}
		u := ServiceURL{Port: sp.Name, NodePort: int(sp.NodePort)}
		if u.Port == "" {
			u.Port = strconv.Itoa(int(sp.Port))
		}
		scheme := urlScheme(sp)
		lbPort, isLB := lbPorts[fmt.Sprintf("%d/%s", sp.Port, strings.ToLower(string(sp.Protocol)))]
		switch hp, ok := published[int(sp.NodePort)]; {
		case ingress != "":
			u.URL = scheme + "://" + net.JoinHostPort(ingress, strconv.Itoa(int(sp.Port)))
			u.LoadBalancer = u.URL
		case isLB:
			u.URL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, lbPort)
			if lbIP != "" {
				u.LoadBalancer = scheme + "://" + net.JoinHostPort(lbIP, strconv.Itoa(int(sp.Port)))
			}
		case ok:
			u.URL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, hp)
		case goruntime.GOOS == "linux" && host != "":
			u.URL = fmt.Sprintf("%s://%s:%d", scheme, host, sp.NodePort)
		case host == "":
			return nil, kferr.Environment(fmt.Sprintf("start a node with `kubeforge node start NAME --name %s`", name), "cluster %q has no running node", name)
		default:
			return nil, kferr.Usage("node port %d of service %s/%s is not published on this host (node addresses are only routable from Linux): recreate the cluster with `kubeforge start --port HOSTPORT:%d`, or use `kubeforge kubectl -- port-forward service/%s HOSTPORT:%d -n %s`",
				sp.NodePort, namespace, service, sp.NodePort, service, sp.Port, namespace)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, kferr.Usage("service %s/%s has no node ports yet", namespace, service)
	}
	return out, nil
}

// loadBalancerPorts returns the host ports of LoadBalancer Service svc's load-balancer machine
// (by "PORT/proto") and its external IP; none for another type, or before the machine is made.
func (c *Cluster) loadBalancerPorts(ctx context.Context, l *live, svc *corev1.Service) (map[string]int, string, error) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil, "", nil
	}
	name := contract.ServiceLBName(c.name, svc.Namespace, svc.Name, string(svc.UID))
	for _, m := range l.services {
		p, ok := m.(provision.Publisher)
		if m.Name() != name || !ok {
			continue
		}
		ports, err := p.PublishedPorts(ctx)
		if err != nil {
			return nil, "", err
		}
		ip := ""
		if m.IP().IsValid() {
			ip = m.IP().String()
		}
		return ports, ip, nil
	}
	return nil, "", nil
}

// urlScheme is the scheme of a URL of Service port sp: udp, https for a TLS port (appProtocol
// https, a port named https or websecure, or 443), else http.
func urlScheme(sp corev1.ServicePort) string {
	switch {
	case sp.Protocol == corev1.ProtocolUDP:
		return "udp"
	case sp.AppProtocol != nil && *sp.AppProtocol == "https",
		sp.Name == "https" || sp.Name == "websecure" || sp.Port == 443:
		return "https"
	}
	return "http"
}

// waitServiceLB waits until LoadBalancer Service namespace/name's load-balancer machine runs as
// the Service now asks (its host-ports annotation included) and publishes every port: then
// ServiceURLs shows where it answers, not a machine about to be replaced.
func (c *Cluster) waitServiceLB(ctx context.Context, k *kube, namespace, name string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		svc, err := k.cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		l, err := c.live(ctx)
		if err != nil {
			return false, err
		}
		machine := contract.ServiceLBName(c.name, namespace, name, string(svc.UID))
		i := slices.IndexFunc(l.services, func(m provision.Node) bool { return m.Name() == machine })
		if i < 0 {
			last = "no load-balancer machine " + machine + " yet"
			return false, nil
		}
		m := l.services[i]
		in, ok1 := m.(provision.Inspector)
		pub, ok2 := m.(provision.Publisher)
		if !ok1 || !ok2 {
			return true, nil // a driver whose machines publish nothing
		}
		raw, err := in.Inspect(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var desc struct {
			Config struct{ Labels map[string]string }
			State  struct{ Running bool }
		}
		if err := json.Unmarshal(raw, &desc); err != nil {
			return false, fmt.Errorf("inspecting %s: %w", machine, err)
		}
		if desc.Config.Labels[contract.LabelServiceHostPorts] != svc.Annotations[contract.AnnotationHostPorts] ||
			desc.Config.Labels[contract.LabelServiceLBFinal] == "false" || !desc.State.Running {
			last = "the load-balancer machine " + machine + " is being made again"
			return false, nil
		}
		ports, err := pub.PublishedPorts(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, sp := range svc.Spec.Ports {
			if _, ok := ports[fmt.Sprintf("%d/%s", sp.Port, strings.ToLower(string(sp.Protocol)))]; !ok {
				last = fmt.Sprintf("port %d is not published yet", sp.Port)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the load balancer of service %s/%s: %s: %w", namespace, name, last, err)
	}
	return nil
}
