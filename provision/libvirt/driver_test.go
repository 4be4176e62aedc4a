package libvirt

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"libvirt.org/go/libvirtxml"

	"kubeforge.dev/kubeforge/provision"
)

func TestKeysAreMadeOnceAndPinned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(k1.AuthorizedKey()) != string(k2.AuthorizedKey()) || string(k1.HostPublic.Marshal()) != string(k2.HostPublic.Marshal()) {
		t.Error("a second load made new keys")
	}
	st, err := os.Stat(k1.ClientKeyPath())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("client key %s: %v %v", k1.ClientKeyPath(), st, err)
	}
	// The node is given the host key whose public half the client pins.
	hs, err := ssh.ParsePrivateKey(k1.hostPrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(hs.PublicKey().Marshal()) != string(k1.HostPublic.Marshal()) {
		t.Error("the host key given to nodes is not the pinned one")
	}
	line := k1.KnownHostsLine("192.168.50.2")
	if _, hosts, _, _, _, err := ssh.ParseKnownHosts([]byte(line)); err != nil || hosts[0] != "192.168.50.2" {
		t.Errorf("known_hosts line %q: %v %v", line, hosts, err)
	}
	// Another key than the pinned one is refused.
	other, _ := LoadOrCreateKeys(filepath.Join(t.TempDir(), "other"))
	conn := &sshConn{keys: k1}
	if err := conn.config().HostKeyCallback("192.168.50.2:22", nil, other.HostPublic); err == nil {
		t.Error("a node presenting another host key was accepted")
	}
	if err := conn.config().HostKeyCallback("192.168.50.2:22", nil, k1.HostPublic); err != nil {
		t.Errorf("the pinned host key was refused: %v", err)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"sh", "-c", "echo 'a b' $HOME", "", "x=1"})
	want := `sh -c 'echo '\''a b'\'' $HOME' '' x=1`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

func TestNames(t *testing.T) {
	if b := bridgeName("a-very-long-cluster-name"); len(b) > 15 || !strings.HasPrefix(b, "kf-") {
		t.Errorf("bridge name %q", b)
	}
	if macFor("c", "n1") == macFor("c", "n2") || !strings.HasPrefix(macFor("c", "n1"), "52:54:00:") {
		t.Error("MACs must differ per node and use qemu's prefix")
	}
	for _, s := range SubnetCandidates() {
		if s.Bits() != 24 || s.Addr().As4()[2]%9 != 50%9 {
			t.Errorf("candidate %s", s)
		}
	}
}

func TestDomainXMLSeedAndConsole(t *testing.T) {
	x, err := DomainXML(DomainSpec{Name: "n", Labels: Labels{Cluster: "c", Node: "n", IP: "192.168.50.2"}, VCPUs: 2, MemoryMiB: 2048,
		Accel: AccelTCG, Kernel: "/k", Initrd: "/i", Cmdline: KernelCmdline, Disk: "/d.qcow2", Seed: "/s.tar", Network: "net", MAC: "52:54:00:00:00:01",
		Console: "/var/log/c.log"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if len(d.Devices.Disks) != 2 || d.Devices.Disks[1].Target.Dev != "vdb" || d.Devices.Disks[1].ReadOnly == nil || d.Devices.Disks[1].Driver.Type != "raw" {
		t.Errorf("seed disk: %+v", d.Devices.Disks)
	}
	if s := d.Devices.Serials[0].Source; s.File == nil || s.File.Path != "/var/log/c.log" {
		t.Errorf("console: %+v", s)
	}
	if lab, ok := ParseLabels(d.Metadata.XML); !ok || lab.IP != "192.168.50.2" {
		t.Errorf("labels: %+v", lab)
	}
}

func TestStaleImageVolumes(t *testing.T) {
	vol := func(name, backing string) poolVolume {
		return poolVolume{name: name, path: "/pool/" + name, backing: backing}
	}
	image := func(key string) []poolVolume {
		p := "kubeforge-node-" + key
		return []poolVolume{vol(p+".qcow2", ""), vol(p+".vmlinuz", ""), vol(p+".initrd", ""), vol(p+".complete", "")}
	}
	var vols []poolVolume
	for _, k := range []string{"v1.99.0-c0c0c0c0c0c0", "v1.99.0-0000000000aa", "v1.99.0-bbbbbbbbbbbb", "v1.99.0-dddddddddddd", "v1.98.0-eeeeeeeeeeee"} {
		vols = append(vols, image(k)...)
	}
	vols = append(vols,
		vol("kf-a.qcow2", "/pool/kubeforge-node-v1.99.0-bbbbbbbbbbbb.qcow2"), // a node disk over an old image
		vol("kf-a-seed.tar", ""), vol("kubeforge-node-.qcow2", ""), vol("other.img", ""),
		// The node disk and seed of a cluster named kubeforge-node-foo are not images.
		vol("kubeforge-node-foo.qcow2", ""), vol("kubeforge-node-foo-m02.qcow2", ""))
	used := map[string]bool{"/pool/kubeforge-node-v1.99.0-bbbbbbbbbbbb.qcow2": true, // backing file
		"/pool/kubeforge-node-v1.99.0-dddddddddddd.vmlinuz": true} // a domain's kernel
	// Kept: the current image, and v1.98.0-eeeeeeeeeeee (a recorded cluster's).
	got := staleImageVolumes(vols, used, []string{"v1.99.0-c0c0c0c0c0c0", "v1.98.0-eeeeeeeeeeee"})
	want := []string{"kubeforge-node-v1.99.0-0000000000aa.complete", "kubeforge-node-v1.99.0-0000000000aa.initrd",
		"kubeforge-node-v1.99.0-0000000000aa.qcow2", "kubeforge-node-v1.99.0-0000000000aa.vmlinuz"}
	if !slices.Equal(got, want) {
		t.Errorf("stale = %v, want %v", got, want)
	}
}

func TestCheckDomainLabels(t *testing.T) {
	for _, tc := range []struct {
		lab  Labels
		name string
		ok   bool
	}{
		{Labels{Cluster: "kf", Node: "kf"}, "kf", true},
		{Labels{Cluster: "kf", Node: "kf-m02"}, "kf-m02", true},
		{Labels{Cluster: "kf", Node: "kf-m02"}, "kf-m03", false},
		{Labels{Cluster: "..", Node: ".."}, "..", false},
		{Labels{Cluster: "kf", Node: "kf/../x"}, "kf/../x", false},
		{Labels{Cluster: "kf"}, "kf", false},
	} {
		if err := checkDomainLabels(tc.lab, tc.name); (err == nil) != tc.ok {
			t.Errorf("checkDomainLabels(%+v, %q) = %v, want ok %v", tc.lab, tc.name, err, tc.ok)
		}
	}
}

// TestVMNetworkFile: the node's network file is byte for byte what the driver wrote before it
// marshalled contract.VMNetwork (nodes made then read the same file).
func TestVMNetworkFile(t *testing.T) {
	net := provision.Network{Subnet: netip.MustParsePrefix("192.168.130.0/24"), Gateway: netip.MustParseAddr("192.168.130.1")}
	b, err := vmNetworkFile("demo-control-plane", netip.MustParseAddr("192.168.130.2"), net)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hostname":"demo-control-plane","interface":"eth0","address":"192.168.130.2/24","gateway":"192.168.130.1"}` + "\n"
	if string(b) != want {
		t.Errorf("vm-network.json = %q, want %q", b, want)
	}
}
