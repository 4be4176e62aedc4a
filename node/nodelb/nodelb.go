// Package nodelb gives LoadBalancer Services of VM clusters their nodes' addresses, as k3s's
// ServiceLB does: a Service's status.loadBalancer.ingress lists the InternalIPs of the nodes
// (ipMode VIP), so kube-proxy on every node DNATs <nodeIP>:<port> to the Service's endpoints,
// and the host reaches the Service at a node's address on the cluster's libvirt network.
// Deleting the Service deletes kube-proxy's rules: there is nothing else to remove.
//
// It is the LoadBalancer of node/cloud's provider when that runs with -node-addresses: upstream's
// service controller (finalizer, events, retries, node sync) calls it. A port the node itself
// serves on its address (sshd, the API server, etcd, the kubelet, the pods' DNS) is refused: the
// DNAT would take it from the node. The refusal is an error, which the service controller shows
// as a SyncLoadBalancerFailed Event on the Service.
package nodelb

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"
)

// LoadBalancers implements cloudprovider.LoadBalancer with the nodes' addresses.
type LoadBalancers struct {
	Client kubernetes.Interface // patches a Service's status when its nodes change
	Nodes  corelisters.NodeLister
}

var _ cloudprovider.LoadBalancer = (*LoadBalancers)(nil)

// GetLoadBalancerName is upstream's default name: nothing is made under it.
func (l *LoadBalancers) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// GetLoadBalancer reports the Service's own status: its load balancer is the nodes, so it exists
// while the status lists addresses.
func (l *LoadBalancers) GetLoadBalancer(_ context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		return nil, false, nil
	}
	return svc.Status.LoadBalancer.DeepCopy(), true, nil
}

// EnsureLoadBalancer returns the nodes' addresses, or an error naming the ports the nodes use.
func (l *LoadBalancers) EnsureLoadBalancer(_ context.Context, _ string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := CheckPorts(svc.Spec.Ports); err != nil {
		return nil, err
	}
	nodes, err := l.nodes(nodes)
	if err != nil {
		return nil, err
	}
	st := Status(nodes)
	if len(st.Ingress) == 0 {
		return nil, fmt.Errorf("no node has an InternalIP yet")
	}
	return st, nil
}

// UpdateLoadBalancer follows a change of the nodes. Upstream's service controller writes the
// status only when it ensures a load balancer (a Service change), not after a node change, so
// the new addresses are written here.
func (l *LoadBalancers) UpdateLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) error {
	st, err := l.EnsureLoadBalancer(ctx, cluster, svc, nodes)
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(svc.Status.LoadBalancer, *st) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = *st
	klog.InfoS("the nodes changed: writing the Service's new addresses", "service", klog.KObj(svc), "ingress", ingressIPs(st))
	if _, err := servicehelper.PatchService(l.Client.CoreV1(), svc, updated); err != nil {
		return fmt.Errorf("patching the status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// EnsureLoadBalancerDeleted has nothing to remove: kube-proxy drops its rules with the Service
// (or with the status, when the Service stops being a LoadBalancer).
func (l *LoadBalancers) EnsureLoadBalancerDeleted(context.Context, string, *v1.Service) error {
	return nil
}

// nodes are the nodes the service controller chose; with none (a single node: control planes
// carry node.kubernetes.io/exclude-from-external-load-balancers, as kubeadm's do), every node
// not being deleted, as each runs kube-proxy.
func (l *LoadBalancers) nodes(chosen []*v1.Node) ([]*v1.Node, error) {
	if len(chosen) > 0 || l.Nodes == nil {
		return chosen, nil
	}
	all, err := l.Nodes.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []*v1.Node
	for _, n := range all {
		if n.DeletionTimestamp.IsZero() {
			out = append(out, n)
		}
	}
	return out, nil
}

// Status is the load-balancer status of nodes: each one's first IPv4 InternalIP, sorted, with
// ipMode VIP (kube-proxy also short-cuts in-cluster traffic to those addresses).
func Status(nodes []*v1.Node) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, ip := range InternalIPs(nodes) {
		vip := v1.LoadBalancerIPModeVIP
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip})
	}
	return st
}

// InternalIPs are nodes' addresses: each one's first IPv4 InternalIP, sorted, without repeats.
func InternalIPs(nodes []*v1.Node) []netip.Addr {
	var ips []netip.Addr
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != v1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				ips = append(ips, ip)
				break
			}
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips)
}

// nodePort is a port a node serves on its own address.
type nodePort struct {
	port  int32
	proto v1.Protocol
}

// nodePorts are the ports a VM node serves on its address, with what serves them.
func nodePorts() map[nodePort]string {
	return map[nodePort]string{
		{22, v1.ProtocolTCP}:    "the node's sshd (kubeforge ssh, logs, image load)",
		{53, v1.ProtocolTCP}:    "the pods' DNS forwarding",
		{53, v1.ProtocolUDP}:    "the pods' DNS forwarding",
		{2379, v1.ProtocolTCP}:  "etcd's clients",
		{2380, v1.ProtocolTCP}:  "etcd's peers",
		{6443, v1.ProtocolTCP}:  "the Kubernetes API server",
		{10250, v1.ProtocolTCP}: "the kubelet",
		{10256, v1.ProtocolTCP}: "kube-proxy's health check",
		{10257, v1.ProtocolTCP}: "the controller-manager",
		{10259, v1.ProtocolTCP}: "the scheduler",
	}
}

// CheckPorts refuses Service ports that the nodes serve on their own addresses: kube-proxy's
// DNAT for the Service would take them from the node.
func CheckPorts(ports []v1.ServicePort) error {
	used := nodePorts()
	var bad []string
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		if what, ok := used[nodePort{p.Port, proto}]; ok {
			bad = append(bad, fmt.Sprintf("%d/%s (%s)", p.Port, proto, what))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("the Service's address is its nodes' own, where the node itself serves %s: give the Service another port number (its targetPort can stay)", strings.Join(bad, ", "))
}

func ingressIPs(st *v1.LoadBalancerStatus) []string {
	var out []string
	for _, in := range st.Ingress {
		out = append(out, in.IP)
	}
	return out
}
