package netctl

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"
)

// SetupDNS writes the pods' resolv.conf (resolvOut) from the node's (resolvIn) and, when the
// node's name server is Docker's embedded one, forwards DNS sent to nodeIP to it (see dns.go).
// It is idempotent: run it at every boot, before the kubelet (Docker's ports change on restart).
func SetupDNS(ctx context.Context, nodeIP netip.Addr, resolvIn, resolvOut string) error {
	logger := klog.Background().WithName("netctl-dns")
	in, err := os.ReadFile(resolvIn)
	if err != nil {
		return fmt.Errorf("reading %s: %w", resolvIn, err)
	}
	out, viaDocker := PodResolvConf(string(in), nodeIP)
	if viaDocker {
		tcp, udp, err := waitDockerDNSPorts(ctx)
		if err != nil {
			return err
		}
		// DNAT to a loopback address of packets that arrive from pods needs route_localnet.
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/route_localnet", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enabling net.ipv4.conf.all.route_localnet: %w", err)
		}
		ipt := utiliptables.New(utiliptables.ProtocolIPv4)
		chain := utiliptables.Chain(DNSChain)
		if _, err := ipt.EnsureChain(utiliptables.TableNAT, chain); err != nil {
			return fmt.Errorf("creating nat chain %s: %w", DNSChain, err)
		}
		if err := ipt.FlushChain(utiliptables.TableNAT, chain); err != nil {
			return fmt.Errorf("flushing nat chain %s: %w", DNSChain, err)
		}
		for _, r := range DNSRules(nodeIP, tcp, udp) {
			if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableNAT, chain, r...); err != nil {
				return fmt.Errorf("adding %v to %s: %w", r, DNSChain, err)
			}
		}
		if _, err := ipt.EnsureRule(utiliptables.Prepend, utiliptables.TableNAT, utiliptables.ChainPrerouting,
			"-m", "comment", "--comment", "kubeforge: pod DNS to Docker's embedded server", "-j", DNSChain); err != nil {
			return fmt.Errorf("jumping from PREROUTING to %s: %w", DNSChain, err)
		}
		logger.Info("pod DNS forwarded to Docker's embedded server", "nodeIP", nodeIP, "tcpPort", tcp, "udpPort", udp)
	}
	if err := os.MkdirAll(filepath.Dir(resolvOut), 0o755); err != nil {
		return err
	}
	tmp := resolvOut + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, resolvOut)
}

// waitDockerDNSPorts reads Docker's DNS ports from whichever iptables backend Docker used,
// waiting a little in case Docker has not written them yet.
func waitDockerDNSPorts(ctx context.Context) (tcp, udp int, err error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, save := range []string{"iptables-nft-save", "iptables-legacy-save", "iptables-save"} {
			b, err := exec.CommandContext(ctx, save, "-t", "nat").Output()
			if err != nil {
				continue
			}
			if tcp, udp = DockerDNSPorts(string(b)); udp != 0 {
				return tcp, udp, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the node uses Docker's DNS (%s) but no DOCKER_OUTPUT rule names its port in iptables-nft-save or iptables-legacy-save", DockerDNS)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// GuardServiceCIDR installs GuardChain, jumped to from FORWARD (pods) and OUTPUT (the node's own
// processes and host-network pods). Idempotent.
func GuardServiceCIDR(serviceCIDR netip.Prefix) error {
	ipt := utiliptables.New(utiliptables.ProtocolIPv4)
	chain := utiliptables.Chain(GuardChain)
	if _, err := ipt.EnsureChain(utiliptables.TableFilter, chain); err != nil {
		return fmt.Errorf("creating filter chain %s: %w", GuardChain, err)
	}
	if err := ipt.FlushChain(utiliptables.TableFilter, chain); err != nil {
		return fmt.Errorf("flushing filter chain %s: %w", GuardChain, err)
	}
	for _, r := range GuardRules(serviceCIDR) {
		if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableFilter, chain, r...); err != nil {
			return fmt.Errorf("adding %v to %s: %w", r, GuardChain, err)
		}
	}
	for _, from := range []utiliptables.Chain{utiliptables.ChainForward, utiliptables.ChainOutput} {
		if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableFilter, from,
			"-m", "comment", "--comment", "kubeforge: Service IPs not translated by kube-proxy stay in the node", "-j", GuardChain); err != nil {
			return fmt.Errorf("jumping from %s to %s: %w", from, GuardChain, err)
		}
	}
	return nil
}
