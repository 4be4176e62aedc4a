package netctl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPodResolvConf(t *testing.T) {
	ip := netip.MustParseAddr("192.168.49.2")
	in := "search example.org\nnameserver 127.0.0.11\noptions ndots:0 edns0 trust-ad\n"
	out, docker := PodResolvConf(in, ip)
	if !docker {
		t.Error("127.0.0.11 not recognized as Docker's DNS")
	}
	want := "search example.org\nnameserver 192.168.49.2\noptions ndots:0 edns0 trust-ad\n"
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}

	// A real upstream is kept; a systemd-resolved stub is replaced, not reported as Docker's.
	out, docker = PodResolvConf("nameserver 10.0.0.2\nnameserver 127.0.0.53\n", ip)
	if docker || out != "nameserver 10.0.0.2\nnameserver 192.168.49.2\n" {
		t.Errorf("got %q, docker=%v", out, docker)
	}
	out, docker = PodResolvConf("nameserver 8.8.8.8\n", ip)
	if docker || out != "nameserver 8.8.8.8\n" {
		t.Errorf("got %q, docker=%v", out, docker)
	}
}

func TestDockerDNSPorts(t *testing.T) {
	save := `*nat
:DOCKER_OUTPUT - [0:0]
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:39201
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41327
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 39201 -j SNAT --to-source :53
COMMIT
`
	tcp, udp := DockerDNSPorts(save)
	if tcp != 39201 || udp != 41327 {
		t.Fatalf("got tcp %d udp %d", tcp, udp)
	}
	if tcp, udp := DockerDNSPorts("*nat\nCOMMIT\n"); tcp != 0 || udp != 0 {
		t.Fatalf("found ports in an empty table: %d %d", tcp, udp)
	}
	rules := DNSRules(netip.MustParseAddr("192.168.49.2"), tcp, udp)
	if len(rules) != 2 || strings.Join(rules[0], " ") != "-d 192.168.49.2/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41327" {
		t.Fatalf("rules: %q", rules)
	}
}

func TestGuardRules(t *testing.T) {
	r := GuardRules(netip.MustParsePrefix("10.96.3.4/16"))
	if len(r) != 1 || strings.Join(r[0], " ") != "-d 10.96.0.0/16 -j REJECT --reject-with icmp-port-unreachable" {
		t.Fatalf("rules: %q", r)
	}
}
