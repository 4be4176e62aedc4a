package netctl

import (
	"bufio"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"kubeforge.dev/kubeforge/contract"
)

// Pod DNS on a Docker node. Docker gives containers on user-defined networks an embedded DNS
// server at 127.0.0.11, reachable only through the container's own loopback: a pod (CoreDNS
// with dnsPolicy Default) that inherits that address asks itself and CoreDNS stops with "Loop
// detected". So the kubelet gets a resolv.conf naming the node's own IP instead, and the node
// DNATs DNS sent to that IP on to Docker's server (whose real ports Docker's own nat rules name).

// DockerDNS is the address of Docker's embedded DNS server.
var DockerDNS = netip.MustParseAddr("127.0.0.11")

// DNSChain is the nat chain holding the DNAT rules.
const DNSChain = "KUBEFORGE-DNS"

// DefaultPodResolvConf is the resolv.conf the kubelet gives pods with dnsPolicy Default.
const DefaultPodResolvConf = contract.PodResolvConf

// PodResolvConf rewrites the node's resolv.conf for pods: loopback name servers (which mean
// nothing inside a pod's network namespace) are replaced by nodeIP. It reports whether Docker's
// embedded server was among them (then DNS to nodeIP must be forwarded to it).
func PodResolvConf(in string, nodeIP netip.Addr) (out string, viaDocker bool) {
	var b strings.Builder
	replaced := false
	sc := bufio.NewScanner(strings.NewReader(in))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				if a == DockerDNS {
					viaDocker = true
				}
				if !replaced {
					fmt.Fprintf(&b, "nameserver %s\n", nodeIP)
					replaced = true
				}
				continue
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), viaDocker
}

// dockerDNSRule matches Docker's DNAT of its embedded DNS in iptables-save output, e.g.
// "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41327".
var dockerDNSRule = regexp.MustCompile(`^-A DOCKER_OUTPUT -d 127\.0\.0\.11/32 -p (tcp|udp) .*--dport 53 -j DNAT --to-destination 127\.0\.0\.11:(\d+)`)

// DockerDNSPorts finds the real TCP and UDP ports of Docker's embedded DNS in iptables-save
// output of the nat table; zero when not found.
func DockerDNSPorts(natSave string) (tcp, udp int) {
	for _, line := range strings.Split(natSave, "\n") {
		m := dockerDNSRule.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		p, err := strconv.Atoi(m[2])
		if err != nil || p <= 0 || p > 65535 {
			continue
		}
		if m[1] == "tcp" {
			tcp = p
		} else {
			udp = p
		}
	}
	return tcp, udp
}

// DNSRules are the nat rules of DNSChain forwarding DNS sent to nodeIP to Docker's server.
func DNSRules(nodeIP netip.Addr, tcp, udp int) [][]string {
	var rules [][]string
	for _, p := range []struct {
		proto string
		port  int
	}{{"udp", udp}, {"tcp", tcp}} {
		if p.port == 0 {
			continue
		}
		rules = append(rules, []string{"-d", nodeIP.String() + "/32", "-p", p.proto, "-m", p.proto, "--dport", "53",
			"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", DockerDNS, p.port)})
	}
	return rules
}

// GuardChain is the filter chain that rejects traffic to Service IPs that no kube-proxy rule
// translated: before kube-proxy has written its rules, such packets would otherwise follow the
// node's default route out of the cluster, to whatever answers at that address.
const GuardChain = "KUBEFORGE-SVC-GUARD"

// GuardRules are GuardChain's rules for the Service range. Filter rules see packets after
// kube-proxy's DNAT (nat PREROUTING and OUTPUT come first), so translated traffic passes.
func GuardRules(serviceCIDR netip.Prefix) [][]string {
	return [][]string{{"-d", serviceCIDR.Masked().String(), "-j", "REJECT", "--reject-with", "icmp-port-unreachable"}}
}
