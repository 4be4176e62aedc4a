// Command bench measures kubeforge on this machine and writes bench/results.md (`make bench`):
// time from `kubeforge start` to a usable cluster (start returns only when the node is Ready,
// CoreDNS has a ready endpoint and the default ServiceAccount exists), the CPU time that start
// costs (the CLI process and the node container's cgroup), and the node's idle memory (its Docker
// cgroup, as `docker stats` counts it) a while after start. Nothing here asserts a target: the
// numbers are written down with the machine they were measured on.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/internal/versions"
)

type run struct {
	Usable     time.Duration
	CLICPU     time.Duration
	NodeCPU    time.Duration
	IdleMemMiB float64
	Stop       time.Duration // kubeforge stop
	Restart    time.Duration // start of the stopped cluster to usable
}

// multiRun is one 3-node start, a stop and start again, then a node add.
type multiRun struct {
	Usable       time.Duration // start --nodes 3 to usable (all nodes Ready, DNS)
	NodeAdd      time.Duration // node add to Ready
	CPMemMiB     float64       // idle control-plane node
	WorkerMemMiB float64       // idle worker (the first one)
	Stop         time.Duration // kubeforge stop of the 3 nodes
	Restart      time.Duration // start of the stopped cluster to usable
}

// restart stops the cluster and starts it again, timing both.
func restart(kf func(args ...string) (*exec.Cmd, error), name string) (stop, start time.Duration, err error) {
	t0 := time.Now()
	if _, err := kf("stop", "--name", name); err != nil {
		return 0, 0, err
	}
	stop = time.Since(t0)
	t0 = time.Now()
	if _, err := kf("start", "--name", name); err != nil {
		return 0, 0, err
	}
	return stop, time.Since(t0), nil
}

func main() {
	kubeforge := flag.String("kubeforge", "bin/kubeforge", "the kubeforge binary")
	out := flag.String("out", "bench/results.md", "results file (Markdown)")
	runs := flag.Int("runs", 3, "number of single-node start/delete cycles")
	multiRuns := flag.Int("multi-runs", 3, "number of 3-node start/node add/delete cycles")
	idle := flag.Duration("idle", 60*time.Second, "how long after start to measure idle memory")
	versionRuns := flag.Int("version-runs", 2, "number of single-node start/delete cycles per supported Kubernetes version")
	addonRuns := flag.Int("addon-runs", 2, "number of single-node start --addons NAME/delete cycles per add-on (metrics-server, ingress)")
	scale := scaleFlags(flag.CommandLine)
	flag.Parse()
	full, err := scale.full()
	if err == nil && full {
		err = bench(*kubeforge, *out, *runs, *multiRuns, *versionRuns, *addonRuns, *idle)
	}
	if err == nil {
		err = runScale(context.Background(), *kubeforge, *out, scale, *idle)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func bench(bin, out string, n, multi, perVersion, addons int, idle time.Duration) error {
	ctx := context.Background()
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "kubeforge-bench")
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

	kf := func(args ...string) (*exec.Cmd, error) {
		c := exec.CommandContext(ctx, bin, args...)
		c.Env = env
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Run(); err != nil {
			return c, fmt.Errorf("kubeforge %s: %w\n%s", strings.Join(args, " "), err, errb.String())
		}
		return c, nil
	}
	fmt.Fprintln(os.Stderr, "bench: building the node image (not measured)")
	if _, err := kf("image", "build"); err != nil {
		return err
	}
	const name = "kf-bench"
	defer kf("delete", "--name", name)
	var results []run
	for i := 0; i < n; i++ {
		if _, err := kf("delete", "--name", name); err != nil {
			return err
		}
		t0 := time.Now()
		c, err := kf("start", "--name", name)
		if err != nil {
			return err
		}
		r := run{Usable: time.Since(t0), CLICPU: c.ProcessState.UserTime() + c.ProcessState.SystemTime()}
		if r.NodeCPU, _, err = nodeStats(ctx, cli, name); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: run %d: usable in %.1fs; waiting %s for idle memory\n", i+1, r.Usable.Seconds(), idle)
		time.Sleep(idle) // the measurement itself: memory after this long idle, not a wait for readiness
		_, mem, err := nodeStats(ctx, cli, name)
		if err != nil {
			return err
		}
		r.IdleMemMiB = mem
		if r.Stop, r.Restart, err = restart(kf, name); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: run %d: stop %.1fs, start again to usable %.1fs\n", i+1, r.Stop.Seconds(), r.Restart.Seconds())
		results = append(results, r)
	}
	var multiResults []multiRun
	for i := 0; i < multi; i++ {
		if _, err := kf("delete", "--name", name); err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := kf("start", "--name", name, "--nodes", "3"); err != nil {
			return err
		}
		r := multiRun{Usable: time.Since(t0)}
		if r.Stop, r.Restart, err = restart(kf, name); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: 3-node run %d: stop %.1fs, start again to usable %.1fs\n", i+1, r.Stop.Seconds(), r.Restart.Seconds())
		t0 = time.Now()
		if _, err := kf("node", "add", "--name", name); err != nil {
			return err
		}
		r.NodeAdd = time.Since(t0)
		fmt.Fprintf(os.Stderr, "bench: 3-node run %d: usable in %.1fs, node add %.1fs; waiting %s for idle memory\n", i+1, r.Usable.Seconds(), r.NodeAdd.Seconds(), idle)
		time.Sleep(idle) // the measurement itself: memory after this long idle, not a wait for readiness
		if _, r.CPMemMiB, err = nodeStats(ctx, cli, name); err != nil {
			return err
		}
		if _, r.WorkerMemMiB, err = nodeStats(ctx, cli, name+"-m02"); err != nil {
			return err
		}

		multiResults = append(multiResults, r)
	}
	// Add-ons: a single-node start with each add-on (to usable and the add-on serving), its idle
	// memory, then enabling it on a running cluster. Each add-on's image is built by a first start
	// that is not measured.
	var addonResults []addonRun
	for _, addon := range benchAddons {
		if addons <= 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "bench: building the %s image (not measured)\n", addon)
		if _, err := kf("delete", "--name", name); err != nil {
			return err
		}
		if _, err := kf("start", "--name", name, "--addons", addon); err != nil {
			return err
		}
		for i := 0; i < addons; i++ {
			if _, err := kf("delete", "--name", name); err != nil {
				return err
			}
			t0 := time.Now()
			if _, err := kf("start", "--name", name, "--addons", addon); err != nil {
				return err
			}
			r := addonRun{Addon: addon, Usable: time.Since(t0)}
			fmt.Fprintf(os.Stderr, "bench: add-on %s run %d: usable in %.1fs; waiting %s for idle memory\n", addon, i+1, r.Usable.Seconds(), idle)
			time.Sleep(idle) // the measurement itself: memory after this long idle
			if _, r.IdleMemMiB, err = nodeStats(ctx, cli, name); err != nil {
				return err
			}
			if _, err := kf("addons", "disable", addon, "--name", name); err != nil {
				return err
			}
			t0 = time.Now()
			if _, err := kf("addons", "enable", addon, "--name", name); err != nil {
				return err
			}
			r.Enable = time.Since(t0)
			fmt.Fprintf(os.Stderr, "bench: add-on %s run %d: addons enable %.1fs\n", addon, i+1, r.Enable.Seconds())
			addonResults = append(addonResults, r)
		}
	}
	// Start-to-usable of each supported Kubernetes version, the default included (same machine,
	// same run: comparable).
	var versionResults []versionRun
	for _, rel := range versions.All() {
		if perVersion <= 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "bench: building the node image of Kubernetes %s (not measured)\n", rel.Kubernetes)
		if _, err := kf("image", "build", "--kubernetes-version", rel.Kubernetes); err != nil {
			return err
		}
		for i := 0; i < perVersion; i++ {
			if _, err := kf("delete", "--name", name); err != nil {
				return err
			}
			t0 := time.Now()
			if _, err := kf("start", "--name", name, "--kubernetes-version", rel.Kubernetes); err != nil {
				return err
			}
			r := versionRun{Version: rel.Kubernetes, Usable: time.Since(t0)}
			fmt.Fprintf(os.Stderr, "bench: Kubernetes %s run %d: usable in %.1fs; waiting %s for idle memory\n", rel.Kubernetes, i+1, r.Usable.Seconds(), idle)
			time.Sleep(idle) // the measurement itself: memory after this long idle
			if _, r.IdleMemMiB, err = nodeStats(ctx, cli, name); err != nil {
				return err
			}
			versionResults = append(versionResults, r)
		}
	}
	if _, err := kf("delete", "--name", name); err != nil {
		return err
	}
	bundleResults, err := benchBundle(ctx, cli, bin, tmp, env, *bundleRuns)
	if err != nil {
		return err
	}
	return writeResults(ctx, cli, out, results, multiResults, versionResults, addonResults, bundleResults, idle)
}

// nodeStats returns the node container's total CPU time and its memory use in MiB as docker
// stats shows it (usage minus inactive page cache).
func nodeStats(ctx context.Context, cli *client.Client, name string) (time.Duration, float64, error) {
	resp, err := cli.ContainerStatsOneShot(ctx, name)
	if err != nil {
		return 0, 0, fmt.Errorf("stats of %s: %w", name, err)
	}
	defer resp.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return 0, 0, err
	}
	mem := float64(s.MemoryStats.Usage)
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := s.MemoryStats.Stats[k]; ok && float64(v) < mem {
			mem -= float64(v)
			break
		}
	}
	return time.Duration(s.CPUStats.CPUUsage.TotalUsage), mem / (1 << 20), nil
}

// versionRun is one single-node start of a given Kubernetes version.
type versionRun struct {
	Version    string
	Usable     time.Duration
	IdleMemMiB float64
}

// benchAddons are the add-ons measured, one at a time.
var benchAddons = []string{"metrics-server", "ingress"}

// addonRun is one single-node start with one add-on.
type addonRun struct {
	Addon      string
	Usable     time.Duration // start --addons NAME to usable, the add-on serving
	IdleMemMiB float64       // the node, idle
	Enable     time.Duration // addons enable NAME on the running cluster (after a disable)
}

func writeResults(ctx context.Context, cli *client.Client, out string, rs []run, ms []multiRun, vs []versionRun, as []addonRun, bs []bundleRun, idle time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kubeforge benchmark\n\nMeasured %s by `make bench` (%d runs).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), len(rs))
	fmt.Fprintf(&b, "## Machine\n%s\n", machine(ctx, cli))
	fmt.Fprintf(&b, "## Single node, node image present\n")
	fmt.Fprintf(&b, "| run | start to usable | CPU: kubeforge CLI | CPU: node container | idle memory %s after start | stop | start again to usable |\n|---|---|---|---|---|---|---|\n", idle)
	var usable, nodeCPU, mem, stop, again []float64
	for i, r := range rs {
		fmt.Fprintf(&b, "| %d | %.1f s | %.2f s | %.1f s | %.0f MiB | %.1f s | %.1f s |\n", i+1, r.Usable.Seconds(), r.CLICPU.Seconds(), r.NodeCPU.Seconds(), r.IdleMemMiB, r.Stop.Seconds(), r.Restart.Seconds())
		usable = append(usable, r.Usable.Seconds())
		nodeCPU = append(nodeCPU, r.NodeCPU.Seconds())
		mem = append(mem, r.IdleMemMiB)
		stop, again = append(stop, r.Stop.Seconds()), append(again, r.Restart.Seconds())
	}
	fmt.Fprintf(&b, "| **median** | **%.1f s** | | **%.1f s** | **%.0f MiB** | **%.1f s** | **%.1f s** |\n\n", median(usable), median(nodeCPU), median(mem), median(stop), median(again))
	fmt.Fprintf(&b, "\"Usable\": `kubeforge start` returned, which it does once the node is Ready, CoreDNS has a ready\n"+
		"endpoint and the default ServiceAccount exists. Node CPU is the container cgroup's CPU time when start\n"+
		"returned; memory is the container cgroup's usage minus inactive page cache, as `docker stats` shows.\n"+
		"Targets (issue 2, this 2-core machine): usable in at most 10 s, idle control-plane node at most 450 MiB.\n"+
		"Stop and start again (issue 4): `kubeforge stop`, then `kubeforge start` of the stopped cluster until it\n"+
		"returns usable (API, nodes Ready again, CoreDNS and kube-proxy restarted, DNS endpoints current); target 8 s.\n")
	if len(ms) > 0 {
		fmt.Fprintf(&b, "\n## Three nodes (1 control plane, 2 workers), then `node add`\n")
		fmt.Fprintf(&b, "| run | start --nodes 3 to usable | node add to Ready | idle control plane | idle worker | stop | start again to usable |\n|---|---|---|---|---|---|---|\n")
		var u, a, c, w, st, ag []float64
		for i, r := range ms {
			fmt.Fprintf(&b, "| %d | %.1f s | %.1f s | %.0f MiB | %.0f MiB | %.1f s | %.1f s |\n", i+1, r.Usable.Seconds(), r.NodeAdd.Seconds(), r.CPMemMiB, r.WorkerMemMiB, r.Stop.Seconds(), r.Restart.Seconds())
			u, a, c, w = append(u, r.Usable.Seconds()), append(a, r.NodeAdd.Seconds()), append(c, r.CPMemMiB), append(w, r.WorkerMemMiB)
			st, ag = append(st, r.Stop.Seconds()), append(ag, r.Restart.Seconds())
		}
		fmt.Fprintf(&b, "| **median** | **%.1f s** | **%.1f s** | **%.0f MiB** | **%.0f MiB** | **%.1f s** | **%.1f s** |\n\n", median(u), median(a), median(c), median(w), median(st), median(ag))
		fmt.Fprintf(&b, "Usable: every node Ready, CoreDNS ready, default ServiceAccount. Idle memory %s after the node add.\n"+
			"Targets (issue 3): 3-node usable in at most 20 s, a node added and Ready in at most 5 s, idle worker at most 120 MiB.\n"+
			"Stop/start again: the 3-node cluster right after it was usable, before the node add; target (issue 4) 15 s.\n", idle)
	}
	if len(as) > 0 {
		fmt.Fprintf(&b, "\n## Add-ons: single node with one add-on\n")
		fmt.Fprintf(&b, "| add-on | run | start --addons NAME to usable | idle memory %s after start | added to the no-add-on median | addons enable (running cluster) |\n|---|---|---|---|---|---|\n", idle)
		base := median(mem)
		for _, addon := range benchAddons {
			var u, m, e []float64
			for _, r := range as {
				if r.Addon != addon {
					continue
				}
				fmt.Fprintf(&b, "| %s | %d | %.1f s | %.0f MiB | %+.0f MiB | %.1f s |\n", addon, len(u)+1, r.Usable.Seconds(), r.IdleMemMiB, r.IdleMemMiB-base, r.Enable.Seconds())
				u, m, e = append(u, r.Usable.Seconds()), append(m, r.IdleMemMiB), append(e, r.Enable.Seconds())
			}
			if len(u) > 0 {
				fmt.Fprintf(&b, "| **%s median** | | **%.1f s** | **%.0f MiB** | **%+.0f MiB** | **%.1f s** |\n", addon, median(u), median(m), median(m)-base, median(e))
			}
		}
		fmt.Fprintf(&b, "\nUsable here also means the add-on serves: metrics-server, `kubectl top nodes` answers for every\n"+
			"node; ingress, Traefik's pod is available, its GatewayClass accepted, its Gateway programmed and its\n"+
			"Service has a load-balancer address. Each add-on's image was built and cached before these runs (not\n"+
			"measured). \"Added\" compares with the single-node table's median idle memory, same run: a start\n"+
			"without add-ons does none of this work.\n")
	}
	if len(vs) > 0 {
		fmt.Fprintf(&b, "\n## Single node per Kubernetes version (node image present)\n")
		fmt.Fprintf(&b, "| version | runs | start to usable (median) | idle memory %s after start (median) |\n|---|---|---|---|\n", idle)
		var order []string
		byVersion := map[string][]versionRun{}
		for _, r := range vs {
			if _, ok := byVersion[r.Version]; !ok {
				order = append(order, r.Version)
			}
			byVersion[r.Version] = append(byVersion[r.Version], r)
		}
		for _, v := range order {
			var u, m []float64
			for _, r := range byVersion[v] {
				u, m = append(u, r.Usable.Seconds()), append(m, r.IdleMemMiB)
			}
			fmt.Fprintf(&b, "| %s | %d | %.1f s | %.0f MiB |\n", v, len(u), median(u), median(m))
		}
		fmt.Fprintf(&b, "\n`kubeforge start --kubernetes-version V` with V's node image built beforehand (not measured).\n")
	}
	writeBundle(&b, bs)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func machine(ctx context.Context, cli *client.Client) string {
	var b strings.Builder
	cpu := "unknown"
	if f, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(f), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, cpu, _ = strings.Cut(l, ":")
				cpu = strings.TrimSpace(cpu)
				break
			}
		}
	}
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n", cpu, runtime.NumCPU())
	if f, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(f), "\n")
		fmt.Fprintf(&b, "- Memory: %s\n", strings.Join(strings.Fields(first)[1:], " "))
	}
	if u, err := exec.Command("uname", "-sr").Output(); err == nil {
		fmt.Fprintf(&b, "- Kernel: %s\n", strings.TrimSpace(string(u)))
	}
	cg := "v1 (or hybrid)"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cg = "v2"
	}
	fmt.Fprintf(&b, "- cgroup: %s\n", cg)
	if v, err := cli.ServerVersion(ctx); err == nil {
		fmt.Fprintf(&b, "- Docker: %s (storage driver: ", v.Version)
		if info, err := cli.Info(ctx); err == nil {
			fmt.Fprintf(&b, "%s)\n", info.Driver)
		} else {
			b.WriteString("?)\n")
		}
	}
	return b.String()
}
