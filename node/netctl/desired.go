package netctl

import (
	"net/netip"
	"sort"

	v1 "k8s.io/api/core/v1"

	"kubeforge.dev/kubeforge/contract/cniconf"
)

// Names and numbers the controller owns on a node.
const (
	// NetworkName is the CNI network name (and the host-local IPAM state directory under DataDir).
	NetworkName = cniconf.NetworkName
	// ConfFileName is the CNI config file written into the CNI config directory.
	ConfFileName = cniconf.ConfFileName
	// BridgeName is the Linux bridge the bridge plugin creates; pods' gateway is on it.
	BridgeName = cniconf.BridgeName
	// CNIVersion is the CNI spec version of the config: the newest that Debian bookworm's
	// containernetworking-plugins 1.1.1 and containerd's libcni support.
	CNIVersion = cniconf.CNIVersion
	// DataDir is host-local IPAM's state directory (it stores leases under DataDir/NetworkName).
	DataDir = cniconf.DataDir
	// RouteProtocol marks the routes this controller owns (rtm_protocol 0x6b, "kubeforge"); routes
	// with another protocol are never deleted.
	RouteProtocol = 0x6b
	// MasqueradeChain is the nat-table chain holding the masquerade rules; POSTROUTING jumps to it.
	MasqueradeChain = "KUBEFORGE-MASQ"
	// DefaultClusterCIDR is the pod range of the whole cluster.
	DefaultClusterCIDR = "10.244.0.0/16"
	// DefaultCNIConfDir is where the CNI config is written (containerd's conf_dir).
	DefaultCNIConfDir = cniconf.DefaultConfDir
)

// Route is a route to another node's pod CIDR through that node's address.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

func (r Route) String() string { return r.Dst.String() + " via " + r.Gateway.String() }

// PodCIDR returns the node's IPv4 pod CIDR (the first IPv4 one of spec.podCIDRs, else
// spec.podCIDR), masked; false when none is assigned yet.
func PodCIDR(node *v1.Node) (netip.Prefix, bool) {
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err == nil && p.Addr().Is4() {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// InternalIP returns the node's first IPv4 InternalIP address; false when it has none.
func InternalIP(node *v1.Node) (netip.Addr, bool) {
	for _, a := range node.Status.Addresses {
		if a.Type != v1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && ip.Unmap().Is4() {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// DesiredRoutes computes the routes node self needs: one per other node that has both an IPv4 pod
// CIDR and an IPv4 InternalIP, to that pod CIDR via that address. Nodes without either yet are
// left out (they get a route once they have both). A pod CIDR that overlaps self's own, or a
// gateway that is self's own address, is left out; when two nodes claim overlapping pod CIDRs, the
// node whose name sorts first wins. The result is sorted by destination.
func DesiredRoutes(nodes []*v1.Node, self string) []Route {
	sorted := make([]*v1.Node, 0, len(nodes))
	var selfCIDR netip.Prefix
	var selfIP netip.Addr
	for _, n := range nodes {
		if n == nil {
			continue
		}
		if n.Name == self {
			selfCIDR, _ = PodCIDR(n)
			selfIP, _ = InternalIP(n)
			continue
		}
		sorted = append(sorted, n)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	var out []Route
	for _, n := range sorted {
		cidr, ok := PodCIDR(n)
		if !ok {
			continue
		}
		gw, ok := InternalIP(n)
		if !ok || gw == selfIP {
			continue
		}
		if selfCIDR.IsValid() && selfCIDR.Overlaps(cidr) {
			continue
		}
		overlaps := false
		for _, r := range out {
			if r.Dst.Overlaps(cidr) {
				overlaps = true
				break
			}
		}
		if overlaps {
			continue
		}
		out = append(out, Route{Dst: cidr, Gateway: gw})
	}
	sortRoutes(out)
	return out
}

// DiffRoutes compares the routes present (those of RouteProtocol) with the desired ones. add holds
// the desired routes that are missing or whose gateway differs (applied with a route replace, so
// the old gateway goes away); del holds the present routes whose destination is not desired at
// all. Both are sorted by destination.
func DiffRoutes(current, desired []Route) (add, del []Route) {
	want := make(map[netip.Prefix]netip.Addr, len(desired))
	for _, r := range desired {
		want[r.Dst] = r.Gateway
	}
	have := make(map[Route]bool, len(current))
	for _, r := range current {
		have[r] = true
		if _, ok := want[r.Dst]; !ok {
			del = append(del, r)
		}
	}
	for _, r := range desired {
		if !have[r] {
			add = append(add, r)
		}
	}
	sortRoutes(add)
	sortRoutes(del)
	return add, del
}

func sortRoutes(rs []Route) {
	sort.Slice(rs, func(i, j int) bool {
		if c := rs[i].Dst.Addr().Compare(rs[j].Dst.Addr()); c != 0 {
			return c < 0
		}
		if rs[i].Dst.Bits() != rs[j].Dst.Bits() {
			return rs[i].Dst.Bits() < rs[j].Dst.Bits()
		}
		return rs[i].Gateway.Less(rs[j].Gateway)
	})
}

// CNIConfig renders the node's CNI network config list for its pod CIDR (see cniconf.Render).
func CNIConfig(podCIDR netip.Prefix, mtu int) ([]byte, error) { return cniconf.Render(podCIDR, mtu) }
