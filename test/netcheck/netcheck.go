// Package netcheck holds the tests' checks of what a cluster serves on the network, as a client
// on the host sees it (the e2e and VM tiers share them).
package netcheck

import (
	"context"
	"fmt"
	"net"
	"time"
)

// KubernetesName is the kubernetes Service's name, which every cluster's DNS answers.
const KubernetesName = "kubernetes.default.svc.cluster.local"

// DNSAsk resolves KubernetesName through the DNS server at addr, over network (udp or tcp), and
// returns the first address; each try is bounded (2 s to connect, 3 s in all).
func DNSAsk(ctx context.Context, network, addr string) (string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		return d.DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ips, err := r.LookupHost(ctx, KubernetesName)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("lookup via %s %s: %v", network, addr, err)
	}
	return ips[0], nil
}
