package netctl

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node builds a Node; cidrs go to spec.podCIDRs (and the first to spec.podCIDR), ips are
// InternalIPs.
func node(name string, cidrs []string, ips ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
		n.Spec.PodCIDRs = cidrs
	}
	n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: name})
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip})
	}
	return n
}

func cidrs(s ...string) []string { return s }

func route(dst, gw string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Gateway: netip.MustParseAddr(gw)}
}

func TestPodCIDRAndInternalIP(t *testing.T) {
	legacy := &v1.Node{Spec: v1.NodeSpec{PodCIDR: "10.244.3.7/24"}}
	if p, ok := PodCIDR(legacy); !ok || p != netip.MustParsePrefix("10.244.3.0/24") {
		t.Errorf("spec.podCIDR only: got %v %v, want 10.244.3.0/24 (masked)", p, ok)
	}
	dual := node("a", cidrs("fd00:10:244::/64", "10.244.1.0/24"), "fc00::2", "192.168.49.2")
	if p, ok := PodCIDR(dual); !ok || p.String() != "10.244.1.0/24" {
		t.Errorf("dual-stack pod CIDRs: got %v %v", p, ok)
	}
	if ip, ok := InternalIP(dual); !ok || ip.String() != "192.168.49.2" {
		t.Errorf("dual-stack addresses: got %v %v", ip, ok)
	}
	v6only := node("b", cidrs("fd00:10:244::/64"), "fc00::3")
	if _, ok := PodCIDR(v6only); ok {
		t.Error("IPv6-only pod CIDR reported as IPv4")
	}
	if _, ok := InternalIP(v6only); ok {
		t.Error("IPv6-only address reported as IPv4")
	}
	ext := &v1.Node{Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeExternalIP, Address: "1.2.3.4"}}}}
	if _, ok := InternalIP(ext); ok {
		t.Error("ExternalIP taken as InternalIP")
	}
	bad := node("c", cidrs("garbage"), "not-an-ip")
	if _, ok := PodCIDR(bad); ok {
		t.Error("unparsable pod CIDR accepted")
	}
	if _, ok := InternalIP(bad); ok {
		t.Error("unparsable address accepted")
	}
}

func TestDesiredRoutes(t *testing.T) {
	self := node("n1", cidrs("10.244.0.0/24"), "192.168.49.2")
	tests := []struct {
		name  string
		nodes []*v1.Node
		want  []Route
	}{
		{name: "no nodes", nodes: nil, want: nil},
		{name: "only self", nodes: []*v1.Node{self}, want: nil},
		{
			name: "two others, sorted by destination",
			nodes: []*v1.Node{
				node("n3", cidrs("10.244.2.0/24"), "192.168.49.4"),
				self,
				node("n2", cidrs("10.244.1.0/24"), "192.168.49.3"),
			},
			want: []Route{route("10.244.1.0/24", "192.168.49.3"), route("10.244.2.0/24", "192.168.49.4")},
		},
		{
			name: "node with no podCIDR yet",
			nodes: []*v1.Node{
				self,
				node("n2", nil, "192.168.49.3"),
				node("n3", cidrs("10.244.2.0/24"), "192.168.49.4"),
			},
			want: []Route{route("10.244.2.0/24", "192.168.49.4")},
		},
		{
			name:  "node with no address yet",
			nodes: []*v1.Node{self, node("n2", cidrs("10.244.1.0/24"))},
			want:  nil,
		},
		{
			name:  "self not registered yet: routes to the others all the same",
			nodes: []*v1.Node{node("n2", cidrs("10.244.1.0/24"), "192.168.49.3")},
			want:  []Route{route("10.244.1.0/24", "192.168.49.3")},
		},
		{
			name:  "IPv4 only: IPv6 CIDR and address ignored, dual-stack node routed over IPv4",
			nodes: []*v1.Node{self, node("n2", cidrs("fd00:10:244:1::/64", "10.244.1.0/24"), "fc00::3", "192.168.49.3"), node("n3", cidrs("fd00:10:244:2::/64"), "fc00::4")},
			want:  []Route{route("10.244.1.0/24", "192.168.49.3")},
		},
		{
			name:  "first InternalIP wins, hostname ignored",
			nodes: []*v1.Node{self, node("n2", cidrs("10.244.1.0/24"), "192.168.49.3", "10.0.0.3")},
			want:  []Route{route("10.244.1.0/24", "192.168.49.3")},
		},
		{
			name:  "pod CIDR masked",
			nodes: []*v1.Node{self, node("n2", cidrs("10.244.1.9/24"), "192.168.49.3")},
			want:  []Route{route("10.244.1.0/24", "192.168.49.3")},
		},
		{
			name:  "other node claiming our own pod CIDR is skipped",
			nodes: []*v1.Node{self, node("n2", cidrs("10.244.0.0/24"), "192.168.49.3")},
			want:  nil,
		},
		{
			name:  "other node with our own address is skipped",
			nodes: []*v1.Node{self, node("n2", cidrs("10.244.1.0/24"), "192.168.49.2")},
			want:  nil,
		},
		{
			name: "overlapping claims: the first node by name wins",
			nodes: []*v1.Node{
				self,
				node("n9", cidrs("10.244.1.0/24"), "192.168.49.9"),
				node("n2", cidrs("10.244.1.0/25"), "192.168.49.3"),
			},
			want: []Route{route("10.244.1.0/25", "192.168.49.3")},
		},
		{name: "nil entries ignored", nodes: []*v1.Node{nil, self}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DesiredRoutes(tt.nodes, "n1")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DesiredRoutes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDesiredRoutesNodeChanges(t *testing.T) {
	self := node("n1", cidrs("10.244.0.0/24"), "192.168.49.2")
	n2 := node("n2", cidrs("10.244.1.0/24"), "192.168.49.3")
	n3 := node("n3", cidrs("10.244.2.0/24"), "192.168.49.4")
	before := DesiredRoutes([]*v1.Node{self, n2, n3}, "n1")

	// Node removed: its route goes.
	afterRemove := DesiredRoutes([]*v1.Node{self, n3}, "n1")
	add, del := DiffRoutes(before, afterRemove)
	if len(add) != 0 || !reflect.DeepEqual(del, []Route{route("10.244.1.0/24", "192.168.49.3")}) {
		t.Errorf("node removed: add %v del %v", add, del)
	}

	// Node IP change (e.g. docker restart gave it another address): one replace, no delete.
	n3b := node("n3", cidrs("10.244.2.0/24"), "192.168.49.7")
	afterIP := DesiredRoutes([]*v1.Node{self, n2, n3b}, "n1")
	add, del = DiffRoutes(before, afterIP)
	if !reflect.DeepEqual(add, []Route{route("10.244.2.0/24", "192.168.49.7")}) || len(del) != 0 {
		t.Errorf("node IP change: add %v del %v", add, del)
	}

	// Node gets its pod CIDR later: one add.
	n4 := node("n4", nil, "192.168.49.5")
	base := DesiredRoutes([]*v1.Node{self, n2, n3, n4}, "n1")
	n4.Spec.PodCIDRs = []string{"10.244.3.0/24"}
	add, del = DiffRoutes(base, DesiredRoutes([]*v1.Node{self, n2, n3, n4}, "n1"))
	if !reflect.DeepEqual(add, []Route{route("10.244.3.0/24", "192.168.49.5")}) || len(del) != 0 {
		t.Errorf("pod CIDR assigned: add %v del %v", add, del)
	}
}

func TestDiffRoutes(t *testing.T) {
	a := route("10.244.1.0/24", "192.168.49.3")
	b := route("10.244.2.0/24", "192.168.49.4")
	b2 := route("10.244.2.0/24", "192.168.49.9")
	c := route("10.244.3.0/24", "192.168.49.5")
	tests := []struct {
		name               string
		current, desired   []Route
		wantAdd, wantDelet []Route
	}{
		{name: "empty", wantAdd: nil, wantDelet: nil},
		{name: "start from nothing", desired: []Route{b, a}, wantAdd: []Route{a, b}},
		{name: "in sync", current: []Route{a, b}, desired: []Route{b, a}},
		{name: "stale route after restart", current: []Route{a, c}, desired: []Route{a}, wantDelet: []Route{c}},
		{name: "all gone", current: []Route{c, a}, desired: nil, wantDelet: []Route{a, c}},
		{name: "gateway changed: replace, not delete", current: []Route{a, b}, desired: []Route{a, b2}, wantAdd: []Route{b2}},
		{name: "mixed", current: []Route{a, b}, desired: []Route{b2, c}, wantAdd: []Route{b2, c}, wantDelet: []Route{a}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, del := DiffRoutes(tt.current, tt.desired)
			if !reflect.DeepEqual(add, tt.wantAdd) || !reflect.DeepEqual(del, tt.wantDelet) {
				t.Errorf("DiffRoutes = add %v del %v, want add %v del %v", add, del, tt.wantAdd, tt.wantDelet)
			}
		})
	}
}

func TestCNIConfig(t *testing.T) {
	got, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "cniVersion": "1.0.0",
  "name": "kubeforge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "kfbr0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [
          [
            {
              "subnet": "10.244.1.0/24"
            }
          ]
        ],
        "routes": [
          {
            "dst": "0.0.0.0/0"
          }
        ],
        "dataDir": "/var/lib/cni/networks"
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}
`
	if string(got) != want {
		t.Errorf("CNIConfig =\n%s\nwant\n%s", got, want)
	}
	again, _ := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"), 0)
	if string(again) != string(got) {
		t.Error("CNIConfig is not deterministic")
	}

	withMTU, err := CNIConfig(netip.MustParsePrefix("10.244.2.77/24"), 1450)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Plugins []struct {
			Type string `json:"type"`
			MTU  int    `json:"mtu"`
			IPAM struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(withMTU, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Plugins[0].MTU != 1450 || doc.Plugins[0].IPAM.Ranges[0][0].Subnet != "10.244.2.0/24" {
		t.Errorf("MTU/subnet not rendered: %s", withMTU)
	}

	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("fd00::/64")} {
		if _, err := CNIConfig(bad, 0); err == nil {
			t.Errorf("CNIConfig(%v) accepted", bad)
		}
	}
	if _, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"), -1); err == nil {
		t.Error("negative MTU accepted")
	}
}
