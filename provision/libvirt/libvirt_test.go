package libvirt

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"kubeforge.dev/kubeforge/internal/kferr"
)

func TestParseURI(t *testing.T) {
	for _, ok := range []string{"qemu:///system", "qemu:///session", "qemu+unix:///system?socket=/run/x.sock", "qemu+ssh://me@big/system", "qemu+ssh://me@big:2222/system?keyfile=/k"} {
		if _, err := ParseURI(ok); err != nil {
			t.Errorf("ParseURI(%q): %v", ok, err)
		}
	}
	for uri, want := range map[string]string{
		"":                          "not a URI",
		"xen:///system":             "qemu driver",
		"qemu+tcp://big/system":     "not supported",
		"qemu://big/system":         "needs a transport",
		"qemu+ssh:///system":        "names no host",
		"qemu:///":                  "/system",
		"lxc:///system":             "qemu driver",
		"qemu+ssh://me@big/system2": "/system",
	} {
		_, err := ParseURI(uri)
		if err == nil || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURI(%q) = %v, want a usage error saying %q", uri, err, want)
		}
	}
}

// TestConnectErrors: a daemon that is not there, locally or over SSH, is an environment problem
// (exit 3) whose fix says what to do.
func TestConnectErrors(t *testing.T) {
	ctx := context.Background()
	sock := filepath.Join(t.TempDir(), "libvirt-sock")
	_, err := Connect(ctx, "qemu+unix:///system?socket="+sock)
	if kferr.Code(err) != kferr.ExitEnvironment || !strings.Contains(kferr.Hint(err), "apt-get install -y libvirt-daemon-system") {
		t.Errorf("no local daemon: %v (hint %q)", err, kferr.Hint(err))
	}
	// A closed port on loopback: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Connect(ctx, "qemu+ssh://kubeforge@127.0.0.1:"+strconv.Itoa(port)+"/system?no_verify=1")
	if kferr.Code(err) != kferr.ExitEnvironment || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable SSH host: %v (hint %q)", err, kferr.Hint(err))
	}
}

func TestDomainXML(t *testing.T) {
	spec := DomainSpec{
		Name: "dev-m02", Labels: Labels{Cluster: "dev", Node: "dev-m02", Role: "worker"},
		VCPUs: 2, MemoryMiB: 2048, Accel: AccelTCG,
		Kernel: "/var/lib/kubeforge/vmlinuz", Initrd: "/var/lib/kubeforge/initrd.img",
		Cmdline: "root=/dev/vda console=ttyS0", Disk: "/var/lib/libvirt/images/dev-m02.qcow2",
		Network: "kubeforge-dev", MAC: "52:54:00:00:00:03",
	}
	s, err := DomainXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(s); err != nil {
		t.Fatalf("the domain XML does not parse back: %v\n%s", err, s)
	}
	if d.Type != "qemu" || d.CPU == nil || d.CPU.Mode != "maximum" {
		t.Errorf("TCG domain: type %q, cpu %+v", d.Type, d.CPU)
	}
	if d.Memory.Value != 2048 || d.Memory.Unit != "MiB" || d.VCPU.Value != 2 {
		t.Errorf("size: %+v %+v", d.Memory, d.VCPU)
	}
	if d.OS.Kernel != spec.Kernel || d.OS.Cmdline != spec.Cmdline {
		t.Errorf("boot: %+v", d.OS)
	}
	disk := d.Devices.Disks[0]
	if disk.Source.File.File != spec.Disk || disk.Driver.Type != "qcow2" || disk.Target.Bus != "virtio" {
		t.Errorf("disk: %+v", disk)
	}
	nic := d.Devices.Interfaces[0]
	if nic.Source.Network.Network != spec.Network || nic.MAC.Address != spec.MAC {
		t.Errorf("interface: %+v", nic)
	}
	if l, ok := ParseLabels(d.Metadata.XML); !ok || l != (Labels{XMLName: l.XMLName, Cluster: "dev", Node: "dev-m02", Role: "worker"}) {
		t.Errorf("labels from the domain's metadata: %+v %v (metadata %q)", l, ok, d.Metadata.XML)
	}

	spec.Accel = AccelKVM
	if s, err = DomainXML(spec); err != nil || d.Unmarshal(s) != nil || d.Type != "kvm" || d.CPU == nil || d.CPU.Mode != "host-passthrough" {
		t.Errorf("KVM domain: %v\n%s", err, s)
	}
	spec.Accel = "hvf"
	if _, err := DomainXML(spec); err == nil || !strings.Contains(err.Error(), "kvm, tcg") {
		t.Errorf("unknown acceleration: %v", err)
	}
	if _, err := DomainXML(DomainSpec{Name: "x"}); err == nil {
		t.Error("an empty spec rendered")
	}
}

func TestNetworkXML(t *testing.T) {
	spec := NetworkSpec{
		Name: "kubeforge-dev", Labels: Labels{Cluster: "dev"},
		Subnet: netip.MustParsePrefix("192.168.123.0/24"), Gateway: netip.MustParseAddr("192.168.123.1"),
		Hosts: []Host{{Name: "dev", MAC: "52:54:00:00:00:02", IP: netip.MustParseAddr("192.168.123.2")}},
	}
	s, err := NetworkXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Network
	if err := n.Unmarshal(s); err != nil {
		t.Fatalf("the network XML does not parse back: %v\n%s", err, s)
	}
	if n.Forward.Mode != "nat" || n.IPs[0].Address != "192.168.123.1" || n.IPs[0].Prefix != 24 {
		t.Errorf("network: %+v %+v", n.Forward, n.IPs)
	}
	if h := n.IPs[0].DHCP.Hosts; len(h) != 1 || h[0].IP != "192.168.123.2" || h[0].MAC != "52:54:00:00:00:02" {
		t.Errorf("DHCP hosts: %+v", h)
	}
	if l, ok := ParseLabels(n.Metadata.XML); !ok || l.Cluster != "dev" {
		t.Errorf("labels from the network's metadata: %+v %v", l, ok)
	}
	spec.Hosts[0].IP = netip.MustParseAddr("10.0.0.2")
	if _, err := NetworkXML(spec); err == nil {
		t.Error("a host outside the subnet rendered")
	}
	if _, ok := ParseLabels(`<other xmlns="https://example.com/x"><cluster>dev</cluster></other>`); ok {
		t.Error("someone else's metadata read as kubeforge's labels")
	}
}
