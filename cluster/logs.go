package cluster

import (
	"archive/tar"
	"bytes"
	"context"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
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
func (c *Cluster) ExportLogs(ctx context.Context, dir string) error {
	nodes, err := c.machines(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, err := range exportNode(ctx, n, filepath.Join(dir, n.Name())) {
				fail(fmt.Errorf("node %s: %w", n.Name(), err))
			}
		}()
	}
	if d := c.dir; true {
		if b, err := os.ReadFile(d.RecordFile()); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "cluster.json"), b, 0o644)
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return []error{err}
	}
	write := func(file string, fill func(io.Writer) error) {
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			errs = append(errs, err)
			return
		}
		defer f.Close()
		if err := fill(f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
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
	for file, args := range nodeDiagnostics {
		write(file, func(w io.Writer) error { return n.Run(ctx, provision.Cmd{Args: args, Stdout: w, Stderr: w}) })
	}
	// The services' log files and the pods' (container runtime) logs, as files.
	var tarball bytes.Buffer
	err := n.Run(ctx, provision.Cmd{Args: []string{"tar", "-C", "/var/log", "-cf", "-", "kubeforge", "pods"}, Stdout: &tarball})
	if err != nil {
		return append(errs, fmt.Errorf("reading /var/log: %w", err))
	}
	if err := untar(&tarball, filepath.Join(dir, "logs")); err != nil {
		errs = append(errs, fmt.Errorf("writing the logs: %w", err))
	}
	return errs
}

// untar writes the regular files and directories of a tar stream under dir, refusing paths that
// leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
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
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// exportAPI writes the cluster's nodes, pods and events as the API server has them.
func exportAPI(ctx context.Context, kubeconfig, dir string) []error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return []error{fmt.Errorf("no API access (%v): nodes, pods and events not exported", err)}
	}
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return []error{err}
	}
	var errs []error
	save := func(file string, obj any) {
		b, err := yaml.Marshal(obj)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, file), b, 0o644)
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
		if err := os.WriteFile(filepath.Join(dir, "pods.txt"), podTable(pods.Items), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	if events, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err != nil {
		errs = append(errs, fmt.Errorf("listing events: %w", err))
	} else {
		save("events.yaml", events)
		if err := os.WriteFile(filepath.Join(dir, "events.txt"), eventTable(events.Items), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
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
