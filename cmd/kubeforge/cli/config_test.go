package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"kubeforge.dev/kubeforge/internal/config"
)

// run runs kubeforge with args (stdin in) and returns the exit code, stdout and stderr. Docker is
// unreachable: a start that gets past validation fails with exit 3.
func run(t *testing.T, in string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("KUBEFORGE_HOME", t.TempDir())
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	var out, errb bytes.Buffer
	code := Main(args, Streams{In: strings.NewReader(in), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigExample(t *testing.T) {
	code, out, errs := run(t, "", "config", "example")
	if code != 0 || out != config.Example {
		t.Fatalf("exit %d, stderr %s; printed:\n%s", code, errs, out)
	}
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(t, "", "config", "validate", p)
	if code != 0 || !strings.Contains(out, `valid: cluster "dev", 2 nodes (1 control plane)`) {
		t.Errorf("config validate of the example: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = run(t, config.Example, "config", "validate", "-")
	if code != 0 || !strings.HasPrefix(out, "<stdin>: valid") {
		t.Errorf("config validate -: exit %d: %s", code, out)
	}
}

func TestStartConfig(t *testing.T) {
	dir := t.TempDir()
	bad := writeConfig(t, "podEvictionTimeout: 5s\nports:\n- hostPort: 8080\n  nodePort: 80\nname: Bad_Name\n")
	nodes := writeConfig(t, "nodes:\n- role: control-plane\n  cpus: 2\n- role: wroker\n")
	good := writeConfig(t, "name: fromfile\nnodes:\n- role: control-plane\n  cpus: 2\n  mounts:\n  - hostPath: "+dir+"\n    containerPath: /data\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing file", []string{"start", "--config", filepath.Join(dir, "nope.yaml")}, 2,
			[]string{"nope.yaml: no such file", "kubeforge config example"}},
		{"bad role", []string{"start", "--config", nodes}, 2, []string{nodes + `:6: nodes[1].role: "wroker" is not one of control-plane, worker`}},
		{"validate the same", []string{"config", "validate", nodes}, 2, []string{nodes + ":6: nodes[1].role"}},
		{"file errors", []string{"start", "--config", bad}, 2, []string{bad + `:7: name: invalid cluster name "Bad_Name"`}},
		// Flags override the file: with the file's bad values replaced, validation passes and
		// start gets as far as Docker.
		{"flags override the file", []string{"start", "--config", bad, "--name", "ok", "--pod-eviction-timeout", "30s", "--port", "8080:30080"}, 3,
			[]string{"docker is not reachable"}},
		{"an overridden field is not the file's", []string{"start", "--config", bad, "--name", "ok", "--pod-eviction-timeout", "30s", "--port", "8080:30080", "--port", "8080:30081"}, 2,
			[]string{"Error: ports[1].hostPort: port 8080 is published twice"}},
		{"an unset flag does not override", []string{"start", "--config", bad, "--name", "ok", "--port", "8080:30080"}, 2,
			[]string{bad + ":3: podEvictionTimeout: 5s"}},
		{"--cpus overrides every node", []string{"start", "--config", good, "--cpus", "lots"}, 2,
			[]string{`Error: nodes[0].cpus: "lots" is not a quantity`}},
		{"the file's nodes are not the flags'", []string{"start", "--config", good, "--nodes", "3"}, 2,
			[]string{"--nodes and --control-planes cannot change the nodes " + good + " lists"}},
		{"a good file", []string{"start", "--config", good}, 3, []string{"docker is not reachable"}},
		{"validate takes one file", []string{"config", "validate"}, 2, []string{"takes one file"}},
		{"example takes nothing", []string{"config", "example", "x"}, 2, []string{"takes no arguments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
}

func TestStartSpecFromConfigAndFlags(t *testing.T) {
	// The spec start hands to the provider: the file's settings, then the flags the user set.
	p := writeConfig(t, "name: fromfile\nwait: 2m\npodEvictionTimeout: 40s\nfeatureGates: {ContextualLogging: false}\n"+
		"extraArgs: {kubelet: {max-pods: 50}}\nnodes:\n- {cpus: 2}\n- {role: worker, memory: 1Gi}\n")
	var o startFlags
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse([]string{"--config", p, "--name", "flagname", "--memory", "2Gi"}); err != nil {
		t.Fatal(err)
	}
	c, err := o.spec(fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "flagname" || c.Nodes[0].Name != "flagname" || c.Nodes[1].Name != "flagname-m02" {
		t.Errorf("--name did not rename the cluster and its nodes: %+v", c)
	}
	if c.Wait.String() != "2m0s" || c.PodEvictionTimeout.String() != "40s" {
		t.Errorf("unset flags overrode the file: wait %s, eviction %s", c.Wait, c.PodEvictionTimeout)
	}
	if c.Nodes[0].CPUs != "2" || c.Nodes[0].Memory != "2Gi" || c.Nodes[1].Memory != "2Gi" {
		t.Errorf("nodes = %+v", c.Nodes)
	}
	if c.ExtraArgs["kubelet"]["max-pods"] != "50" || c.FeatureGates["ContextualLogging"] {
		t.Errorf("extraArgs %v, featureGates %v", c.ExtraArgs, c.FeatureGates)
	}
}
