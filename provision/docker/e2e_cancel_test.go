//go:build e2e

package docker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/provision"
)

// TestE2ERunCancel: a command whose ctx ends (Ctrl-C on `kubeforge ssh -- CMD` or `logs -f`)
// leaves no process in the node, though Docker never kills exec'd processes: a plain sleep, a
// shell with a sleeping child, and a command that ignores SIGTERM (killed after the grace).
func TestE2ERunCancel(t *testing.T) {
	d, img, cluster, nw := testCluster(t)
	ctx := t.Context()
	n, err := d.CreateNode(ctx, provision.NodeConfig{Cluster: cluster, Name: cluster + "-control-plane", Role: "control-plane", Image: img,
		Network: nw, IP: Network(nw).NodeIP(0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// sleeping lists the node's processes whose command line is sleep arg (a zombie has none).
	sleeping := func(arg string) int {
		out, err := provision.Output(ctx, n, "sh", "-c", `for f in /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; echo; done`)
		if err != nil {
			t.Fatalf("listing the node's processes: %v", err)
		}
		return strings.Count(out, "sleep\x00"+arg+"\x00")
	}
	for _, c := range []struct {
		name string
		args func(arg string) []string
	}{
		{"sleep", func(arg string) []string { return []string{"sleep", arg} }},
		{"shell with a child", func(arg string) []string { return []string{"sh", "-c", "sleep " + arg + "; echo not reached"} }},
		{"ignores SIGTERM", func(arg string) []string {
			return []string{"sh", "-c", `trap "" TERM; sleep ` + arg + "; echo not reached"}
		}},
	} {
		arg := fmt.Sprintf("%d.%03d", 300+rand.IntN(1000), rand.IntN(1000))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- n.Run(rctx, provision.Cmd{Args: c.args(arg)}) }()
		deadline := time.Now().Add(10 * time.Second)
		for sleeping(arg) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the sleep did not start", c.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		start := time.Now()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Run returned %v, want canceled", c.name, err)
			}
		case <-time.After(provision.KillGrace + 10*time.Second):
			t.Fatalf("%s: Run did not return after cancel", c.name)
		}
		t.Logf("%s: Run returned %v after cancel", c.name, time.Since(start).Round(time.Millisecond))
		// Run returns once the processes are signalled; give them a few seconds to be gone.
		deadline = time.Now().Add(3 * time.Second)
		for sleeping(arg) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if left := sleeping(arg); left > 0 {
			t.Errorf("%s: %d sleep %s still running in the node after the cancelled Run", c.name, left, arg)
		}
	}
	// A command that ends by itself is not disturbed.
	if out, err := provision.Output(ctx, n, "sh", "-c", "echo $KUBEFORGE_EXEC | wc -c"); err != nil || strings.TrimSpace(out) != "25" {
		t.Errorf("a normal Run: %q %v (want its 24-character token in the environment)", out, err)
	}
}

// TestE2ECreateNodeCancel: a CreateNode whose ctx ends at any moment (Ctrl-C while `start` makes
// the nodes) either returns the node or leaves neither its container nor its volume: the daemon
// goes on with a create whose client has left, and a rollback removes only what a create
// returned (CI once found kfs-int and kfs-int-var left by an interrupted start).
func TestE2ECreateNodeCancel(t *testing.T) {
	d, img, cluster, nw := testCluster(t)
	ctx := t.Context()
	cfg := func(i int) provision.NodeConfig {
		return provision.NodeConfig{Cluster: cluster, Name: fmt.Sprintf("%s-m%02d", cluster, i), Role: "worker", Image: img,
			Network: nw, IP: Network(nw).NodeIP(i)}
	}
	t0 := time.Now()
	if _, err := d.CreateNode(ctx, cfg(1)); err != nil {
		t.Fatal(err)
	}
	full := time.Since(t0)
	if err := d.DeleteNode(ctx, cluster, cfg(1).Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("a create takes %s", full)
	made, cut := 0, 0
	for i := 2; i < 40; i++ {
		after := full * time.Duration(i%20) / 16 // from at once to past the end
		cctx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(after, cancel)
		_, err := d.CreateNode(cctx, cfg(i))
		timer.Stop()
		cancel()
		if err == nil {
			made++
			if err := d.DeleteNode(ctx, cluster, cfg(i).Name); err != nil {
				t.Fatal(err)
			}
			continue
		}
		cut++
		if !errors.Is(err, context.Canceled) {
			t.Errorf("create cancelled after %s: %v, want context.Canceled", after, err)
		}
		time.Sleep(300 * time.Millisecond) // what the daemon would still be making
		var left []string
		for _, l := range leftovers(t, d, cluster) {
			if !strings.HasPrefix(l, "network ") {
				left = append(left, l)
			}
		}
		if len(left) != 0 {
			t.Fatalf("create cancelled after %s (%v) left %v", after, err, left)
		}
	}
	t.Logf("%d creates cut short, %d made", cut, made)
	if cut == 0 {
		t.Error("no create was cut short: the test tried nothing")
	}
}
