package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/provision"
)

// Network adds address helpers to provision.Network: docker.Network(n).NodeIP(i).
type Network provision.Network

// NodeIP returns the address of the i-th node (see provision.Network.NodeIP).
func (n Network) NodeIP(i int) netip.Addr { return provision.Network(n).NodeIP(i) }

// NetworkName is the Docker network of a cluster.
func NetworkName(cluster string) string { return "kubeforge-" + cluster }

// The subnet choice is shared by the drivers (provision/subnet.go).
var (
	SubnetCandidates = provision.SubnetCandidates
	ChooseSubnet     = provision.ChooseSubnet
	hostPrefixes     = provision.HostPrefixes
	parseRoutes      = provision.ParseRoutes
)

// findNetwork returns the network named name, or ok false.
func (d *Driver) findNetwork(ctx context.Context, name string) (network.Summary, bool, error) {
	nets, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return network.Summary{}, false, fmt.Errorf("list docker networks: %w", err)
	}
	// The name filter matches substrings; several networks may share a name on old daemons.
	sort.Slice(nets, func(i, j int) bool {
		if !nets[i].Created.Equal(nets[j].Created) {
			return nets[i].Created.Before(nets[j].Created)
		}
		return nets[i].ID < nets[j].ID
	})
	for _, n := range nets {
		if n.Name == name {
			return n, true, nil
		}
	}
	return network.Summary{}, false, nil
}

// toNetwork converts a Docker network of a cluster.
func toNetwork(n network.Summary) (provision.Network, error) {
	for _, c := range n.IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		out := provision.Network{Name: n.Name, Subnet: p.Masked()}
		if gw, err := netip.ParseAddr(c.Gateway); err == nil {
			out.Gateway = gw
		} else {
			out.Gateway = p.Masked().Addr().Next()
		}
		return out, nil
	}
	return provision.Network{}, fmt.Errorf("docker network %s has no IPv4 subnet", n.Name)
}

// takenPrefixes returns what a new network must not overlap: the subnets of every Docker network
// and the host's addresses and routes.
func (d *Driver) takenPrefixes(ctx context.Context) ([]netip.Prefix, map[string]string, error) {
	nets, err := d.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list docker networks: %w", err)
	}
	var taken []netip.Prefix
	var bridgeOpts map[string]string
	for _, n := range nets {
		if n.Name == "bridge" {
			bridgeOpts = n.Options
		}
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				taken = append(taken, p.Masked())
			}
		}
	}
	host, err := hostPrefixes()
	if err != nil {
		return nil, nil, err
	}
	return append(taken, host...), bridgeOpts, nil
}

// EnsureNetwork returns the cluster's network kubeforge-<cluster>, creating it if needed on the
// first free candidate subnet (see SubnetCandidates), gateway .1.
func (d *Driver) EnsureNetwork(ctx context.Context, cluster string) (provision.Network, error) {
	name := NetworkName(cluster)
	// Docker checks duplicate names and overlapping pools, but not atomically: two creates at
	// once can make two networks of one name. Serialize creates in this process and on this host,
	// and settle on the oldest network if another host's kubeforge raced us anyway.
	networkMu.Lock()
	defer networkMu.Unlock()
	defer hostLock("kubeforge-docker-network.lock")()

	if n, ok, err := d.findNetwork(ctx, name); err != nil {
		return provision.Network{}, err
	} else if ok {
		return existingNetwork(n, cluster)
	}
	taken, bridgeOpts, err := d.takenPrefixes(ctx)
	if err != nil {
		return provision.Network{}, err
	}
	opts := map[string]string{
		"com.docker.network.bridge.enable_ip_masquerade": "true",
		"com.docker.network.bridge.enable_icc":           "true",
	}
	if mtu := bridgeOpts["com.docker.network.driver.mtu"]; mtu != "" {
		opts["com.docker.network.driver.mtu"] = mtu
	}
	for {
		subnet, ok := ChooseSubnet(taken)
		if !ok {
			return provision.Network{}, kferr.Environment(
				"delete unused clusters or Docker networks (docker network prune)",
				"create network %s: every candidate subnet 192.168.49.0/24 ... 192.168.247.0/24 overlaps a Docker network or a host address or route", name)
		}
		gw := subnet.Addr().Next()
		sctx, cancel := settling(ctx) // made or not, never left half-known; the step's undo removes it
		created, err := d.cli.NetworkCreate(sctx, name, network.CreateOptions{
			Driver: "bridge",
			IPAM: &network.IPAM{
				Driver: "default",
				Config: []network.IPAMConfig{{Subnet: subnet.String(), Gateway: gw.String()}},
			},
			Options: opts,
			Labels:  map[string]string{provision.LabelCluster: cluster},
		})
		cancel()
		switch {
		case err == nil:
			return d.settleDuplicates(ctx, cluster, name, created.ID, provision.Network{Name: name, Subnet: subnet, Gateway: gw, Created: true})
		case isPoolOverlap(err):
			// Another network took it since we looked (a concurrent create): try the next.
			taken = append(taken, subnet)
		case cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists"):
			// A concurrent EnsureNetwork of the same cluster won.
			n, ok, ferr := d.findNetwork(ctx, name)
			if ferr != nil {
				return provision.Network{}, ferr
			}
			if !ok {
				return provision.Network{}, fmt.Errorf("create network %s: %w", name, err)
			}
			return existingNetwork(n, cluster)
		default:
			d.removeIfMade(ctx, cluster, name)
			return provision.Network{}, fmt.Errorf("create network %s (subnet %s): %w", name, subnet, err)
		}
	}
}

// removeIfMade removes network name after a create that failed but that Docker may have carried
// out (a cancelled ctx cuts the call short, not the daemon's work). EnsureNetwork found no
// network of that name before it, under the host's network lock (and the caller's cluster lock),
// so one labelled with cluster now is that create's.
func (d *Driver) removeIfMade(ctx context.Context, cluster, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if n, ok, err := d.findNetwork(ctx, name); err == nil && ok && n.Labels[provision.LabelCluster] == cluster {
		if err := d.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			d.log.Warnf("network %s may be left (remove it with `kubeforge delete --name %s`): %v", name, cluster, err)
		}
	}
}

var networkMu sync.Mutex

// settleDuplicates handles a create that raced another one of the same name: the oldest network
// wins and the others are removed by their creators.
func (d *Driver) settleDuplicates(ctx context.Context, cluster, name, ourID string, ours provision.Network) (provision.Network, error) {
	winner, ok, err := d.findNetwork(ctx, name) // the oldest of that name
	if err != nil || !ok || winner.ID == ourID {
		return ours, nil
	}
	if err := d.cli.NetworkRemove(ctx, ourID); err != nil && !cerrdefs.IsNotFound(err) {
		return provision.Network{}, fmt.Errorf("create network %s: remove duplicate %s: %w", name, ourID, err)
	}
	return existingNetwork(winner, cluster)
}

func isPoolOverlap(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "pool overlaps") || strings.Contains(s, "overlapping") ||
		strings.Contains(s, "overlaps with")
}

func existingNetwork(n network.Summary, cluster string) (provision.Network, error) {
	if n.Labels[provision.LabelCluster] != cluster {
		return provision.Network{}, kferr.Environment(
			fmt.Sprintf("remove it (docker network rm %s) or choose another cluster name", n.Name),
			"docker network %s exists but was not made by kubeforge for cluster %s", n.Name, cluster)
	}
	return toNetwork(n)
}

// DeleteNetwork removes the cluster's network; a missing network is not an error. It also removes
// the cluster's volumes that no container uses any more (left by an interrupted create or
// delete), so that deleting the nodes and then the network leaves nothing of the cluster.
func (d *Driver) DeleteNetwork(ctx context.Context, cluster string) error {
	if err := provision.CheckClusterLabel(cluster); err != nil {
		return kferr.Usage("delete network: %v", err)
	}
	name := NetworkName(cluster)
	n, ok, err := d.findNetwork(ctx, name)
	if err != nil {
		return err
	}
	var refused error
	if ok {
		// The label, not the name, says whose it is.
		if owner := n.Labels[provision.LabelCluster]; owner != cluster {
			refused = kferr.Environment(fmt.Sprintf("if you do not need it, remove it yourself: docker network rm %s", name),
				"delete network %s: not made by kubeforge for cluster %s (its %s label is %q); not removing it", name, cluster, provision.LabelCluster, owner)
		} else if err := d.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("delete network %s: %w (delete the cluster's nodes first)", name, err)
		}
	}
	return errors.Join(d.removeOrphanVolumes(ctx, cluster), refused)
}

// removeOrphanVolumes removes the node volumes labelled with cluster that no container uses, but
// for those CreateNode refused to reuse (see existingVolume).
func (d *Driver) removeOrphanVolumes(ctx context.Context, cluster string) error {
	vols, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", provision.LabelCluster+"="+cluster),
		filters.Arg("dangling", "true"))})
	if err != nil {
		return fmt.Errorf("list volumes of cluster %s: %w", cluster, err)
	}
	for _, v := range vols.Volumes {
		// Only a volume as CreateNode makes them: <node>-var, labelled with that node of cluster.
		node := v.Labels[provision.LabelNode]
		if v.Labels[provision.LabelCluster] != cluster || provision.CheckNodeLabel(cluster, node) != nil || v.Name != VolumeName(node) {
			d.log.Debugf("docker: not removing volume %s: its labels (node %q) are not those of a node volume of cluster %s", v.Name, node, cluster)
			continue
		}
		if d.isKept(v.Name) {
			continue
		}
		if err := d.cli.VolumeRemove(ctx, v.Name, false); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("remove volume %s of cluster %s: %w", v.Name, cluster, err)
		}
	}
	return nil
}
