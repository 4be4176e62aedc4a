package provision

import (
	"net/netip"
	"testing"
)

// The machines at the top of a cluster's network: API load balancer, cloud provider, registry,
// one below the other (node/cloud's pickIP hands out the addresses below the registry's).
func TestTopAddresses(t *testing.T) {
	n := Network{Subnet: netip.MustParsePrefix("192.168.49.0/24")}
	for what, got := range map[string]netip.Addr{
		".254": n.LoadBalancerIP(), ".253": n.CloudProviderIP(), ".252": n.RegistryIP(),
	} {
		if want := netip.MustParseAddr("192.168.49" + what); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	if ip := (Network{}).RegistryIP(); ip.IsValid() {
		t.Errorf("RegistryIP of no subnet = %v, want none", ip)
	}
	if ip := (Network{Subnet: netip.MustParsePrefix("10.0.0.0/30")}).RegistryIP(); ip.IsValid() {
		t.Errorf("RegistryIP of a /30 = %v, want none", ip)
	}
}
