package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

const header = "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\n"

// badConfigs are files that must be refused, with what the error must say: the file, the line
// where known, the field's path and what is allowed. FuzzParse starts from them too.
var badConfigs = []struct {
	name, yaml, want string
}{
	{"wrong apiVersion", "apiVersion: kubeforge.dev/v1\nkind: Cluster\n",
		`c.yaml:1: apiVersion: "kubeforge.dev/v1" is not supported; use kubeforge.dev/v1alpha1`},
	{"apiVersion checked before fields", "bogus: 1\napiVersion: v1\nkind: Cluster\n",
		`c.yaml:2: apiVersion: "v1" is not supported; use kubeforge.dev/v1alpha1`},
	{"wrong kind", "apiVersion: kubeforge.dev/v1alpha1\nkind: Pod\n",
		`c.yaml:2: kind: "Pod" is not supported; use Cluster`},
	{"no apiVersion", "kind: Cluster\nname: dev\n", "c.yaml: apiVersion is missing: a config file starts with apiVersion: kubeforge.dev/v1alpha1"},
	{"no kind", "apiVersion: kubeforge.dev/v1alpha1\n", "c.yaml: kind is missing"},
	{"apiVersion a list", "apiVersion: [a]\nkind: Cluster\n", `c.yaml:1: apiVersion: "a list" is not supported`},
	{"empty", "  \n", "c.yaml: is empty"},
	{"a list", "- a\n- b\n", "c.yaml:1: is a list, not a mapping of fields"},
	{"a scalar", "hello\n", `c.yaml:1: is the value "hello", not a mapping`},
	{"two documents", header + "---\n" + header, "c.yaml:3: holds more than one YAML document"},
	{"malformed YAML", header + "nodes:\n  - role: worker\n   cpus: 2\n", "c.yaml:4: not valid YAML"},
	{"tab indentation", header + "nodes:\n\t- role: worker\n", "c.yaml:4: not valid YAML: found character that cannot start any token"},
	{"duplicate key", header + "name: a\nname: b\n", `c.yaml:4: the key "name" is given twice`},
	{"duplicate node key", header + "nodes:\n- role: control-plane\n  cpus: 1\n  cpus: 2\n", `c.yaml:6: the key "cpus" is given twice`},
	{"unknown top-level field", header + "nmae: dev\n", `c.yaml:3: nmae: unknown field; did you mean "name"?`},
	{"field in the wrong case", header + "podsubnet: 10.0.0.0/16\n", `c.yaml:3: podsubnet: unknown field; did you mean "podSubnet"?`},
	{"unsupported Kubernetes version", header + "kubernetesVersion: \"1.20\"\n", "c.yaml:3: kubernetesVersion: Kubernetes 1.20 is not supported: use one of " + strings.Join(versions.Names(), ", ")},
	{"unknown field, no close name", header + "networking: {}\n", "c.yaml:3: networking: unknown field; allowed: apiVersion, kind, name, kubernetesVersion, image"},
	{"unknown node field", header + "nodes:\n- role: control-plane\n  cpu: 2\n", `c.yaml:5: nodes[0].cpu: unknown field; did you mean "cpus"?`},
	{"node name", header + "nodes:\n- role: control-plane\n- name: w1\n", "c.yaml:5: nodes[1].name: unknown field; nodes are named after the cluster"},
	{"unknown mount field", header + "nodes:\n- mounts:\n  - hostPath: /tmp\n    containerPath: /data\n    readonly: true\n",
		`c.yaml:7: nodes[0].mounts[0].readonly: unknown field; did you mean "readOnly"?`},
	{"bad role", header + "nodes:\n- role: control-plane\n- role: wroker\n",
		`c.yaml:5: nodes[1].role: "wroker" is not one of control-plane, worker`},
	{"first node a worker", header + "nodes:\n- role: worker\n- role: control-plane\n",
		`c.yaml:4: nodes[0].role: the first node must be control-plane, got "worker"`},
	{"cpus lots", header + "nodes:\n- cpus: lots\n", `c.yaml:4: nodes[0].cpus: "lots" is not a quantity (e.g. 2, 1.5 or 1500m)`},
	{"cpus a list", header + "nodes:\n- cpus: [1]\n", "c.yaml:4: nodes[0].cpus: got a list, want a string, a number or a boolean"},
	{"memory too small", header + "nodes:\n- memory: 100Mi\n", "c.yaml:4: nodes[0].memory: 100Mi is less than the 512Mi a node needs"},
	{"too many nodes", header + "nodes:\n" + strings.Repeat("- {}\n", 21), "c.yaml:3: nodes: 21 nodes is more than kubeforge supports (20)"},
	{"hostPort 0", header + "ports:\n- hostPort: 0\n  nodePort: 30080\n", "c.yaml:4: ports[0].hostPort: 0 is not a port"},
	{"nodePort 80", header + "ports:\n- hostPort: 8080\n  nodePort: 80\n", "c.yaml:5: ports[0].nodePort: 80 is not in the NodePort range 30000-32767"},
	{"duplicate hostPort", header + "ports:\n- hostPort: 8080\n  nodePort: 30080\n- hostPort: 8080\n  nodePort: 30081\n",
		"c.yaml:6: ports[1].hostPort: port 8080 is published twice (also ports[0])"},
	{"hostPort a string", header + "ports:\n- hostPort: 8080\n  nodePort: 30080\n- hostPort: http\n  nodePort: 30081\n",
		"c.yaml:6: ports[1].hostPort: got a string, want a whole number"},
	{"ports a mapping", header + "ports:\n  hostPort: 8080\n", "c.yaml:3: ports: got a mapping, want a list"},
	{"apiServerPort a string", header + "apiServerPort: six\n", "c.yaml:3: apiServerPort: got a string, want a whole number"},
	{"apiServerPort too big", header + "apiServerPort: 70000\n", "c.yaml:3: apiServerPort: 70000 is not a port"},
	{"relative mount path", header + "nodes:\n- mounts:\n  - hostPath: data\n    containerPath: /data\n",
		`c.yaml:5: nodes[0].mounts[0].hostPath: "data" is not an absolute path`},
	{"nonexistent hostPath", header + "nodes:\n- mounts:\n  - hostPath: /nonexistent/kubeforge-test\n    containerPath: /data\n",
		"c.yaml:5: nodes[0].mounts[0].hostPath: /nonexistent/kubeforge-test does not exist on the host: create it first (mkdir -p /nonexistent/kubeforge-test)"},
	{"mount over the kubelet", header + "nodes:\n- mounts:\n  - hostPath: /tmp\n    containerPath: /var/lib/kubelet/pods\n",
		"c.yaml:6: nodes[0].mounts[0].containerPath: /var/lib/kubelet/pods would hide the node's own /var/lib/kubelet"},
	{"overlapping CIDRs", header + "podSubnet: 10.96.0.0/12\nserviceSubnet: 10.96.0.0/16\n",
		"c.yaml:4: serviceSubnet: 10.96.0.0/16 overlaps podSubnet 10.96.0.0/12"},
	{"pod subnet too small", header + "podSubnet: 10.244.0.0/24\n", "c.yaml:3: podSubnet: 10.244.0.0/24 is a /24: use a /8 to /19"},
	{"IPv6 service subnet", header + "serviceSubnet: fd00::/112\n", "c.yaml:3: serviceSubnet: fd00::/112 is not IPv4"},
	{"podEvictionTimeout in words", header + "podEvictionTimeout: 5 minutes\n",
		`c.yaml:3: podEvictionTimeout: "5 minutes" is not a duration: write a number and a unit, e.g. 30s, 5m or 1h30m`},
	{"podEvictionTimeout too short", header + "podEvictionTimeout: 5s\n", "c.yaml:3: podEvictionTimeout: 5s: use between 20s and 1h"},
	{"wait without unit", header + "wait: 300\n", `c.yaml:3: wait: "300" is not a duration`},
	{"wait zero", header + "wait: 0s\n", "c.yaml:3: wait: 0s: use a positive duration such as 5m"},
	{"bad name", header + "name: Dev_1\n", `c.yaml:3: name: invalid cluster name "Dev_1"`},
	{"unknown feature gate", header + "featureGates:\n  ContextualLoging: true\n", "c.yaml:4: featureGates.ContextualLoging: Kubernetes " + versions.Default().Kubernetes + ` has no feature gate "ContextualLoging"; did you mean ContextualLogging?`},
	{"feature gate not a boolean", header + "featureGates:\n  ContextualLogging: maybe\n", `c.yaml:4: featureGates.ContextualLogging: "maybe" is not true or false`},
	{"locked feature gate", header + "featureGates:\n  InPlacePodVerticalScaling: false\n", "c.yaml:4: featureGates.InPlacePodVerticalScaling: is locked to true"},
	{"unknown component", header + "extraArgs:\n  kube-apiservr:\n    v: 2\n", `c.yaml:4: extraArgs.kube-apiservr: "kube-apiservr" is not a component kubeforge passes flags to; use one of kube-apiserver, kube-controller-manager, kube-scheduler, kubelet`},
	{"flag with dashes", header + "extraArgs:\n  kubelet:\n    --max-pods: 50\n", "c.yaml:5: extraArgs.kubelet.--max-pods: write the flag's name without dashes: max-pods"},
	{"flag value a list", header + "extraArgs:\n  kubelet:\n    max-pods: [50]\n", "c.yaml:5: extraArgs.kubelet.max-pods: got a list"},
	{"flag without value", header + "extraArgs:\n  kubelet:\n    max-pods:\n", `c.yaml:5: extraArgs.kubelet.max-pods: has no value (write "" for an empty one)`},
	{"registry not a boolean", header + "registry: yes please\n", `c.yaml:3: registry: "yes please" is not true or false`},
	{"feature gates via extra args", header + "extraArgs:\n  kube-apiserver:\n    feature-gates: A=true\n", "c.yaml:5: extraArgs.kube-apiserver.feature-gates: set feature gates in featureGates"},
}

func TestBadConfigs(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml), "c.yaml")
			if err == nil {
				_, err = f.ToSpec()
			}
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  %s", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %v is a %T, not a *config.Error", err, err)
			}
		})
	}
}

func TestExample(t *testing.T) {
	f, err := Parse([]byte(Example), "example.yaml")
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	c, err := f.ToSpec()
	if err != nil {
		t.Fatalf("the example is not a valid cluster: %v", err)
	}
	if c.Name != "dev" || c.Wait != 5*time.Minute || c.PodEvictionTimeout != 30*time.Second || c.APIServerPort != 0 || c.Image != "" {
		t.Errorf("name %q wait %s eviction %s port %d image %q", c.Name, c.Wait, c.PodEvictionTimeout, c.APIServerPort, c.Image)
	}
	if c.PodSubnet != "10.244.0.0/16" || c.ServiceSubnet != "10.96.0.0/16" {
		t.Errorf("subnets %s %s", c.PodSubnet, c.ServiceSubnet)
	}
	if want := map[string]bool{"InPlacePodVerticalScalingExclusiveCPUs": true}; !reflect.DeepEqual(c.FeatureGates, want) {
		t.Errorf("featureGates = %v", c.FeatureGates)
	}
	wantArgs := map[string]map[string]string{
		"kube-apiserver":          {"event-ttl": "2h", "max-requests-inflight": "800"},
		"kube-controller-manager": {"node-monitor-period": "2s"},
		"kube-scheduler":          {"v": "2"},
		"kubelet":                 {"max-pods": "60"},
	}
	if !reflect.DeepEqual(c.ExtraArgs, wantArgs) {
		t.Errorf("extraArgs = %v", c.ExtraArgs)
	}
	if !c.Registry || c.RegistryPort != 0 {
		t.Errorf("registry %t, port %d: want the registry asked for, its port left to start", c.Registry, c.RegistryPort)
	}
	if c.Ingress == nil || c.Ingress.HTTP != 8000 || c.Ingress.HTTPS != 8443 {
		t.Errorf("ingress = %+v, want ports 8000 and 8443", c.Ingress)
	}
	if want := []spec.PortMapping{{HostPort: 8080, NodePort: 30080}}; !reflect.DeepEqual(c.Ports, want) {
		t.Errorf("ports = %v", c.Ports)
	}
	wantNodes := []spec.Node{
		{Name: "dev", Role: spec.RoleControlPlane, CPUs: "2", Memory: "2Gi"},
		{Name: "dev-m02", Role: spec.RoleWorker, CPUs: "1", Memory: "1536Mi",
			Mounts: []spec.Mount{{HostPath: "/tmp", ContainerPath: "/mnt/host-tmp", ReadOnly: true}}},
	}
	if !reflect.DeepEqual(c.Nodes, wantNodes) {
		t.Errorf("nodes = %+v\nwant %+v", c.Nodes, wantNodes)
	}
	// Every field of the format appears in the example.
	for _, field := range append(jsonFields(reflect.TypeOf(Cluster{})), append(jsonFields(reflect.TypeOf(Node{})), append(jsonFields(reflect.TypeOf(Mount{})), jsonFields(reflect.TypeOf(Ingress{}))...)...)...) {
		if !strings.Contains(Example, field+":") {
			t.Errorf("the example does not show %s", field)
		}
	}
}

func TestMinimal(t *testing.T) {
	f, err := Parse([]byte(header), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.ToSpec()
	if err != nil {
		t.Fatal(err)
	}
	if want := spec.Default(""); !reflect.DeepEqual(c, want) {
		t.Errorf("a file with only apiVersion and kind = %+v, want the default %+v", c, want)
	}
}

func TestDefaults(t *testing.T) {
	f, err := Parse([]byte(header+`name: x
nodes: [{}, {cpus: "1.5"}, {role: control-plane}]
extraArgs:
  kubelet:
    max-pods: 50
    v: ""
    read-only-port: 0
    fail-swap-on: false
featureGates: {ContextualLogging: "false"}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.ToSpec()
	if err != nil {
		t.Fatal(err)
	}
	want := []spec.Node{{Name: "x", Role: spec.RoleControlPlane}, {Name: "x-m02", Role: spec.RoleWorker, CPUs: "1.5"}, {Name: "x-m03", Role: spec.RoleControlPlane}}
	if !reflect.DeepEqual(c.Nodes, want) {
		t.Errorf("nodes = %+v, want %+v", c.Nodes, want)
	}
	if got := c.ExtraArgs["kubelet"]; !reflect.DeepEqual(got, map[string]string{"max-pods": "50", "v": "", "read-only-port": "0", "fail-swap-on": "false"}) {
		t.Errorf("numbers and booleans as flag values: %v", got)
	}
	if c.FeatureGates["ContextualLogging"] {
		t.Errorf(`featureGates "false" = true`)
	}
}

func TestExplain(t *testing.T) {
	f, err := Parse([]byte(header+"ports:\n- hostPort: 8080\n  nodePort: 30080\nextraArgs:\n  kubelet:\n    node.labels: a\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fe := &spec.FieldError{Path: "ports[0].nodePort", Msg: "bad"}
	if got := f.Explain(fe, nil).Error(); got != "c.yaml:5: ports[0].nodePort: bad" {
		t.Errorf("Explain = %q", got)
	}
	// A field a flag set is not the file's fault.
	flags := func(p string) bool { return strings.HasPrefix(p, "ports") }
	if got := f.Explain(fe, flags); got != error(fe) {
		t.Errorf("Explain of an overridden field = %v", got)
	}
	// A field the file leaves out is shown without a line.
	if got := f.Explain(&spec.FieldError{Path: "podSubnet", Msg: "bad"}, nil).Error(); got != "c.yaml: podSubnet: bad" {
		t.Errorf("Explain of a field not in the file = %q", got)
	}
	// One under an item the file has: the item's line.
	if got := f.Explain(&spec.FieldError{Path: "ports[0].hostProt", Msg: "bad"}, nil).Error(); got != "c.yaml:4: ports[0].hostProt: bad" {
		t.Errorf("Explain of a field under an item = %q", got)
	}
	// Keys may hold dots.
	if got := f.Explain(&spec.FieldError{Path: "extraArgs.kubelet.node.labels", Msg: "bad"}, nil).Error(); got != "c.yaml:8: extraArgs.kubelet.node.labels: bad" {
		t.Errorf("Explain with a dotted key = %q", got)
	}
	plain := errors.New("other")
	if f.Explain(plain, nil) != plain {
		t.Errorf("Explain changed a non-field error")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cluster.yaml")
	_, err := Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), p+": no such file") || !strings.Contains(err.Error(), "kubeforge config example") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(p, []byte(header+"name: fromfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p, nil)
	if err != nil || f.Cluster.Name != "fromfile" || f.Name != p {
		t.Errorf("Load = %+v, %v", f, err)
	}
	f, err = Load("-", strings.NewReader(header+"name: piped\n"))
	if err != nil || f.Cluster.Name != "piped" {
		t.Errorf("Load(-) = %+v, %v", f, err)
	}
	if _, err := Load("-", strings.NewReader(header+"nodes: 3\n")); err == nil || !strings.HasPrefix(err.Error(), "<stdin>:3: nodes:") {
		t.Errorf("Load(-) error = %v", err)
	}
	big := header + "# " + strings.Repeat("x", MaxSize) + "\n"
	if _, err := Parse([]byte(big), "big.yaml"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	// Aliases make the document far larger than the file; errors must still come back quickly.
	y := header + "podSubnet: &a [x, x, x, x, x, x, x, x, x, x]\n" +
		"serviceSubnet: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"image: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"name: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
		"nodes: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	start := time.Now()
	_, err := Parse([]byte(y), "c.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	t.Log(err)
}
