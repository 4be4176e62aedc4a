//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInput: each mistake gets a specific message, its exit code, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newEnv(t)

	nothingOf := func(t *testing.T, name string) {
		t.Helper()
		if left := e.owned(ctx, name); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
		if _, err := os.Stat(filepath.Join(e.Home, name)); !os.IsNotExist(err) {
			t.Errorf("state directory of %s left behind (%v)", name, err)
		}
	}

	cases := []struct {
		name     string
		env      []string
		args     []string
		code     int
		contains []string
	}{
		{"unknown flag", nil, []string{"start", "--nodes-typo", "3"}, 2, []string{"unknown flag: --nodes-typo", "--help"}},
		{"unknown command", nil, []string{"strat"}, 2, []string{"unknown command"}},
		{"invalid name", nil, []string{"start", "--name", "Bad_Name"}, 2, []string{"--name", "Bad_Name"}},
		{"bad wait", nil, []string{"start", "--name", "kf-bad", "--wait", "-1s"}, 2, []string{"--wait"}},
		{"bad output", nil, []string{"list", "-o", "yaml"}, 2, []string{"text or json"}},
		{"stray argument", nil, []string{"delete", "mycluster"}, 2, []string{"takes no arguments"}},
		{"docker unreachable", []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, []string{"start", "--name", "kf-bad"}, 3,
			[]string{"docker is not reachable", "Fix:", "dockerd"}},
		{"status of a missing cluster", nil, []string{"status", "--name", "kf-nothere"}, 2, []string{"does not exist", "kubeforge start"}},
		{"kubectl for a missing cluster", nil, []string{"kubectl", "--name", "kf-nothere", "--", "get", "pods"}, 2, []string{"does not exist"}},
		{"image load without images", nil, []string{"image", "load"}, 2, []string{"at least one image"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(ctx, c.env, c.args...)
			if r.Code != c.code {
				t.Errorf("exit %d, want %d: %v", r.Code, c.code, r)
			}
			for _, s := range c.contains {
				if !strings.Contains(r.Stderr, s) {
					t.Errorf("stderr lacks %q: %v", s, r)
				}
			}
			nothingOf(t, "kf-bad")
		})
	}

	// The node image must exist for the remaining cases to reach the node steps.
	e.ok(ctx, "image", "build")

	t.Run("port already taken", func(t *testing.T) {
		port, l := freeLocalPort(t)
		defer l.Close()
		r := e.run(ctx, nil, "start", "--name", "kf-bad", "--api-port", strconv.Itoa(port))
		if r.Code != 3 || !strings.Contains(r.Stderr, "already in use") || !strings.Contains(r.Stderr, "--api-port") {
			t.Errorf("want exit 3 naming the port and --api-port: %v", r)
		}
		nothingOf(t, "kf-bad")
	})

	t.Run("a failed start removes what it created", func(t *testing.T) {
		r := e.run(ctx, nil, "start", "--name", "kf-bad", "--wait", "4s")
		if r.Code != 4 || !strings.Contains(r.Stderr, "timed out waiting") || !strings.Contains(r.Stderr, "--keep-on-failure") {
			t.Errorf("want exit 4 (timeout) with advice: %v", r)
		}
		nothingOf(t, "kf-bad")
	})

	t.Run("--keep-on-failure keeps it for debugging", func(t *testing.T) {
		e.deleteOnCleanup("kf-bad")
		r := e.run(ctx, nil, "start", "--name", "kf-bad", "--wait", "4s", "--keep-on-failure")
		if r.Code != 4 {
			t.Errorf("want exit 4: %v", r)
		}
		if left := e.owned(ctx, "kf-bad"); len(left) == 0 {
			t.Errorf("--keep-on-failure kept nothing: %v", r)
		}
		// A start over the remains says what to do.
		r = e.run(ctx, nil, "start", "--name", "kf-bad")
		if r.Code == 0 || !strings.Contains(r.Stderr, "kubeforge delete") {
			t.Errorf("start over a half-made cluster: %v", r)
		}
		e.ok(ctx, "delete", "--name", "kf-bad")
		nothingOf(t, "kf-bad")
	})
}
