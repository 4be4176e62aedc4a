package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Usage errors are caught before anything touches Docker or the disk.
func TestUsageErrors(t *testing.T) {
	t.Setenv("KUBEFORGE_HOME", t.TempDir())
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"start", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"start", "--name", "Bad_Name"}, 2, "--name"},
		{[]string{"start", "--name", ""}, 2, "--name"},
		{[]string{"start", "--wait", "0s"}, 2, "--wait"},
		{[]string{"start", "--timeout", "-1m"}, 2, "--wait must be a positive duration"},
		{[]string{"start", "--api-port", "70000"}, 2, "--api-port"},
		{[]string{"start", "extra"}, 2, "takes no arguments"},
		{[]string{"delete", "--all", "--name", "x"}, 2, "either --name or --all"},
		{[]string{"delete", "--wait", "0"}, 2, "--wait must be a positive duration"},
		{[]string{"stop", "--wait", "-1m"}, 2, "--wait must be a positive duration"},
		{[]string{"node", "stop", "x", "--wait", "0"}, 2, "--wait must be a positive duration"},
		{[]string{"node", "delete", "x", "--wait", "0"}, 2, "--wait must be a positive duration"},
		{[]string{"image", "load", "x", "--wait", "0"}, 2, "--wait must be a positive duration"},
		{[]string{"status", "-o", "yaml"}, 2, "text or json"},
		{[]string{"list", "-o", "wide"}, 2, "text or json"},
		{[]string{"nosuch"}, 2, "unknown command"},
		{[]string{"image", "load"}, 2, "at least one image"},
		{[]string{"kubeconfig", "--name", "missing"}, 2, "does not exist"},
		{[]string{"ssh", "a", "b"}, 2, "one node name"},
		{[]string{"registry", "create", "--port", "0"}, 2, "--port must be between 1 and 65535"},
		{[]string{"registry", "list", "-o", "yaml"}, 2, "text or json"},
		{[]string{"registry", "delete", "x"}, 2, "takes no arguments"},
		{[]string{"start", "--registry", "--driver", "kvm"}, 2, "Docker-only"},
		{[]string{"trace", "--web", "-o", "json"}, 2, "-o json is for the terminal"},
		{[]string{"trace", "--web-port", "8080"}, 2, "add --web"},
		{[]string{"trace", "--web", "--web-port", "70000"}, 2, "--web-port must be between 0"},
		// Docker unreachable: an environment error with advice.
		{[]string{"status"}, 3, "docker is not reachable"},
		{[]string{"registry", "list"}, 3, "docker is not reachable"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(c.args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.msg) {
				t.Errorf("stderr lacks %q:\n%s", c.msg, errb.String())
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"start", "--help"}, {"version"}} {
		var out, errb bytes.Buffer
		if code := Main(args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb}); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errb.String())
		}
		if out.Len() == 0 {
			t.Errorf("%v printed nothing", args)
		}
	}
}

// list needs Docker only for clusters made on it.
func TestListWithoutDocker(t *testing.T) {
	home := t.TempDir()
	t.Setenv("KUBEFORGE_HOME", home)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	list := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := Main([]string{"list"}, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	if code, out, errb := list(); code != 0 || !strings.Contains(out, "No clusters") {
		t.Errorf("list with no clusters and no Docker: exit %d\n%s%s", code, out, errb)
	}
	if err := os.MkdirAll(filepath.Join(home, "dock"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "dock", "cluster.json"), []byte(`{"spec":{"name":"dock","driver":"docker"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errb := list(); code != 3 || !strings.Contains(errb, "docker is not reachable") {
		t.Errorf("list with a Docker cluster and no Docker: exit %d\n%s", code, errb)
	}
	// A VM cluster whose libvirt does not answer either: both are listed (state Unknown, with
	// the reason in JSON), then the error exits non-zero.
	if err := os.MkdirAll(filepath.Join(home, "vms"), 0o700); err != nil {
		t.Fatal(err)
	}
	rec := `{"spec":{"name":"vms","driver":"kvm","libvirtURI":"qemu+unix:///system?socket=/nonexistent/libvirt.sock"}}`
	if err := os.WriteFile(filepath.Join(home, "vms", "cluster.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errb := list()
	if code != 3 || !strings.Contains(out, "dock") || !strings.Contains(out, "vms") || !strings.Contains(out, "Unknown") {
		t.Errorf("list with two unreachable drivers: exit %d\n%s%s", code, out, errb)
	}
	var outb, errbuf bytes.Buffer
	code = Main([]string{"list", "-o", "json"}, Streams{In: strings.NewReader(""), Out: &outb, Err: &errbuf})
	var items []struct{ Name, Driver, State, Error string }
	if err := json.Unmarshal(outb.Bytes(), &items); err != nil || code != 3 || len(items) != 2 ||
		items[0].Name != "dock" || items[1].Name != "vms" || items[1].Driver != "kvm" || items[1].State != "Unknown" || items[1].Error == "" {
		t.Errorf("list -o json with two unreachable drivers: exit %d, %v\n%s%s", code, err, outb.String(), errbuf.String())
	}
	// delete --all tries every cluster, deletes nothing it cannot reach, and says which.
	outb.Reset()
	errbuf.Reset()
	code = Main([]string{"delete", "--all"}, Streams{In: strings.NewReader(""), Out: &outb, Err: &errbuf})
	if code == 0 || !strings.Contains(errbuf.String(), "cluster dock was not deleted") || !strings.Contains(errbuf.String(), "cluster vms was not deleted") {
		t.Errorf("delete --all with two unreachable drivers: exit %d\n%s%s", code, outb.String(), errbuf.String())
	}
}

// Shell completion: a script per shell, cluster names from the state directory.
func TestCompletion(t *testing.T) {
	home := t.TempDir()
	t.Setenv("KUBEFORGE_HOME", home)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	for _, n := range []string{"dev", "ci"} {
		if err := os.MkdirAll(filepath.Join(home, n), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, n, "cluster.json"), []byte(`{"spec":{"name":"`+n+`"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		return code, out.String() + errb.String()
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if code, out := run("completion", sh); code != 0 || !strings.Contains(out, "kubeforge") {
			t.Errorf("completion %s: exit %d\n%.300s", sh, code, out)
		}
	}
	if code, out := run("completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d\n%s", code, out)
	}
	code, out := run("__complete", "stop", "--name", "")
	if code != 0 || !strings.Contains(out, "ci\ndev\n") {
		t.Errorf("completing --name: exit %d\n%s", code, out)
	}
}
