package provision

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// SubnetCandidates are the subnets a cluster network may get, in the order they are tried:
// 192.168.49.0/24, 192.168.58.0/24, ... up to 192.168.247.0/24 (the third octet steps by 9).
func SubnetCandidates() []netip.Prefix {
	var out []netip.Prefix
	for o := 49; o <= 247; o += 9 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(o), 0}), 24))
	}
	return out
}

// ChooseSubnet returns the first candidate that overlaps none of taken.
func ChooseSubnet(taken []netip.Prefix) (netip.Prefix, bool) {
	for _, c := range SubnetCandidates() {
		if !overlapsAny(c, taken) {
			return c, true
		}
	}
	return netip.Prefix{}, false
}

func overlapsAny(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if t.IsValid() && p.Overlaps(t) {
			return true
		}
	}
	return false
}

// HostPrefixes returns the IPv4 prefixes of the host's interface addresses and routes (except
// the default route), which a new network must not overlap.
func HostPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list host interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if p, ok := ipNetPrefix(ipn); ok {
				out = append(out, p)
			}
		}
	}
	f, err := os.Open("/proc/net/route")
	if err == nil {
		defer f.Close()
		routes, err := ParseRoutes(f)
		if err != nil {
			return nil, fmt.Errorf("read /proc/net/route: %w", err)
		}
		out = append(out, routes...)
	}
	return out, nil
}

func ipNetPrefix(ipn *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap()
	if !addr.Is4() {
		return netip.Prefix{}, false
	}
	ones, bits := ipn.Mask.Size()
	if bits == 128 && ones >= 96 {
		ones -= 96
	} else if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, ones).Masked(), true
}

// ParseRoutes reads the destinations of /proc/net/route (little-endian hex), skipping default
// routes (mask 0), which would overlap everything.
func ParseRoutes(r io.Reader) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dst, err1 := hexLE(f[1])
		mask, err2 := hexLE(f[7])
		if err1 != nil || err2 != nil {
			continue
		}
		if binary.BigEndian.Uint32(mask[:]) == 0 {
			continue
		}
		ones, _ := net.IPMask(mask[:]).Size()
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(dst), ones).Masked())
	}
	return out, sc.Err()
}

// hexLE decodes an address as /proc/net/route prints it: 8 hex digits, host (little-endian)
// byte order, so 0100A8C0 is 192.168.0.1.
func hexLE(s string) ([4]byte, error) {
	var b [4]byte
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 4 {
		return b, fmt.Errorf("bad address %q", s)
	}
	b[0], b[1], b[2], b[3] = raw[3], raw[2], raw[1], raw[0]
	return b, nil
}
