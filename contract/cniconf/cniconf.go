// Package cniconf renders the CNI config of a kubeforge node (bridge + host-local IPAM over the
// node's pod CIDR, portmap). It is shared by netctl, which keeps the file in step with the Node's
// podCIDR, and bootstrap, which writes it before the node boots when the CIDR is known up front.
// Standard library only.
package cniconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
)

// Names of the node's pod network.
const (
	// NetworkName is the CNI network name (and the host-local IPAM state directory under DataDir).
	NetworkName = "kubeforge"
	// ConfFileName is the CNI config file written into the CNI config directory.
	ConfFileName = "10-kubeforge.conflist"
	// DefaultConfDir is where the CNI config is written (containerd's conf_dir).
	DefaultConfDir = "/etc/cni/net.d"
	// BinDir is where the node image has the CNI plugins (Debian's containernetworking-plugins;
	// containerd's bin_dirs).
	BinDir = "/usr/lib/cni"
	// BridgeName is the Linux bridge the bridge plugin creates; pods' gateway is on it.
	BridgeName = "kfbr0"
	// CNIVersion is the CNI spec version of the config: the newest that Debian bookworm's
	// containernetworking-plugins 1.1.1 and containerd's libcni support.
	CNIVersion = "1.0.0"
	// DataDir is host-local IPAM's state directory (it stores leases under DataDir/NetworkName).
	DataDir = "/var/lib/cni/networks"
)

// CNI config document types, in the order the fields are written.
type (
	cniConfList struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []any  `json:"plugins"`
	}
	cniBridge struct {
		Type        string  `json:"type"`
		Bridge      string  `json:"bridge"`
		IsGateway   bool    `json:"isGateway"`
		IPMasq      bool    `json:"ipMasq"`
		HairpinMode bool    `json:"hairpinMode"`
		MTU         int     `json:"mtu,omitempty"`
		IPAM        cniIPAM `json:"ipam"`
	}
	cniIPAM struct {
		Type    string         `json:"type"`
		Ranges  [][]cniRange   `json:"ranges"`
		Routes  []cniIPAMRoute `json:"routes"`
		DataDir string         `json:"dataDir"`
	}
	cniRange struct {
		Subnet string `json:"subnet"`
	}
	cniIPAMRoute struct {
		Dst string `json:"dst"`
	}
	cniPortMap struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
	}
)

// Render renders the node's CNI network config list for its pod CIDR: the bridge plugin
// (BridgeName, gateway on the bridge, no masquerading of its own, hairpin on) with host-local IPAM
// over podCIDR and a default route, then portmap for hostPort. mtu 0 leaves the bridge plugin's
// default. The loopback interface is the runtime's business. The output is deterministic
// (indented JSON and a final newline), so it can be compared with what is on disk.
func Render(podCIDR netip.Prefix, mtu int) ([]byte, error) {
	if !podCIDR.IsValid() || !podCIDR.Addr().Is4() {
		return nil, fmt.Errorf("pod CIDR %q is not an IPv4 prefix", podCIDR)
	}
	if mtu < 0 {
		return nil, fmt.Errorf("MTU %d is negative", mtu)
	}
	conf := cniConfList{
		CNIVersion: CNIVersion,
		Name:       NetworkName,
		Plugins: []any{
			cniBridge{
				Type:        "bridge",
				Bridge:      BridgeName,
				IsGateway:   true,
				IPMasq:      false,
				HairpinMode: true,
				MTU:         mtu,
				IPAM: cniIPAM{
					Type:    "host-local",
					Ranges:  [][]cniRange{{{Subnet: podCIDR.Masked().String()}}},
					Routes:  []cniIPAMRoute{{Dst: "0.0.0.0/0"}},
					DataDir: DataDir,
				},
			},
			cniPortMap{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(conf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
