package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

var bundleRuns = flag.Int("bundle-runs", 1, "number of classroom bundle save/load cycles (the default node image, no workload image)")

// bundleRun is one `kubeforge bundle save` and `bundle load` of the default node image, the
// load into a Docker that lacks the node image's tag (its data kept under a backup tag).
type bundleRun struct {
	Size       int64
	Save, Load time.Duration
}

// benchBundle measures classroom bundles: save, size, and load with a fresh KUBEFORGE_HOME and
// KUBEFORGE_CACHE (as on an attendee's machine).
func benchBundle(ctx context.Context, cli *client.Client, bin, tmp string, env []string, n int) ([]bundleRun, error) {
	run := func(extra []string, args ...string) (string, error) {
		c := exec.CommandContext(ctx, bin, args...)
		c.Env = append(append([]string{}, env...), extra...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil {
			return "", fmt.Errorf("kubeforge %s: %w\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), nil
	}
	out, err := run(nil, "image", "build")
	if err != nil {
		return nil, err
	}
	ref := strings.TrimSpace(out)
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		return nil, err
	}
	const backup = "kubeforge.local/node-backup:bench"
	if err := cli.ImageTag(ctx, insp.ID, backup); err != nil {
		return nil, err
	}
	defer func() {
		if _, err := cli.ImageInspect(ctx, ref); err != nil {
			_ = cli.ImageTag(ctx, backup, ref)
		}
		_, _ = cli.ImageRemove(ctx, backup, image.RemoveOptions{})
	}()
	file := filepath.Join(tmp, "bench.kfb")
	var rs []bundleRun
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := run(nil, "bundle", "save", file); err != nil {
			return rs, err
		}
		r := bundleRun{Save: time.Since(t0)}
		if st, err := os.Stat(file); err == nil {
			r.Size = st.Size()
		}
		if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
			return rs, err
		}
		attendee := filepath.Join(tmp, fmt.Sprintf("attendee-%d", i))
		t0 = time.Now()
		if _, err := run([]string{"KUBEFORGE_HOME=" + filepath.Join(attendee, "home"), "KUBEFORGE_CACHE=" + filepath.Join(attendee, "cache")}, "bundle", "load", file); err != nil {
			return rs, err
		}
		r.Load = time.Since(t0)
		fmt.Fprintf(os.Stderr, "bench: bundle run %d: %.0f MB, save %.1fs, load %.1fs\n", i+1, float64(r.Size)/1e6, r.Save.Seconds(), r.Load.Seconds())
		rs = append(rs, r)
		os.Remove(file)
	}
	return rs, nil
}

// writeBundle adds the bundle table to the results.
func writeBundle(b *strings.Builder, rs []bundleRun) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Classroom bundle (default node image, no workload image)\n")
	fmt.Fprintf(b, "| run | size | bundle save | bundle load |\n|---|---|---|---|\n")
	var s, l, z []float64
	for i, r := range rs {
		fmt.Fprintf(b, "| %d | %.0f MB | %.1f s | %.1f s |\n", i+1, float64(r.Size)/1e6, r.Save.Seconds(), r.Load.Seconds())
		s, l, z = append(s, r.Save.Seconds()), append(l, r.Load.Seconds()), append(z, float64(r.Size)/1e6)
	}
	fmt.Fprintf(b, "| **median** | **%.0f MB** | **%.1f s** | **%.1f s** |\n\n", median(z), median(s), median(l))
	fmt.Fprintf(b, "Load: into a Docker without the node image's tag (its layers kept under another tag), with a fresh\n"+
		"KUBEFORGE_HOME and KUBEFORGE_CACHE; it includes the sha256 check of the whole file before anything is loaded.\n")
}
