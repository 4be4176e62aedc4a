package netctl

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"
)

// HostApplier is the Applier of a real node: files in the CNI config directory, netlink routes
// in the main table of the calling process's network namespace, and iptables (nat table).
type HostApplier struct {
	confDir string
	ipt     utiliptables.Interface
	logger  klog.Logger
	mu      sync.Mutex
}

var _ Applier = (*HostApplier)(nil)

// NewHostApplier returns the Applier that changes this machine's network namespace, writing the
// CNI config into cniConfDir. It runs iptables once (to learn its version).
func NewHostApplier(cniConfDir string) (*HostApplier, error) {
	if cniConfDir == "" {
		return nil, errors.New("netctl: CNI config directory is required")
	}
	return &HostApplier{
		confDir: cniConfDir,
		ipt:     utiliptables.New(utiliptables.ProtocolIPv4),
		logger:  klog.Background().WithName("netctl"),
	}, nil
}

// ConfPath is the CNI config file the applier writes.
func (a *HostApplier) ConfPath() string { return filepath.Join(a.confDir, ConfFileName) }

// WriteCNIConfig writes conf to ConfPath atomically (a temporary file in the same directory,
// synced, then renamed over it), and only when the content differs from what is there.
func (a *HostApplier) WriteCNIConfig(conf []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.writeCNIConfig(conf)
	return err
}

func (a *HostApplier) writeCNIConfig(conf []byte) (changed bool, err error) {
	path := a.ConfPath()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, conf) {
		return false, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(a.confDir, 0o755); err != nil {
		return false, err
	}
	// The temporary name ends neither in .conf, .conflist nor .json, so the runtime's config
	// loader never picks it up half-written.
	f, err := os.CreateTemp(a.confDir, "."+ConfFileName+".tmp-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if _, err := f.Write(conf); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	if d, err := os.Open(a.confDir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	a.logger.Info("CNI config written", "path", path, "bytes", len(conf))
	return true, nil
}

// SyncRoutes makes the IPv4 main-table routes of RouteProtocol exactly desired: routes of that
// protocol that are not desired are deleted, missing or changed ones are replaced (a replace also
// takes over a same-destination route someone added by hand). Routes of other protocols are never
// deleted. It carries on past a failing route and returns all the errors.
func (a *HostApplier) SyncRoutes(desired []Route) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range desired {
		if !r.Dst.Addr().Is4() || !r.Gateway.Is4() {
			return fmt.Errorf("route %s: only IPv4 routes are supported", r)
		}
	}
	present, err := listOwnRoutes()
	if err != nil {
		return err
	}
	current := make([]Route, 0, len(present))
	byRoute := make(map[Route]netlink.Route, len(present))
	was := make(map[netip.Prefix]netip.Addr, len(present))
	for _, nr := range present {
		r, ok := fromNetlink(nr)
		if !ok {
			continue
		}
		current = append(current, r)
		byRoute[r] = nr
		was[r.Dst] = r.Gateway
	}
	add, del := DiffRoutes(current, desired)

	var errs []error
	for _, r := range del {
		nr := byRoute[r]
		if err := netlink.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r, err))
			continue
		}
		a.logger.Info(fmt.Sprintf("route %s removed", r))
	}
	for _, r := range add {
		if err := netlink.RouteReplace(toNetlink(r)); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r, err))
			continue
		}
		if old, ok := was[r.Dst]; ok {
			a.logger.Info(fmt.Sprintf("route %s replaced (was via %s)", r, old))
		} else {
			a.logger.Info(fmt.Sprintf("route %s added", r))
		}
	}
	return errors.Join(errs...)
}

// listOwnRoutes lists the IPv4 main-table routes of RouteProtocol, retrying a dump the kernel
// interrupted (the table changed meanwhile).
func listOwnRoutes() ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	var err error
	for range 5 {
		var rs []netlink.Route
		rs, err = netlink.RouteListFiltered(netlink.FAMILY_V4, filter,
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err == nil {
			return rs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("listing routes: %w", err)
}

func fromNetlink(nr netlink.Route) (Route, bool) {
	if nr.Dst == nil || nr.Gw == nil {
		return Route{}, false
	}
	ip, ok := netip.AddrFromSlice(nr.Dst.IP)
	if !ok {
		return Route{}, false
	}
	ones, _ := nr.Dst.Mask.Size()
	gw, ok := netip.AddrFromSlice(nr.Gw)
	if !ok {
		return Route{}, false
	}
	return Route{Dst: netip.PrefixFrom(ip.Unmap(), ones), Gateway: gw.Unmap()}, true
}

func toNetlink(r Route) *netlink.Route {
	return &netlink.Route{
		Dst: &net.IPNet{
			IP:   net.IP(r.Dst.Addr().AsSlice()),
			Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen()),
		},
		Gw:       net.IP(r.Gateway.AsSlice()),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
		Scope:    netlink.SCOPE_UNIVERSE,
	}
}

// postroutingJump is the rule in nat POSTROUTING that sends traffic to MasqueradeChain.
var postroutingJump = []string{"-m", "comment", "--comment", "kubeforge pod masquerade", "-j", MasqueradeChain}

// EnsureMasquerade makes nat's MasqueradeChain hold exactly
//
//	-s clusterCIDR -d clusterCIDR -j RETURN
//	-s clusterCIDR ! -d clusterCIDR -j MASQUERADE --random-fully
//
// (replacing the chain's content atomically with iptables-restore when it differs) and makes
// POSTROUTING jump to it.
func (a *HostApplier) EnsureMasquerade(clusterCIDR string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.ensureMasquerade(clusterCIDR)
	return err
}

// masqueradeRules are the chain's rules as iptables-save prints them.
func (a *HostApplier) masqueradeRules(cidr string) []string {
	// --random-fully (iptables 1.6.2+, every node image's) avoids SNAT port collisions.
	masq := "-A " + MasqueradeChain + " -s " + cidr + " ! -d " + cidr + " -j MASQUERADE --random-fully"
	return []string{
		"-A " + MasqueradeChain + " -s " + cidr + " -d " + cidr + " -j RETURN",
		masq,
	}
}

func (a *HostApplier) ensureMasquerade(clusterCIDR string) (changed bool, err error) {
	p, err := netip.ParsePrefix(clusterCIDR)
	if err != nil || !p.Addr().Is4() {
		return false, fmt.Errorf("cluster CIDR %q is not an IPv4 prefix", clusterCIDR)
	}
	cidr := p.Masked().String()
	want := a.masqueradeRules(cidr)

	var buf bytes.Buffer
	if err := a.ipt.SaveInto(utiliptables.TableNAT, &buf); err != nil {
		return false, fmt.Errorf("iptables-save -t nat: %w", err)
	}
	var have []string
	chainExists := false
	for _, line := range strings.Split(buf.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, ":"+MasqueradeChain+" ") {
			chainExists = true
		}
		if strings.HasPrefix(line, "-A "+MasqueradeChain+" ") {
			have = append(have, line)
		}
	}
	if !chainExists || !equalStrings(have, want) {
		// With --noflush, declaring the chain empties it; the rules follow in the same transaction.
		data := "*nat\n:" + MasqueradeChain + " - [0:0]\n" + strings.Join(want, "\n") + "\nCOMMIT\n"
		if err := a.ipt.Restore(utiliptables.TableNAT, []byte(data), utiliptables.NoFlushTables, utiliptables.NoRestoreCounters); err != nil {
			return false, fmt.Errorf("installing %s rules: %w", MasqueradeChain, err)
		}
		a.logger.Info(fmt.Sprintf("masquerade rules for %s installed in nat chain %s", cidr, MasqueradeChain),
			"previousRules", len(have))
		changed = true
	}
	existed, err := a.ipt.EnsureRule(utiliptables.Append, utiliptables.TableNAT, utiliptables.ChainPostrouting, postroutingJump...)
	if err != nil {
		return changed, fmt.Errorf("jump from POSTROUTING to %s: %w", MasqueradeChain, err)
	}
	if !existed {
		a.logger.Info(fmt.Sprintf("jump from nat POSTROUTING to %s added", MasqueradeChain))
		changed = true
	}
	return changed, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
