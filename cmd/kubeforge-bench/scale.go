package main

// The scale rows (issue 19): clusters of 10 and 20 nodes (1 control plane, the rest workers),
// start to usable, the create's step durations, idle memory of every machine, and the memory of
// each process group of the control plane and of one worker, from the host's /proc. They run in
// the full bench, or alone with -only scale, which rewrites only their section of the results.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// scaleOptions are the flags of the scale rows.
type scaleOptions struct {
	only  string // "scale": run only the scale rows
	nodes string // comma-separated cluster sizes
	runs  int
}

func scaleFlags(fs *flag.FlagSet) *scaleOptions {
	o := &scaleOptions{}
	fs.StringVar(&o.only, "only", "", `run only this part of the bench ("scale": the 10- and 20-node rows), rewriting only its section of -out`)
	fs.StringVar(&o.nodes, "scale-nodes", "10,20", "cluster sizes of the scale rows (1 control plane, the rest workers); empty for none")
	fs.IntVar(&o.runs, "scale-runs", 1, "start/delete cycles per scale row")
	return o
}

// full says whether the whole bench runs (not only a part of it).
func (o *scaleOptions) full() (bool, error) {
	switch o.only {
	case "":
		return true, nil
	case "scale":
		return false, nil
	}
	return false, fmt.Errorf("-only %q: the one part that runs alone is \"scale\"", o.only)
}

func (o *scaleOptions) sizes() ([]int, error) {
	var out []int
	for _, f := range strings.Split(o.nodes, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			return nil, fmt.Errorf("-scale-nodes: %q is not a node count of 2 or more", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// scaleRun is one start --nodes N, measured.
type scaleRun struct {
	Nodes      int
	Load       string // the host's load averages (1, 5, 15 min) when the start began: others' work shows here
	Usable     time.Duration
	Steps      []string // the create's steps as the CLI reported them: "Nodes 9.8s"
	TotalMiB   float64  // every machine of the cluster, cloud provider included
	CPMiB      float64
	WorkerMiB  []float64 // sorted
	CloudMiB   float64
	Delete     time.Duration
	CPProcs    []procGroup // the control plane's processes, grouped
	WorkerProc []procGroup // the last worker's
}

// procGroup is the memory of a node's processes of one kind, from /proc/PID/smaps_rollup.
type procGroup struct {
	Name           string
	Count          int
	RSS, Anon, PSS float64 // MiB
}

// runScale measures the scale rows and writes their section into out.
func runScale(ctx context.Context, bin, out string, o *scaleOptions, idle time.Duration) error {
	sizes, err := o.sizes()
	if err != nil || len(sizes) == 0 || o.runs <= 0 {
		return err
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kubeforge-bench-scale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := append(os.Environ(), "KUBEFORGE_HOME="+filepath.Join(tmp, "home"), "KUBECONFIG="+filepath.Join(tmp, "kubeconfig"))
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	kf := func(args ...string) (string, error) {
		c := exec.CommandContext(ctx, bin, args...)
		c.Env = env
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Run(); err != nil {
			return errb.String(), fmt.Errorf("kubeforge %s: %w\n%s", strings.Join(args, " "), err, errb.String())
		}
		return errb.String(), nil
	}
	fmt.Fprintln(os.Stderr, "bench: building the node image (not measured)")
	if _, err := kf("image", "build"); err != nil {
		return err
	}
	const name = "kf-scale-bench"
	defer kf("delete", "--name", name)
	var rs []scaleRun
	for _, n := range sizes {
		for i := 0; i < o.runs; i++ {
			if _, err := kf("delete", "--name", name); err != nil {
				return err
			}
			r, err := scaleOnce(ctx, cli, kf, name, n, idle)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: %d nodes run %d: usable in %.1fs (%s), %.0f MiB idle in all, delete %.1fs\n",
				n, i+1, r.Usable.Seconds(), strings.Join(r.Steps, ", "), r.TotalMiB, r.Delete.Seconds())
			rs = append(rs, r)
		}
	}
	return writeScale(ctx, cli, out, rs, idle)
}

// stepLine is a finished step as the CLI prints it: " ✓ Nodes a, b (2, in parallel) (9.83s)".
var stepLine = regexp.MustCompile(`(?m)^ ✓ (\S+).* \(([0-9.]+m?s|[0-9]+m[0-9.]+s)\)$`)

func scaleOnce(ctx context.Context, cli *client.Client, kf func(...string) (string, error), name string, n int, idle time.Duration) (scaleRun, error) {
	r := scaleRun{Nodes: n, Load: "?"}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(la)); len(f) >= 3 {
			r.Load = strings.Join(f[:3], " ")
		}
	}
	t0 := time.Now()
	stderr, err := kf("start", "--name", name, "--nodes", strconv.Itoa(n))
	if err != nil {
		return r, err
	}
	r.Usable = time.Since(t0)
	for _, m := range stepLine.FindAllStringSubmatch(stderr, -1) {
		r.Steps = append(r.Steps, m[1]+" "+m[2])
	}
	fmt.Fprintf(os.Stderr, "bench: %d nodes: usable in %.1fs; waiting %s for idle memory\n", n, r.Usable.Seconds(), idle)
	time.Sleep(idle) // the measurement itself: memory after this long idle, not a wait for readiness
	cs, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", provision.LabelCluster+"="+name))})
	if err != nil {
		return r, fmt.Errorf("listing the machines of %s: %w", name, err)
	}
	var lastWorker string
	for _, c := range cs {
		cname := strings.TrimPrefix(c.Names[0], "/")
		_, mem, err := nodeStats(ctx, cli, cname)
		if err != nil {
			return r, err
		}
		r.TotalMiB += mem
		switch c.Labels[provision.LabelRole] {
		case string(spec.RoleControlPlane):
			r.CPMiB = mem
			if r.CPProcs, err = processGroups(ctx, cli, cname); err != nil {
				return r, err
			}
		case string(spec.RoleWorker):
			r.WorkerMiB = append(r.WorkerMiB, mem)
			lastWorker = max(lastWorker, cname)
		case provision.RoleCloudProvider:
			r.CloudMiB = mem
		}
	}
	sort.Float64s(r.WorkerMiB)
	if lastWorker != "" {
		if r.WorkerProc, err = processGroups(ctx, cli, lastWorker); err != nil {
			return r, err
		}
	}
	t0 = time.Now()
	if _, err := kf("delete", "--name", name); err != nil {
		return r, err
	}
	r.Delete = time.Since(t0)
	return r, nil
}

// processGroups reads the memory of every process of container name from the host's /proc
// (Docker's top gives host PIDs), grouped by program: the kubeforge-node component (its first
// argument), or the program's name.
func processGroups(ctx context.Context, cli *client.Client, name string) ([]procGroup, error) {
	top, err := cli.ContainerTop(ctx, name, []string{"-eo", "pid"})
	if err != nil {
		return nil, fmt.Errorf("processes of %s: %w", name, err)
	}
	byName := map[string]*procGroup{}
	for _, p := range top.Processes {
		if len(p) == 0 {
			continue
		}
		pid := strings.TrimSpace(p[0])
		raw, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		prog := filepath.Base(args[0])
		if prog == "kubeforge-node" && len(args) > 1 {
			prog = args[1]
		}
		rollup, err := os.ReadFile(filepath.Join("/proc", pid, "smaps_rollup"))
		if err != nil {
			continue
		}
		g := byName[prog]
		if g == nil {
			g = &procGroup{Name: prog}
			byName[prog] = g
		}
		g.Count++
		for _, l := range strings.Split(string(rollup), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			kib, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				continue
			}
			switch f[0] {
			case "Rss:":
				g.RSS += kib / 1024
			case "Anonymous:":
				g.Anon += kib / 1024
			case "Pss:":
				g.PSS += kib / 1024
			}
		}
	}
	var out []procGroup
	for _, g := range byName {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b procGroup) int {
		if a.PSS != b.PSS {
			if a.PSS > b.PSS {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// scaleHeading starts the section runScale writes; it ends at the next "## " heading.
const scaleHeading = "## Scale: 1 control plane + workers"

func writeScale(ctx context.Context, cli *client.Client, out string, rs []scaleRun, idle time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", scaleHeading)
	fmt.Fprintf(&b, "Measured %s by `make bench` (or `go run ./cmd/kubeforge-bench -only scale`), on:\n%s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(ctx, cli))
	fmt.Fprintf(&b, "| nodes | host load at start | start to usable | steps of the start | idle memory %s after start, all machines | control plane | worker min / median / max | cloud provider | delete |\n|---|---|---|---|---|---|---|---|---|\n", idle)
	for _, r := range rs {
		w := r.WorkerMiB
		fmt.Fprintf(&b, "| %d | %s | %.1f s | %s | %.0f MiB | %.0f MiB | %.0f / %.0f / %.0f MiB | %.0f MiB | %.1f s |\n",
			r.Nodes, r.Load, r.Usable.Seconds(), strings.Join(r.Steps, ", "), r.TotalMiB, r.CPMiB, w[0], median(w), w[len(w)-1], r.CloudMiB, r.Delete.Seconds())
	}
	fmt.Fprintf(&b, "\nMemory as in the rows above (the container cgroup's usage minus inactive page cache). Targets\n"+
		"(issue 19): 10 nodes usable in at most 30 s and at most 1.5 GiB idle in all; idle control plane at\n"+
		"most 350 MiB, idle worker at most 80 MiB.\n")
	for _, r := range rs[len(rs)-1:] {
		for _, part := range []struct {
			what  string
			procs []procGroup
		}{{"control plane", r.CPProcs}, {"last worker", r.WorkerProc}} {
			fmt.Fprintf(&b, "\nProcesses of the idle %s (%d-node run), from the host's /proc/PID/smaps_rollup:\n", part.what, r.Nodes)
			fmt.Fprintf(&b, "| program | processes | RSS | anonymous | PSS |\n|---|---|---|---|---|\n")
			var rss, anon, pss float64
			for _, g := range part.procs {
				fmt.Fprintf(&b, "| %s | %d | %.0f MiB | %.1f MiB | %.1f MiB |\n", g.Name, g.Count, g.RSS, g.Anon, g.PSS)
				rss, anon, pss = rss+g.RSS, anon+g.Anon, pss+g.PSS
			}
			fmt.Fprintf(&b, "| **sum** | | %.0f MiB | **%.1f MiB** | **%.1f MiB** |\n", rss, anon, pss)
		}
	}
	fmt.Fprintf(&b, "\nEach component is its own process of the one multi-call node binary (static pods for etcd and\n"+
		"the control plane, a DaemonSet for kube-proxy, the kubelet and netctl under the node's supervisor),\n"+
		"so RSS counts the shared binary's pages in every process: PSS shares them out, anonymous is each\n"+
		"process's own (mostly Go heap).\n")
	section := b.String()

	old, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if i := strings.Index(doc, scaleHeading); i >= 0 {
		end := len(doc)
		if j := strings.Index(doc[i+len(scaleHeading):], "\n## "); j >= 0 {
			end = i + len(scaleHeading) + j + 1
		}
		if end < len(doc) {
			section += "\n"
		}
		doc = doc[:i] + section + doc[end:]
	} else {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		doc += section
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Print(section)
	return nil
}
