package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"kubeforge.dev/kubeforge/cluster"
	"kubeforge.dev/kubeforge/internal/config"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

// startFlags are the flags of `kubeforge start`.
type startFlags struct {
	config   string
	name     string
	version  string
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
	driver   string
	uri      string
	accel    string
	addons   []string
	registry bool
	ingress  string
}

func newStart(g *globals) *cobra.Command {
	var o startFlags
	c := &cobra.Command{
		Use:   "start",
		Short: "Create a cluster (building the node image if needed) and wait until it is usable",
		Long: `Create a cluster and return when it is usable: node Ready, CoreDNS serving, the default
ServiceAccount present. A context named after the cluster is merged into $KUBECONFIG (or
~/.kube/config) and made current. On failure everything created is removed, unless
--keep-on-failure. Starting a cluster that is already running changes nothing.

--config FILE describes the cluster in a file (nodes and their sizes and mounts, component flags,
feature gates, subnets...): ` + "`kubeforge config example`" + ` prints one. Flags given on the
command line override the file.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.spec(cmd.Flags(), g.streams.In)
			if err != nil {
				return err
			}
			// Real users may sit behind a proxy: the nodes' runtime pulls through it.
			c.Proxy = spec.ProxyFromEnv(os.Getenv)
			if n := c.ControlPlanes(); n%2 == 0 {
				g.log().Warnf("%d control planes: etcd keeps a quorum only with a majority, so %d tolerate no more failures than %d; an odd number is better", n, n, n-1)
			}
			if c.Emulated() {
				g.log().Warnf("--accel tcg: the VMs run under software emulation, many times slower than with KVM (minutes to start)")
			}
			start := time.Now()
			var res cluster.CreateResult
			err = g.withProvider(func(p *cluster.Provider) error {
				res, err = p.Create(cmd.Context(), c, cluster.CreateOptions{KeepOnFailure: o.keep,
					DriverGiven: cmd.Flags().Changed("driver"), WaitGiven: cmd.Flags().Changed("wait")})
				return err
			})
			if err != nil {
				return err
			}
			out := g.streams.Out
			if (res.AlreadyRunning || res.Resumed) && o.config != "" {
				g.log().Warnf("cluster %q already exists: %s applies only when a cluster is created (`kubeforge delete --name %s` first to make it anew)", c.Name, o.config, c.Name)
			}
			if res.AlreadyRunning {
				did := "nothing changed"
				if len(res.Changed) > 0 {
					did = strings.Join(res.Changed, "; ")
				}
				fmt.Fprintf(out, "Cluster %q is already running (API server %s); %s.\n", c.Name, res.APIServer, did)
				return nil
			}
			if res.Resumed {
				fmt.Fprintf(out, "Cluster %q was stopped; it is running again in %.1fs: API server %s, context %q in %s.\n",
					c.Name, time.Since(start).Seconds(), res.APIServer, res.Context, res.Kubeconfig)
				return nil
			}
			fmt.Fprintf(out, "Cluster %q is ready in %.1fs: API server %s, context %q in %s.\n",
				c.Name, time.Since(start).Seconds(), res.APIServer, res.Context, res.Kubeconfig)
			if slices.Contains(c.Addons, cluster.IngressAddon) {
				if err := g.onCluster(cmd, c.Name, func(cl *cluster.Cluster) error {
					printIngress(cmd.Context(), g, cl)
					return nil
				}); err != nil {
					g.log().Warnf("where the ingress answers: %v", err)
				}
			}
			fmt.Fprintf(out, "Try: kubectl get pods -A   (or: kubeforge kubectl -- get pods -A)\n")
			return nil
		},
	}
	o.register(c.Flags())
	return c
}

// register defines the flags on f.
func (o *startFlags) register(f *pflag.FlagSet) {
	f.StringVar(&o.config, "config", "", "cluster `FILE` to start from ('kubeforge config example' prints one; - reads stdin); the flags given override it")
	f.StringVar(&o.name, "name", spec.DefaultName, "cluster name (a DNS label); nodes are named after it")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the cluster to become usable; past it the start fails and removes what it made (unless --keep-on-failure). --timeout is the same flag. 30m by default with --accel tcg")
	// --timeout, as CI scripts often spell it, is --wait under another name.
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "timeout" {
			name = "wait"
		}
		return pflag.NormalizedName(name)
	})
	f.StringVar(&o.version, "kubernetes-version", versions.Default().Minor(), "Kubernetes version: one of "+strings.Join(versions.Names(), ", ")+", or a minor such as "+versions.Default().Minor()+" (its newest supported patch)")
	f.StringVar(&o.image, "image", "", "node image to use (default: built from this kubeforge's binaries)")
	f.BoolVar(&o.keep, "keep-on-failure", false, "keep what a failed start created, for debugging")
	f.IntVar(&o.apiPort, "api-port", 0, "host port for the API server on 127.0.0.1 (default: a free port)")
	f.IntVar(&o.nodes, "nodes", 1, "number of nodes, control planes included; the others are workers (<cluster>-m02, -m03...)")
	f.IntVar(&o.cps, "control-planes", 1, "number of control-plane nodes; more than one makes an HA control plane (stacked etcd, a load balancer in front of the API servers)")
	f.DurationVar(&o.eviction, "pod-eviction-timeout", 0, "how long after a node stops answering its pods are evicted and recreated elsewhere, e.g. 30s for a workshop (default: upstream's, about 6m)")
	f.StringVar(&o.cpus, "cpus", "", "cap every node's CPUs (e.g. 2 or 1500m); each Node reports that much allocatable (default: the host's, uncapped)")
	f.StringVar(&o.memory, "memory", "", "cap every node's memory (e.g. 2Gi); each Node reports that much allocatable (default: the host's, uncapped)")
	f.StringVar(&o.driver, "driver", spec.DriverDocker, "what the nodes are: docker (containers) or kvm (VMs through libvirt)")
	f.StringVar(&o.uri, "libvirt-uri", "", "libvirt daemon for --driver kvm: qemu:///system (default) or qemu+ssh://USER@HOST/system for a remote hypervisor")
	f.StringVar(&o.accel, "accel", "", "VM acceleration for --driver kvm: kvm (default; needs /dev/kvm) or tcg (qemu's software emulation: works anywhere, slowly)")
	f.StringSliceVar(&o.addons, "addons", nil, "optional cluster services to enable, comma-separated: "+strings.Join(cluster.AddonNames(), ", ")+" (`kubeforge addons list`); added to the config file's")
	f.StringVar(&o.ingress, "ingress-ports", "80,443", ingressPortsUsage)
	f.BoolVar(&o.registry, "registry", false, "wire the cluster to the local registry (Docker only), making it when missing: pods pull localhost:5001/NAME:TAG after `docker push localhost:5001/NAME:TAG` (`kubeforge registry --help`)")
	f.StringArrayVar(&o.ports, "port", nil, "publish a NodePort on the host: HOST:NODEPORT makes 127.0.0.1:HOST reach NODEPORT (repeatable)")
}

// spec is the cluster to start: the defaults, or the config file's settings, then the flags the
// user set, validated. stdin is read for --config -.
func (o startFlags) spec(flags *pflag.FlagSet, stdin io.Reader) (spec.Cluster, error) {
	if err := o.check(flags); err != nil {
		return spec.Cluster{}, err
	}
	c := spec.Default(o.name)
	var file *config.File
	if o.config != "" {
		f, err := config.Load(o.config, stdin)
		if err != nil {
			return c, kferr.Usage("%v", err)
		}
		c = spec.Default("")
		if err := f.Apply(&c); err != nil {
			return c, kferr.Usage("%v", err)
		}
		file = f
	}
	c, err := o.override(flags, c, file)
	if err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		if file != nil {
			return c, kferr.Usage("%v", file.Explain(err, setByFlag(flags)))
		}
		return c, kferr.Usage("%v", err)
	}
	return c, nil
}

// check checks the flags' own values.
func (o startFlags) check(flags *pflag.FlagSet) error {
	if _, err := clusterName(o.name); err != nil {
		return err
	}
	if o.wait <= 0 {
		return kferr.Usage("--wait must be a positive duration such as 5m, got %s", o.wait)
	}
	if o.apiPort < 0 || o.apiPort > 65535 {
		return kferr.Usage("--api-port must be between 1 and 65535 (0 picks a free port), got %d", o.apiPort)
	}
	if o.nodes < 1 || o.nodes > spec.MaxNodes {
		return kferr.Usage("--nodes must be between 1 and %d (one control plane, the rest workers), got %d", spec.MaxNodes, o.nodes)
	}
	if o.cps < 1 || o.cps > spec.MaxControlPlanes {
		return kferr.Usage("--control-planes must be between 1 and %d, got %d", spec.MaxControlPlanes, o.cps)
	}
	if o.eviction != 0 && (o.eviction < spec.MinPodEvictionTimeout || o.eviction > time.Hour) {
		return kferr.Usage("--pod-eviction-timeout must be between %s and 1h (or 0 for upstream's default), got %s", spec.MinPodEvictionTimeout, o.eviction)
	}
	for _, p := range o.ports {
		if _, err := parsePortMapping(p); err != nil {
			return err
		}
	}
	if err := cluster.ValidateAddons(o.addons); err != nil {
		return kferr.Usage("--addons: %v", err)
	}
	return nil
}

// override applies the flags the user set to c (the defaults' or the file's spec). The node list
// is the flags' (--nodes, --control-planes) unless the file lists nodes, which the flags may not
// change.
func (o startFlags) override(flags *pflag.FlagSet, c spec.Cluster, file *config.File) (spec.Cluster, error) {
	set := flags.Changed
	if set("name") {
		c = c.WithName(o.name)
	}
	if set("kubernetes-version") {
		r, err := versions.Resolve(o.version)
		if err != nil {
			return c, kferr.Usage("--kubernetes-version: %v", err)
		}
		c.KubernetesVersion = r.Kubernetes
	}
	for _, f := range []struct {
		flag  string
		apply func()
	}{
		{"wait", func() { c.Wait = o.wait }},
		{"image", func() { c.Image = o.image }},
		{"api-port", func() { c.APIServerPort = o.apiPort }},
		{"pod-eviction-timeout", func() { c.PodEvictionTimeout = o.eviction }},
		{"driver", func() { c.Driver = o.driver }},
		{"libvirt-uri", func() { c.LibvirtURI = o.uri }},
		{"accel", func() { c.Accel = o.accel }},
	} {
		if set(f.flag) {
			f.apply()
		}
	}
	if c.Emulated() && !set("wait") && (file == nil || !file.Cluster.Wait.IsSet()) {
		c.Wait = spec.EmulatedWait
	}
	fileNodes := file != nil && len(file.Cluster.Nodes) > 0
	if fileNodes && (set("nodes") || set("control-planes")) {
		return c, kferr.Usage("--nodes and --control-planes cannot change the nodes %s lists: edit its nodes, or leave the flags out", file.Name)
	}
	if !fileNodes {
		nodes := o.nodes
		if !set("nodes") && o.cps > nodes {
			nodes = o.cps
		}
		if o.cps > nodes {
			return c, kferr.Usage("--control-planes %d is more than --nodes %d: --nodes counts every node, control planes included", o.cps, nodes)
		}
		if file == nil || set("nodes") || set("control-planes") {
			c = c.WithNodes(nodes, o.cps)
		}
	}
	for i := range c.Nodes {
		if set("cpus") {
			c.Nodes[i].CPUs = o.cpus
		}
		if set("memory") {
			c.Nodes[i].Memory = o.memory
		}
	}
	if set("registry") {
		c.Registry = o.registry
	}
	if set("ingress-ports") {
		p, err := parseIngressPorts(o.ingress)
		if err != nil {
			return c, err
		}
		c.Ingress = p
	}
	for _, a := range o.addons {
		if !slices.Contains(c.Addons, a) {
			c.Addons = append(c.Addons, a)
		}
	}
	if set("port") {
		c.Ports = nil
		for _, p := range o.ports {
			pm, err := parsePortMapping(p)
			if err != nil {
				return c, err
			}
			c.Ports = append(c.Ports, pm)
		}
	}
	return c, nil
}

// setByFlag says which spec fields (validation error paths) the flags the user set override, so
// that their errors are not blamed on the config file.
func setByFlag(flags *pflag.FlagSet) func(path string) bool {
	fields := map[string]string{
		"name": "name", "kubernetes-version": "kubernetesVersion", "wait": "wait", "image": "image", "api-port": "apiServerPort",
		"pod-eviction-timeout": "podEvictionTimeout", "port": "ports", "registry": "registry", "ingress-ports": "ingress", "driver": "driver", "libvirt-uri": "driver", "accel": "accel", "nodes": "nodes", "control-planes": "nodes",
	}
	return func(path string) bool {
		top := path[:strings.IndexAny(path+".", ".[")]
		for flag, field := range fields {
			if flags.Changed(flag) && top == field {
				return true
			}
		}
		return top == "nodes" && (flags.Changed("cpus") && strings.HasSuffix(path, ".cpus") ||
			flags.Changed("memory") && strings.HasSuffix(path, ".memory"))
	}
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
