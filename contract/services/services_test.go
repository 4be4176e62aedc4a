package services

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sampleConfig = `{
  "stopGracePeriod": "15s",
  "services": [
    {"name": "kubelet", "path": "/usr/local/bin/kubeforge-node", "args": ["kubelet", "--v=2"],
     "after": ["containerd", "import-images"], "env": {"GODEBUG": "x=1"}},
    {"name": "containerd", "path": "/usr/local/bin/containerd", "readyPath": "/run/containerd/containerd.sock",
     "readyTimeout": "30s"},
    {"name": "import-images", "path": "/bin/sh", "args": ["-c", "true"], "after": ["containerd"],
     "oneshot": true, "doneMarker": "/var/lib/kubeforge/images-imported", "doneKey": "/kubeforge/images/*.tar"},
    {"name": "routes", "path": "/usr/local/bin/kubeforge-node", "restart": "on-failure"}
  ]
}`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.StopGracePeriod.D() != 15*time.Second {
		t.Errorf("stopGracePeriod = %v", c.StopGracePeriod.D())
	}
	k := c.Service("kubelet")
	if k == nil || k.Restart != RestartAlways || k.ReadyTimeout.D() != DefaultReadyTimeout || k.Env["GODEBUG"] != "x=1" {
		t.Errorf("kubelet = %+v", k)
	}
	if got := c.Service("containerd").ReadyTimeout.D(); got != 30*time.Second {
		t.Errorf("containerd readyTimeout = %v", got)
	}
	if got := c.Service("import-images").Restart; got != RestartOnFailure {
		t.Errorf("oneshot default restart = %q, want on-failure", got)
	}
	if got := c.Service("routes").Restart; got != RestartOnFailure {
		t.Errorf("explicit restart = %q", got)
	}
	levels, err := c.Levels()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"containerd", "routes"}, {"import-images"}, {"kubelet"}}
	if !reflect.DeepEqual(levels, want) {
		t.Errorf("levels = %v, want %v", levels, want)
	}
	deps := c.Dependents()
	if !reflect.DeepEqual(deps["containerd"], []string{"import-images", "kubelet"}) {
		t.Errorf("dependents of containerd = %v", deps["containerd"])
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c, err := ParseConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"stopGracePeriod": "15s"`) || !strings.Contains(string(b), `"readyTimeout": "30s"`) {
		t.Errorf("durations should be written as strings:\n%s", b)
	}
	c2, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, c2) {
		t.Errorf("round trip changed the config:\n%+v\n%+v", c, c2)
	}
}

func TestLoadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "services.json")
	if _, err := LoadConfig(p); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(p, []byte(sampleConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err != nil {
		t.Fatal(err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	for in, want := range map[string]time.Duration{`"1m30s"`: 90 * time.Second, `2.5`: 2500 * time.Millisecond, `"250ms"`: 250 * time.Millisecond} {
		if err := json.Unmarshal([]byte(in), &d); err != nil || d.D() != want {
			t.Errorf("%s -> %v, %v; want %v", in, d.D(), err, want)
		}
	}
	for _, in := range []string{`"soon"`, `true`} {
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cases := map[string]struct{ json, want string }{
		"unknown field":   {`{"services":[{"name":"a","path":"/a","readyFile":"/x"}]}`, `unknown field "readyFile"`},
		"trailing data":   {`{"services":[]} {}`, "trailing data"},
		"bad name":        {`{"services":[{"name":"a b","path":"/a"}]}`, "name must match"},
		"duplicate":       {`{"services":[{"name":"a","path":"/a"},{"name":"a","path":"/b"}]}`, "duplicate name"},
		"relative path":   {`{"services":[{"name":"a","path":"a"}]}`, "must be absolute"},
		"bad restart":     {`{"services":[{"name":"a","path":"/a","restart":"sometimes"}]}`, `restart "sometimes"`},
		"unknown dep":     {`{"services":[{"name":"a","path":"/a","after":["b"]}]}`, `unknown service "b"`},
		"self dep":        {`{"services":[{"name":"a","path":"/a","after":["a"]}]}`, "depends on itself"},
		"cycle":           {`{"services":[{"name":"a","path":"/a","after":["c"]},{"name":"b","path":"/b","after":["a"]},{"name":"c","path":"/c","after":["b"]}]}`, "dependency cycle: a -> c -> b -> a"},
		"marker long-run": {`{"services":[{"name":"a","path":"/a","doneMarker":"/m"}]}`, "oneshot services only"},
		"key no marker":   {`{"services":[{"name":"a","path":"/a","oneshot":true,"doneKey":"/x/*"}]}`, "doneKey needs a doneMarker"},
		"bad glob":        {`{"services":[{"name":"a","path":"/a","oneshot":true,"doneMarker":"/m","doneKey":"/x/["}]}`, "syntax error in pattern"},
		"oneshot ready":   {`{"services":[{"name":"a","path":"/a","oneshot":true,"readyPath":"/r"}]}`, "readyPath is not used"},
		"relative ready":  {`{"services":[{"name":"a","path":"/a","readyPath":"r"}]}`, "must be an absolute path"},
		"bad env":         {`{"services":[{"name":"a","path":"/a","env":{"A=B":"c"}}]}`, "bad environment variable"},
		"negative grace":  {`{"stopGracePeriod":"-1s","services":[]}`, "must not be negative"},
		"bad duration":    {`{"stopGracePeriod":"soon","services":[]}`, "bad duration"},
	}
	for name, c := range cases {
		_, err := ParseConfig([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, c.want)
		}
	}
}
