package kfcli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunKeepsExitCodeOutputAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	c := &CLI{Bin: "/bin/sh", Home: filepath.Join(dir, "home"), Kubeconfig: filepath.Join(dir, "kube", "config")}
	r, err := c.Run(context.Background(), []string{"EXTRA=x"}, "-c", `echo "$KUBEFORGE_HOME $KUBECONFIG $EXTRA"; echo oops >&2; exit 3`)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Home + " " + c.Kubeconfig + " x\n"; r.Code != 3 || r.Stdout != want || r.Stderr != "oops\n" {
		t.Errorf("got %v, want exit 3, stdout %q, stderr oops", r, want)
	}
	if !strings.Contains(r.String(), "exit 3") {
		t.Errorf("String() = %q", r.String())
	}
	c.Bin = filepath.Join(dir, "missing")
	if _, err := c.Run(context.Background(), nil); err == nil {
		t.Error("a missing binary ran")
	}
}
