package cluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/cluster/internal/redact"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/provision"
)

// PodComponents are the components that run as pods (static or not) in kube-system, whose logs
// are read from the container runtime; every other component is a node service of the
// supervisor, with a log file in contract.LogDir.
var PodComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns", "storage-provisioner"}

// LogOptions select the log `kubeforge logs` shows.
type LogOptions struct {
	// Node to read from; empty means the first control plane.
	Node string
	// Component: a node service (kubelet, containerd, netctl, node-net, kubeforge-init...) or
	// one of PodComponents; empty means the node's console (every service, interleaved).
	Component string
	Follow    bool
	// Tail limits the output to the last lines; 0 means all.
	Tail int
}

// Logs writes a component's log from a node of the cluster to w.
func (c *Cluster) Logs(ctx context.Context, o LogOptions, w io.Writer) error {
	name := c.name
	nodes, err := c.machines(ctx)
	if err != nil {
		return err
	}
	n, err := pickNode(name, nodes, o.Node)
	if err != nil {
		return err
	}
	switch {
	case o.Component == "":
		return n.Logs(ctx, w, o.Follow)
	case slices.Contains(PodComponents, o.Component):
		id, err := latestContainer(ctx, n, o.Component)
		if err != nil {
			return err
		}
		if id == "" {
			hint := ""
			if slices.Contains(controlPlaneComponents, o.Component) && n.Role() != "control-plane" {
				hint = ": it runs on control-plane nodes (--node)"
			}
			return kferr.Usage("no %s container on node %s%s", o.Component, n.Name(), hint)
		}
		args := []string{"crictl", "logs"}
		if o.Tail > 0 {
			args = append(args, fmt.Sprintf("--tail=%d", o.Tail))
		}
		if o.Follow {
			args = append(args, "--follow")
		}
		return n.Run(ctx, provision.Cmd{Args: append(args, id), Stdout: w, Stderr: w})
	default:
		services, err := serviceLogs(ctx, n)
		if err != nil {
			return err
		}
		if !slices.Contains(services, o.Component) {
			return kferr.Usage("node %s has no component %q; components: %s", n.Name(), o.Component,
				strings.Join(append(services, PodComponents...), ", "))
		}
		tail := "+1"
		if o.Tail > 0 {
			tail = fmt.Sprint(o.Tail)
		}
		args := []string{"tail", "-n", tail}
		if o.Follow {
			args = append(args, "-F")
		}
		return n.Run(ctx, provision.Cmd{Args: append(args, path.Join(contract.LogDir, o.Component+".log")), Stdout: w})
	}
}

// machines returns the machines of a cluster, created completely or not (logs matter most
// after a failed start kept with --keep-on-failure).
func (c *Cluster) machines(ctx context.Context) ([]provision.Node, error) {
	name := c.name
	nodes, err := c.driver.Nodes(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, kferr.Usage("cluster %q has no nodes: `kubeforge list` shows the clusters", name)
	}
	return nodes, nil
}

// pickNode returns the node named node, or the first control plane when node is empty.
func pickNode(cluster string, nodes []provision.Node, node string) (provision.Node, error) {
	var names []string
	for _, n := range nodes {
		if (node == "" && n.Role() == "control-plane") || n.Name() == node {
			return n, nil
		}
		names = append(names, n.Name())
	}
	if node == "" {
		return nodes[0], nil
	}
	return nil, kferr.Usage("%q is not a node of cluster %q; its nodes are: %s", node, cluster, strings.Join(names, ", "))
}

// latestContainer returns the ID of the most recent container called name on n, "" if none.
func latestContainer(ctx context.Context, n provision.Node, name string) (string, error) {
	var out bytes.Buffer
	err := n.Run(ctx, provision.Cmd{Args: []string{"crictl", "ps", "--all", "--quiet", "--latest", "--name", "^" + name + "$"}, Stdout: &out})
	if err != nil {
		return "", fmt.Errorf("listing %s containers on %s: %w", name, n.Name(), err)
	}
	return strings.TrimSpace(out.String()), nil
}

// serviceLogs lists the node services that have a log file.
func serviceLogs(ctx context.Context, n provision.Node) ([]string, error) {
	var out bytes.Buffer
	if err := n.Run(ctx, provision.Cmd{Args: []string{"ls", contract.LogDir}, Stdout: &out}); err != nil {
		return nil, fmt.Errorf("listing the service logs of %s: %w", n.Name(), err)
	}
	var names []string
	for _, f := range strings.Fields(out.String()) {
		if s, ok := strings.CutSuffix(f, ".log"); ok {
			names = append(names, s)
		}
	}
	return names, nil
}

// nodeDiagnostics are commands whose output export writes per node, file name to command.
var nodeDiagnostics = map[string][]string{
	"containers.txt":    {"crictl", "ps", "--all"},
	"pods.txt":          {"crictl", "pods"},
	"images.txt":        {"crictl", "images"},
	"ip-addr.txt":       {"ip", "addr"},
	"ip-route.txt":      {"ip", "route"},
	"iptables-save.txt": {"iptables-save"},
	"df.txt":            {"df", "-h"},
	"ps.txt":            {"ps", "auxww"},
	"supervisor.json":   {"cat", contract.StatusPath},
}

// ExportLogs writes what a bug report needs into dir: per node, its console, the services' and
// pods' log files, runtime and network state and the driver's view of the machine; for the
// cluster, its record and (when the API answers) nodes, pods and events. It writes everything it
// can and returns the parts that failed, joined.
//
// Bundles get attached to public issues: everything is written through package redact (see
// writePrivate), files 0600 in directories 0700. dir itself is made 0700 when missing; an existing
// dir keeps its mode (it may be the user's working directory).
func (c *Cluster) ExportLogs(ctx context.Context, dir string) error {
	nodes, err := c.machines(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for _, n := range nodes {
		safe.GoWait(&wg, func(err error) { fail(fmt.Errorf("node %s: %w", n.Name(), err)) }, func() {
			for _, err := range exportNode(ctx, n, filepath.Join(dir, n.Name())) {
				fail(fmt.Errorf("node %s: %w", n.Name(), err))
			}
		})
	}
	{
		d := c.dir
		if b, err := os.ReadFile(d.RecordFile()); err == nil {
			// The record holds the proxy settings (user:password@host) and extra flags.
			if err := writePrivate(filepath.Join(dir, "cluster.json"), b); err != nil {
				fail(fmt.Errorf("cluster: %w", err))
			}
		}
		for _, err := range exportAPI(ctx, d.SuperAdmin(), dir) {
			fail(fmt.Errorf("cluster: %w", err))
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// exportNode writes one node's part of an export into dir.
func exportNode(ctx context.Context, n provision.Node, dir string) []error {
	var errs []error
	if err := privateDir(dir); err != nil {
		return []error{err}
	}
	// write keeps what fill wrote, even when it failed: a partial output helps too.
	write := func(file string, fill func(io.Writer) error) {
		var b bytes.Buffer
		if err := fill(&b); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
		if err := writePrivate(filepath.Join(dir, file), b.Bytes()); err != nil {
			errs = append(errs, err)
		}
	}
	if i, ok := n.(provision.Inspector); ok {
		write("inspect.json", func(w io.Writer) error {
			b, err := i.Inspect(ctx)
			if err == nil {
				_, err = w.Write(b)
			}
			return err
		})
	}
	write("console.log", func(w io.Writer) error { return n.Logs(ctx, w, false) })
	if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
		return errs // a stopped node has its console and inspect only
	}
	if n.Role() == provision.RoleServiceLB {
		return errs // a Service's forwarder: everything it says is on its console
	}
	kubeNode := !provision.IsLoadBalancer(n) && !provision.IsService(n)
	for file, args := range nodeDiagnostics {
		if args[0] == "crictl" && !kubeNode {
			continue // no container runtime there
		}
		write(file, func(w io.Writer) error { return n.Run(ctx, provision.Cmd{Args: args, Stdout: w, Stderr: w}) })
	}
	// The services' log files and the pods' (container runtime) logs, as files.
	var tarball bytes.Buffer
	dirs := []string{"kubeforge", "pods"}
	if !kubeNode {
		dirs = dirs[:1] // no pods there
	}
	err := n.Run(ctx, provision.Cmd{Args: append([]string{"tar", "-C", "/var/log", "-cf", "-"}, dirs...), Stdout: &tarball})
	if err != nil {
		return append(errs, fmt.Errorf("reading /var/log: %w", err))
	}
	if err := untar(&tarball, filepath.Join(dir, "logs")); err != nil {
		errs = append(errs, fmt.Errorf("writing the logs: %w", err))
	}
	return errs
}

// maxLogFile bounds what untar reads of one log file (decompressed, for rotated .gz ones).
const maxLogFile = 256 << 20

// untar writes the regular files and directories of a tar stream under dir, refusing paths that
// leave it, through writePrivate (redacted, 0600 in 0700 directories). Rotated logs compressed
// with gzip are written decompressed (without .gz): compressed, they could not be redacted. A file
// that cannot be read is left out and reported; the others are written.
func untar(r io.Reader, dir string) error {
	if err := privateDir(dir); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	var errs []error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return errors.Join(errs...)
		} else if err != nil {
			return errors.Join(append(errs, err)...)
		}
		rel := filepath.Clean(filepath.FromSlash(h.Name))
		if rel == "." {
			continue
		}
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("tar entry %q leaves the directory", h.Name)
		}
		p := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := privateDir(p); err != nil {
				return errors.Join(append(errs, err)...)
			}
		case tar.TypeReg:
			if err := privateDir(filepath.Dir(p)); err != nil {
				return errors.Join(append(errs, err)...)
			}
			var body io.Reader = tr
			if plain, ok := strings.CutSuffix(p, ".gz"); ok {
				zr, err := gzip.NewReader(tr)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
					continue
				}
				body, p = zr, plain
			}
			b, err := io.ReadAll(io.LimitReader(body, maxLogFile+1))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
				continue
			}
			if len(b) > maxLogFile {
				b = append(b[:maxLogFile], "\n[kubeforge export: cut at 256 MiB]\n"...)
			}
			if err := writePrivate(p, b); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
	}
}

// privateDir makes dir and its missing parents, mode 0700 (also when dir was there: an earlier
// export's).
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// writePrivate writes b into the bundle at file, redacted (JSON files field by field, see
// redact.JSON; anything else as text, see redact.Text), mode 0600 (also when file was there).
func writePrivate(file string, b []byte) error {
	if strings.HasSuffix(file, ".json") {
		b = redact.JSON(b)
	} else {
		b = redact.Text(b)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// exportAPI writes the cluster's nodes, pods and events as the API server has them.
func exportAPI(ctx context.Context, kubeconfig, dir string) []error {
	k, err := newKube(kubeconfig, 15*time.Second)
	if err != nil {
		return []error{fmt.Errorf("no API access (%v): nodes, pods and events not exported", err)}
	}
	cs := k.cs
	var errs []error
	save := func(file string, obj runtime.Object) {
		b, err := redactedYAML(obj)
		if err == nil {
			err = writePrivate(filepath.Join(dir, file), b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return []error{fmt.Errorf("the API server does not answer (%v): nodes, pods and events not exported", err)}
	}
	save("nodes.yaml", nodes)
	if pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		errs = append(errs, fmt.Errorf("listing pods: %w", err))
	} else {
		save("pods.yaml", pods)
		if err := writePrivate(filepath.Join(dir, "pods.txt"), podTable(pods.Items)); err != nil {
			errs = append(errs, err)
		}
	}
	if events, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err != nil {
		errs = append(errs, fmt.Errorf("listing events: %w", err))
	} else {
		save("events.yaml", events)
		if err := writePrivate(filepath.Join(dir, "events.txt"), eventTable(events.Items)); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// redactedYAML is obj as YAML, redacted field by field (Secrets' data, env vars named like
// secrets, secret flags in commands: see redact.JSON) before it is made YAML.
func redactedYAML(obj runtime.Object) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if gvks, _, err := scheme.Scheme.ObjectKinds(obj); kind == "" && err == nil && len(gvks) > 0 {
		kind = gvks[0].Kind // client-go's typed objects come without their kind
	}
	return yaml.JSONToYAML(redact.Object(b, kind))
}

// podTable is `kubectl get pods -A -o wide` in short.
func podTable(pods []corev1.Pod) []byte {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tPHASE\tREADY\tRESTARTS\tNODE\tIP")
	for _, p := range pods {
		ready, restarts := 0, int32(0)
		for _, c := range p.Status.ContainerStatuses {
			if c.Ready {
				ready++
			}
			restarts += c.RestartCount
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", p.Namespace, p.Name, p.Status.Phase, ready, len(p.Spec.Containers), restarts, p.Spec.NodeName, p.Status.PodIP)
	}
	tw.Flush()
	return b.Bytes()
}

// eventTable lists events oldest first, as `kubectl get events -A --sort-by=.lastTimestamp`.
func eventTable(events []corev1.Event) []byte {
	when := func(e corev1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(events, func(i, j int) bool { return when(events[i]).Before(when(events[j])) })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNAMESPACE\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", when(e).UTC().Format(time.RFC3339), e.Namespace, e.Type, e.Reason,
			strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name, strings.TrimSpace(e.Message))
	}
	tw.Flush()
	return b.Bytes()
}

// Machine returns the cluster's machine called name (a node or the load balancer), for a shell
// or a command in it.
func (c *Cluster) Machine(ctx context.Context, name string) (provision.Node, error) {
	nodes, err := c.machines(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range nodes {
		if n.Name() == name {
			return n, nil
		}
		names = append(names, n.Name())
	}
	return nil, kferr.Usage("cluster %q has no node %q (nodes: %s)", c.name, name, strings.Join(names, ", "))
}

// MachineNames names the cluster's machines (nodes and load balancer), in name order.
func (c *Cluster) MachineNames(ctx context.Context) ([]string, error) {
	nodes, err := c.driver.Nodes(ctx, c.name)
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name())
	}
	return out, err
}
