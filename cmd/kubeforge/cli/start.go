package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision/cluster"
)

func newStart(g *globals) *cobra.Command {
	var (
		name     string
		wait     time.Duration
		image    string
		keep     bool
		apiPort  int
		nodes    int
		cps      int
		eviction time.Duration
		ports    []string
		cpus     string
		memory   string
	)
	c := &cobra.Command{
		Use:   "start",
		Short: "Create a cluster (building the node image if needed) and wait until it is usable",
		Long: `Create a cluster and return when it is usable: node Ready, CoreDNS serving, the default
ServiceAccount present. A context named after the cluster is merged into $KUBECONFIG (or
~/.kube/config) and made current. On failure everything created is removed, unless
--keep-on-failure. Starting a cluster that is already running changes nothing.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := clusterName(name); err != nil {
				return err
			}
			if wait <= 0 {
				return kferr.Usage("--wait must be a positive duration such as 5m, got %s", wait)
			}
			if apiPort < 0 || apiPort > 65535 {
				return kferr.Usage("--api-port must be between 1 and 65535 (0 picks a free port), got %d", apiPort)
			}
			if nodes < 1 || nodes > spec.MaxNodes {
				return kferr.Usage("--nodes must be between 1 and %d (one control plane, the rest workers), got %d", spec.MaxNodes, nodes)
			}
			if cps < 1 || cps > spec.MaxControlPlanes {
				return kferr.Usage("--control-planes must be between 1 and %d, got %d", spec.MaxControlPlanes, cps)
			}
			if !cmd.Flags().Changed("nodes") && cps > nodes {
				nodes = cps
			}
			if cps > nodes {
				return kferr.Usage("--control-planes %d is more than --nodes %d: --nodes counts every node, control planes included", cps, nodes)
			}
			if cps == 2 || cps == 4 || cps == 6 {
				g.log().Warnf("%d control planes: etcd keeps a quorum only with a majority, so %d tolerate no more failures than %d; an odd number is better", cps, cps, cps-1)
			}
			if eviction != 0 && (eviction < spec.MinPodEvictionTimeout || eviction > time.Hour) {
				return kferr.Usage("--pod-eviction-timeout must be between %s and 1h (or 0 for upstream's default), got %s", spec.MinPodEvictionTimeout, eviction)
			}
			c := spec.Default(name).WithNodes(nodes, cps)
			c.Wait, c.Image, c.APIServerPort, c.PodEvictionTimeout = wait, image, apiPort, eviction
			for i := range c.Nodes {
				c.Nodes[i].CPUs, c.Nodes[i].Memory = cpus, memory
			}
			for _, p := range ports {
				pm, err := parsePortMapping(p)
				if err != nil {
					return err
				}
				c.Ports = append(c.Ports, pm)
			}
			if err := c.Validate(); err != nil {
				return kferr.Usage("%v", err)
			}
			e, err := g.env(cmd.Context())
			if err != nil {
				return err
			}
			defer e.close()
			start := time.Now()
			res, err := e.provider.Create(cmd.Context(), c, cluster.CreateOptions{KeepOnFailure: keep})
			if err != nil {
				return err
			}
			out := g.streams.Out
			if res.AlreadyRunning {
				fmt.Fprintf(out, "Cluster %q is already running (API server %s); nothing changed.\n", name, res.APIServer)
				return nil
			}
			if res.Resumed {
				fmt.Fprintf(out, "Cluster %q was stopped; it is running again in %.1fs: API server %s, context %q in %s.\n",
					name, time.Since(start).Seconds(), res.APIServer, res.Context, res.Kubeconfig)
				return nil
			}
			fmt.Fprintf(out, "Cluster %q is ready in %.1fs: API server %s, context %q in %s.\n",
				name, time.Since(start).Seconds(), res.APIServer, res.Context, res.Kubeconfig)
			fmt.Fprintf(out, "Try: kubectl get pods -A   (or: kubeforge kubectl -- get pods -A)\n")
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", spec.DefaultName, "cluster name (a DNS label); nodes are named after it")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for the cluster to become usable before failing")
	f.StringVar(&image, "image", "", "node image to use (default: built from this kubeforge's binaries)")
	f.BoolVar(&keep, "keep-on-failure", false, "keep what a failed start created, for debugging")
	f.IntVar(&apiPort, "api-port", 0, "host port for the API server on 127.0.0.1 (default: a free port)")
	f.IntVar(&nodes, "nodes", 1, "number of nodes, control planes included; the others are workers (<cluster>-m02, -m03...)")
	f.IntVar(&cps, "control-planes", 1, "number of control-plane nodes; more than one makes an HA control plane (stacked etcd, a load balancer in front of the API servers)")
	f.DurationVar(&eviction, "pod-eviction-timeout", 0, "how long after a node stops answering its pods are evicted and recreated elsewhere, e.g. 30s for a workshop (default: upstream's, about 6m)")
	f.StringVar(&cpus, "cpus", "", "cap every node's CPUs (e.g. 2 or 1500m); each Node reports that much allocatable (default: the host's, uncapped)")
	f.StringVar(&memory, "memory", "", "cap every node's memory (e.g. 2Gi); each Node reports that much allocatable (default: the host's, uncapped)")
	f.StringArrayVar(&ports, "port", nil, "publish a NodePort on the host: HOST:NODEPORT makes 127.0.0.1:HOST reach NODEPORT (repeatable)")
	return c
}

// parsePortMapping parses HOST:NODEPORT.
func parsePortMapping(s string) (spec.PortMapping, error) {
	h, n, ok := strings.Cut(s, ":")
	hp, err1 := strconv.Atoi(h)
	np, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		return spec.PortMapping{}, kferr.Usage("--port %q: use HOST:NODEPORT, e.g. --port 8080:30080", s)
	}
	return spec.PortMapping{HostPort: hp, NodePort: np}, nil
}
