// Package kfcli runs the kubeforge CLI (bin/kubeforge, built by `make`) for the test tiers: each
// test with a state directory and kubeconfig of its own, each run's exit code and output kept.
package kfcli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// CLI is one test's kubeforge: the binary, and the KUBEFORGE_HOME and KUBECONFIG it runs with.
type CLI struct {
	Bin, Home, Kubeconfig string
}

// New finds bin/kubeforge from a test package two levels below the repository (test/<tier>)
// and gives it a home and a kubeconfig below dir. makeTarget names what builds it, for the error.
func New(dir, makeTarget string) (*CLI, error) {
	bin, err := filepath.Abs("../../bin/kubeforge")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make` first (%s does)", bin, makeTarget)
	}
	return &CLI{Bin: bin, Home: filepath.Join(dir, "home"), Kubeconfig: filepath.Join(dir, "kube", "config")}, nil
}

// Result is one run: its exit code and output.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Run runs kubeforge with args and extra environment variables (KEY=VALUE, after the CLI's own).
// The error is only for a kubeforge that could not run; its exit code is in the Result.
func (c *CLI) Run(ctx context.Context, extraEnv []string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBEFORGE_HOME="+c.Home, "KUBECONFIG="+c.Kubeconfig), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("running kubeforge %v: %w", args, err)
	}
	return r, nil
}
