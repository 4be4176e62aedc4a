package libvirt

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// LabelsNamespace is the XML namespace of kubeforge's metadata in domains and networks.
const LabelsNamespace = "https://kubeforge.dev/xmlns/libvirt/v1"

// Labels mark what kubeforge made, as the Docker driver's container labels do: delete removes
// the domains, volumes and networks of a cluster, and nothing else.
type Labels struct {
	XMLName xml.Name `xml:"https://kubeforge.dev/xmlns/libvirt/v1 kubeforge"`
	Cluster string   `xml:"cluster"`
	Node    string   `xml:"node,omitempty"`
	Role    string   `xml:"role,omitempty"`
	IP      string   `xml:"ip,omitempty"`
}

func (l Labels) xml() (string, error) {
	b, err := xml.Marshal(l)
	return string(b), err
}

// ParseLabels reads kubeforge's labels from a domain's or network's metadata; ok is false for
// what kubeforge did not make.
func ParseLabels(metadataXML string) (l Labels, ok bool) {
	dec := xml.NewDecoder(strings.NewReader(metadataXML))
	for {
		tok, err := dec.Token()
		if err != nil {
			return Labels{}, false
		}
		if se, isStart := tok.(xml.StartElement); isStart && se.Name.Space == LabelsNamespace && se.Name.Local == "kubeforge" {
			if err := dec.DecodeElement(&l, &se); err != nil || l.Cluster == "" {
				return Labels{}, false
			}
			return l, true
		}
	}
}

// Accelerations a domain can run with.
const (
	AccelKVM = "kvm" // hardware virtualization (/dev/kvm)
	AccelTCG = "tcg" // qemu's software emulation: slow, for hosts without KVM
)

// DomainSpec is a node VM.
type DomainSpec struct {
	Name      string
	Labels    Labels
	VCPUs     uint
	MemoryMiB uint
	Accel     string // AccelKVM or AccelTCG
	// Kernel, Initrd and Cmdline boot the node's kernel directly (no bootloader in the disk).
	Kernel, Initrd, Cmdline string
	// Disk is the node's root disk, a qcow2 file (a volume of the cluster's pool).
	Disk string
	// Seed, when set, is a raw second disk (vdb): the node's first-boot files as a tar archive.
	Seed string
	// Console, when set, is the file the serial console is written to; else a pty.
	Console string
	// Network is the cluster's libvirt network; MAC pins the node's address there (DHCP host).
	Network, MAC string
}

// DomainXML renders spec as libvirt domain XML.
func DomainXML(s DomainSpec) (string, error) {
	if s.Name == "" || s.Disk == "" || s.Network == "" || s.Kernel == "" || s.VCPUs == 0 || s.MemoryMiB == 0 {
		return "", fmt.Errorf("domain %q: name, disk, network, kernel, vCPUs and memory are required", s.Name)
	}
	domType := map[string]string{AccelKVM: "kvm", AccelTCG: "qemu"}[s.Accel]
	if domType == "" {
		return "", fmt.Errorf("domain %s: acceleration %q is not one of %s, %s", s.Name, s.Accel, AccelKVM, AccelTCG)
	}
	meta, err := s.Labels.xml()
	if err != nil {
		return "", err
	}
	console := &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
	if s.Console != "" {
		console = &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: s.Console, Append: "off"}}
	}
	d := libvirtxml.Domain{
		Type:     domType,
		Name:     s.Name,
		Metadata: &libvirtxml.DomainMetadata{XML: meta},
		Memory:   &libvirtxml.DomainMemory{Value: s.MemoryMiB, Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: s.VCPUs},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Type: "hvm", Arch: "x86_64"},
			Kernel:  s.Kernel,
			Initrd:  s.Initrd,
			Cmdline: s.Cmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				// A node is a throwaway machine: its flushes need not reach the host's disk
				// (etcd's fsyncs are emulated work under TCG), unless the host itself crashes.
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: "unsafe", Discard: "unmap"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Interfaces: []libvirtxml.DomainInterface{{
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: s.MAC},
				Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: s.Network}},
				Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			}},
			// The node's console (kernel and supervisor output) is the serial port.
			Serials: []libvirtxml.DomainSerial{{Source: console}},
			RNGs: []libvirtxml.DomainRNG{{Model: "virtio", Backend: &libvirtxml.DomainRNGBackend{
				Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}}}},
		},
	}
	if s.Seed != "" {
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "disk",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Seed}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "vdb", Bus: "virtio"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	if s.Accel == AccelKVM {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	} else {
		// Every instruction set extension qemu's emulation has (AES-NI, AVX2...): Go's crypto
		// and runtime then take their fast paths, each instruction emulated in one helper.
		d.CPU = &libvirtxml.DomainCPU{Mode: "maximum"}
	}
	return d.Marshal()
}

// Host pins a node's address on the network (a DHCP host entry).
type Host struct {
	Name string
	MAC  string
	IP   netip.Addr
}

// NetworkSpec is a cluster's own network: NAT to the outside, the host at Gateway, nodes at
// fixed addresses.
type NetworkSpec struct {
	Name    string
	Labels  Labels
	Subnet  netip.Prefix
	Gateway netip.Addr
	Hosts   []Host
	// Bridge is the bridge's name on the hypervisor (at most 15 characters); empty lets libvirt
	// choose.
	Bridge string
}

// NetworkXML renders spec as libvirt network XML.
func NetworkXML(s NetworkSpec) (string, error) {
	if !s.Subnet.IsValid() || !s.Subnet.Addr().Is4() || !s.Subnet.Contains(s.Gateway) {
		return "", fmt.Errorf("network %s: subnet %s must be IPv4 and hold the gateway %s", s.Name, s.Subnet, s.Gateway)
	}
	meta, err := s.Labels.xml()
	if err != nil {
		return "", err
	}
	hosts := make([]libvirtxml.NetworkDHCPHost, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		if !s.Subnet.Contains(h.IP) || h.IP == s.Gateway {
			return "", fmt.Errorf("network %s: host %s's address %s is not a node address of %s", s.Name, h.Name, h.IP, s.Subnet)
		}
		hosts = append(hosts, libvirtxml.NetworkDHCPHost{MAC: h.MAC, Name: h.Name, IP: h.IP.String()})
	}
	n := libvirtxml.Network{
		Name:     s.Name,
		Metadata: &libvirtxml.NetworkMetadata{XML: meta},
		Forward:  &libvirtxml.NetworkForward{Mode: "nat"},
		IPs: []libvirtxml.NetworkIP{{
			Address: s.Gateway.String(),
			Prefix:  uint(s.Subnet.Bits()),
		}},
	}
	if len(hosts) > 0 {
		n.IPs[0].DHCP = &libvirtxml.NetworkDHCP{Hosts: hosts}
	}
	if s.Bridge != "" {
		n.Bridge = &libvirtxml.NetworkBridge{Name: s.Bridge, STP: "on", Delay: "0"}
	}
	return n.Marshal()
}
