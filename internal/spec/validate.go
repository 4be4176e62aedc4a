package spec

import (
	"kubeforge.dev/kubeforge/internal/versions"

	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// FieldError is a bad value in one field of the spec. Path names the field as the config file
// does (nodes[1].role, podSubnet, extraArgs.kubelet.max-pods), so that a file's errors point at
// the line to fix.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

func fieldErr(path, format string, a ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)}
}

// Sizes of the subnets kubeforge accepts (prefix lengths, IPv4).
const (
	// A node's pod range is a /24 (controlplane.NodeCIDRMaskSize) and a cluster has up to
	// MaxNodes (20) nodes: a /19 holds 32 of them. The controller-manager refuses more than 2^16
	// node ranges, so /8 is the largest.
	MinPodSubnetBits, MaxPodSubnetBits = 8, 19
	// The API server refuses a service range larger than a /12; kube-dns takes the 10th address,
	// so a /28 (16 addresses) is the smallest.
	MinServiceSubnetBits, MaxServiceSubnetBits = 12, 28
)

// ReservedNodePaths are the paths of a node's machine that hold kubeforge's own files, the
// system or Docker's: a mount may not be at, inside or above one of them.
var ReservedNodePaths = []string{
	"/bin", "/sbin", "/lib", "/lib64", "/usr", "/boot", "/proc", "/sys", "/dev", "/run", "/tmp",
	"/etc/kubernetes", "/etc/kubeforge", "/etc/containerd", "/etc/cni",
	"/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/etcd", "/var/lib/kubeforge", "/var/lib/cni",
	"/var/log", "/kubeforge",
}

// Validate checks the whole spec. Its errors are *FieldError when one field is at fault.
func (c Cluster) Validate() error {
	if err := ValidateName(c.Name); err != nil {
		return &FieldError{Path: "name", Msg: err.Error()}
	}
	switch c.Driver {
	case DriverDocker:
		if c.LibvirtURI != "" || c.Accel != "" {
			return fieldErr("driver", "--libvirt-uri and --accel are for VM nodes: add --driver %s", DriverKVM)
		}
	case DriverKVM:
		if c.Accel != "" && c.Accel != AccelKVM && c.Accel != AccelTCG {
			return fieldErr("accel", "%q is not one of kvm (hardware virtualization) or tcg (software emulation, slow)", c.Accel)
		}
		if len(c.Ports) > 0 {
			return fieldErr("ports", "--port is not supported by the %s driver: the host reaches NodePorts at the node's address (`kubeforge status` shows it)", DriverKVM)
		}
		for i, n := range c.Nodes {
			if len(n.Mounts) > 0 {
				return fieldErr(fmt.Sprintf("nodes[%d].mounts", i), "host mounts are not supported by the %s driver (VMs do not share the host's files)", DriverKVM)
			}
		}
	default:
		return fieldErr("driver", "%q is not supported; use --driver %s (containers) or --driver %s (VMs through libvirt)", c.Driver, DriverDocker, DriverKVM)
	}
	if _, err := versions.Resolve(c.KubernetesVersion); err != nil || !strings.HasPrefix(c.KubernetesVersion, "v") || strings.Count(c.KubernetesVersion, ".") != 2 {
		return fieldErr("kubernetesVersion", "%q is not supported: use one of %s (or a minor such as %s)",
			c.KubernetesVersion, strings.Join(versions.Names(), ", "), versions.Default().Minor())
	}
	checks := []func() error{
		c.validateNodes,
		c.validateDurations,
		c.validatePorts,
		c.validateSubnets,
		c.validateExtraArgs,
		c.validateFeatureGates,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c Cluster) validateNodes() error {
	if len(c.Nodes) == 0 {
		return fieldErr("nodes", "cluster %q has no nodes: a cluster needs at least one control-plane node", c.Name)
	}
	if c.Nodes[0].Role != RoleControlPlane {
		return fieldErr("nodes[0].role", "the first node must be %s, got %q", RoleControlPlane, c.Nodes[0].Role)
	}
	if len(c.Nodes) > MaxNodes {
		return fieldErr("nodes", "%d nodes is more than kubeforge supports (%d): each node is a full kubelet and container runtime; use fewer nodes", len(c.Nodes), MaxNodes)
	}
	if n := c.ControlPlanes(); n > MaxControlPlanes {
		return fieldErr("nodes", "%d control-plane nodes is more than kubeforge supports (%d etcd members)", n, MaxControlPlanes)
	}
	names := map[string]bool{}
	for i, n := range c.Nodes {
		p := fmt.Sprintf("nodes[%d]", i)
		if n.Role != RoleControlPlane && n.Role != RoleWorker {
			return fieldErr(p+".role", "%q is not one of %s, %s", n.Role, RoleControlPlane, RoleWorker)
		}
		if _, err := ParseCPUs(n.CPUs); err != nil {
			return &FieldError{Path: p + ".cpus", Msg: err.Error()}
		}
		if _, err := ParseMemory(n.Memory); err != nil {
			return &FieldError{Path: p + ".memory", Msg: err.Error()}
		}
		if names[n.Name] {
			return fieldErr(p, "the name %q is used twice", n.Name)
		}
		names[n.Name] = true
		if err := validateMounts(p+".mounts", n.Mounts); err != nil {
			return err
		}
	}
	return nil
}

func validateMounts(p string, ms []Mount) error {
	targets := map[string]int{}
	for i, m := range ms {
		mp := fmt.Sprintf("%s[%d]", p, i)
		if err := validateHostPath(mp+".hostPath", m.HostPath); err != nil {
			return err
		}
		if err := validateContainerPath(mp+".containerPath", m.ContainerPath); err != nil {
			return err
		}
		if j, ok := targets[m.ContainerPath]; ok {
			return fieldErr(mp+".containerPath", "%s is already mounted by %s[%d]", m.ContainerPath, p, j)
		}
		targets[m.ContainerPath] = i
	}
	return nil
}

func validateHostPath(p, hostPath string) error {
	if hostPath == "" {
		return fieldErr(p, "missing: name the host directory or file to mount (an absolute path)")
	}
	if !filepath.IsAbs(hostPath) {
		return fieldErr(p, "%q is not an absolute path: write it in full, e.g. /home/me/data", hostPath)
	}
	if _, err := os.Stat(hostPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fieldErr(p, "%s does not exist on the host: create it first (mkdir -p %s)", hostPath, hostPath)
		}
		return fieldErr(p, "%s cannot be used: %v", hostPath, err)
	}
	return nil
}

func validateContainerPath(p, target string) error {
	switch {
	case target == "":
		return fieldErr(p, "missing: name where the mount appears in the node (an absolute path, e.g. /data)")
	case !path.IsAbs(target):
		return fieldErr(p, "%q is not an absolute path (e.g. /data)", target)
	case path.Clean(target) != target:
		return fieldErr(p, "%q is not a clean path: write %s", target, path.Clean(target))
	}
	for _, r := range ReservedNodePaths {
		if target == r || strings.HasPrefix(target, r+"/") || target == "/" || strings.HasPrefix(r, target+"/") {
			return fieldErr(p, "%s would hide the node's own %s: mount somewhere else, e.g. under /mnt, /srv or /data", target, r)
		}
	}
	return nil
}

func (c Cluster) validateDurations() error {
	if c.Wait < 0 {
		return fieldErr("wait", "%s is negative: use a positive duration such as 5m", c.Wait)
	}
	if c.PodEvictionTimeout != 0 && (c.PodEvictionTimeout < MinPodEvictionTimeout || c.PodEvictionTimeout > time.Hour) {
		return fieldErr("podEvictionTimeout", "%s: use between %s and 1h, or 0 for upstream's default (the node controller needs %s to tell a stopped node from a slow one)",
			c.PodEvictionTimeout, MinPodEvictionTimeout, MinPodEvictionTimeout)
	}
	return nil
}

func (c Cluster) validatePorts() error {
	if c.APIServerPort < 0 || c.APIServerPort > 65535 {
		return fieldErr("apiServerPort", "%d is not a port (1-65535, or 0 to pick a free one)", c.APIServerPort)
	}
	if c.Ingress != nil {
		for _, f := range []struct {
			name string
			port int
		}{{"ingress.httpPort", c.Ingress.HTTP}, {"ingress.httpsPort", c.Ingress.HTTPS}} {
			if f.port < 0 || f.port > 65535 {
				return fieldErr(f.name, "%d is not a port (1-65535, or 0 for the default)", f.port)
			}
		}
		if http, https := c.Ingress.Ports(); http == https {
			return fieldErr("ingress", "HTTP and HTTPS both on port %d: give them different ports", http)
		}
	}
	hostPorts := map[int]int{}
	for i, pm := range c.Ports {
		p := fmt.Sprintf("ports[%d]", i)
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return fieldErr(p+".hostPort", "%d is not a port: the host port must be between 1 and 65535", pm.HostPort)
		}
		if pm.NodePort < NodePortMin || pm.NodePort > NodePortMax {
			return fieldErr(p+".nodePort", "%d is not in the NodePort range %d-%d", pm.NodePort, NodePortMin, NodePortMax)
		}
		if j, ok := hostPorts[pm.HostPort]; ok {
			return fieldErr(p+".hostPort", "port %d is published twice (also ports[%d])", pm.HostPort, j)
		}
		if pm.HostPort == c.APIServerPort {
			return fieldErr(p+".hostPort", "port %d is the API server's (apiServerPort)", pm.HostPort)
		}
		hostPorts[pm.HostPort] = i
	}
	return nil
}

// reservedRanges are IPv4 ranges no pod or Service address may come from.
var reservedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\""},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

func (c Cluster) validateSubnets() error {
	pod, err := parseSubnet("podSubnet", c.PodSubnet, "10.244.0.0/16", MinPodSubnetBits, MaxPodSubnetBits,
		fmt.Sprintf("each node gets a /24 of it and a cluster has up to %d nodes", MaxNodes))
	if err != nil {
		return err
	}
	svc, err := parseSubnet("serviceSubnet", c.ServiceSubnet, "10.96.0.0/16", MinServiceSubnetBits, MaxServiceSubnetBits,
		"the API server takes at most a /12, and kube-dns gets its 10th address")
	if err != nil {
		return err
	}
	if pod.Overlaps(svc) {
		return fieldErr("serviceSubnet", "%s overlaps podSubnet %s: pod and Service addresses must be distinct (e.g. 10.244.0.0/16 and 10.96.0.0/16)", svc, pod)
	}
	return nil
}

// parseSubnet parses an IPv4 CIDR whose prefix length is between minBits and maxBits (why says
// why) and that overlaps no reserved range.
func parseSubnet(field, s, example string, minBits, maxBits int, why string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fieldErr(field, "%q is not a CIDR (e.g. %s)", s, example)
	}
	if !p.Addr().Is4() {
		return p, fieldErr(field, "%s is not IPv4: kubeforge supports IPv4 pod and Service subnets only (e.g. %s)", s, example)
	}
	if p.Masked() != p {
		return p, fieldErr(field, "%s has bits set after the /%d: write %s", s, p.Bits(), p.Masked())
	}
	if p.Bits() < minBits || p.Bits() > maxBits {
		return p, fieldErr(field, "%s is a /%d: use a /%d to /%d (%s), e.g. %s", s, p.Bits(), minBits, maxBits, why, example)
	}
	for _, r := range reservedRanges {
		if p.Overlaps(r.prefix) {
			return p, fieldErr(field, "%s overlaps the %s range %s: use a private range such as %s", s, r.what, r.prefix, example)
		}
	}
	return p, nil
}

var flagName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func (c Cluster) validateExtraArgs() error {
	for _, comp := range slices.Sorted(maps.Keys(c.ExtraArgs)) {
		p := "extraArgs." + comp
		if !slices.Contains(Components(), comp) {
			return fieldErr(p, "%q is not a component kubeforge passes flags to; use one of %s", comp, strings.Join(Components(), ", "))
		}
		if err := validateArgs(p, c.ExtraArgs[comp]); err != nil {
			return err
		}
	}
	return nil
}

func validateArgs(p string, args map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(args)) {
		fp := p + "." + k
		switch {
		case strings.HasPrefix(k, "-"):
			return fieldErr(fp, "write the flag's name without dashes: %s", strings.TrimLeft(k, "-"))
		case !flagName.MatchString(k):
			return fieldErr(fp, "%q is not a flag name (lower-case letters, digits and '-', e.g. max-pods)", k)
		case k == "feature-gates":
			return fieldErr(fp, "set feature gates in featureGates: kubeforge passes them to every component")
		}
		if i := strings.IndexFunc(args[k], func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
			return fieldErr(fp, "the value %q has a control character", args[k])
		}
	}
	return nil
}

func (c Cluster) validateFeatureGates() error {
	// The table of gates is the linked (default) release's: another release's gates are left to
	// its components to check at start.
	if c.KubernetesVersion != versions.Default().Kubernetes {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(c.FeatureGates)) {
		if err := checkFeatureGate(name, c.FeatureGates[name]); err != nil {
			return err
		}
	}
	return c.checkGateDependencies()
}

// checkGateDependencies fails when an enabled gate needs one that is disabled, as the components
// would at start. (AllAlpha and AllBeta are not expanded.)
func (c Cluster) checkGateDependencies() error {
	enabled := func(name string) bool {
		if on, ok := c.FeatureGates[name]; ok {
			return on
		}
		return knownFeatureGates[name].enabled
	}
	names := make([]string, 0, len(knownFeatureGates))
	for name, g := range knownFeatureGates {
		if len(g.needs) > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if !enabled(name) {
			continue
		}
		for _, dep := range knownFeatureGates[name].needs {
			if enabled(dep) {
				continue
			}
			if _, set := c.FeatureGates[name]; set {
				return fieldErr("featureGates."+name, "needs %s, which is disabled: enable %s too", dep, dep)
			}
			return fieldErr("featureGates."+dep, "%s (enabled) needs it: leave %s enabled, or disable %s too", name, dep, name)
		}
	}
	return nil
}

func checkFeatureGate(name string, on bool) error {
	p := "featureGates." + name
	g, ok := knownFeatureGates[name]
	if !ok {
		msg := fmt.Sprintf("Kubernetes %s has no feature gate %q", versions.Default().Kubernetes, name)
		if s := closestGate(name); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", s)
		}
		return &FieldError{Path: p, Msg: msg}
	}
	if g.locked && on != g.enabled {
		return fieldErr(p, "is locked to %t in Kubernetes %s (the feature is GA or removed): remove it", g.enabled, versions.Default().Kubernetes)
	}
	return nil
}

// closestGate is the known feature gate name nearest to name (the same but for case, or at most
// a few edits away), or "".
func closestGate(name string) string {
	best, bestD := "", 4
	for k := range knownFeatureGates {
		if strings.EqualFold(k, name) {
			return k
		}
		if d := EditDistance(strings.ToLower(k), strings.ToLower(name)); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

// EditDistance is the number of edits (insertions, deletions, substitutions, swaps of adjacent
// bytes) between a and b: the optimal string alignment distance.
func EditDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// featureGate is a known feature gate's default, whether it may be changed, and the gates it
// needs enabled when it is.
type featureGate struct {
	enabled, locked bool
	needs           []string
}
