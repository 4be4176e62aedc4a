package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wantFieldError checks that err is a *FieldError at path whose message contains msg.
func wantFieldError(t *testing.T, err error, path, msg string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError at %s", err, err, path)
	}
	if fe.Path != path || !strings.Contains(fe.Msg, msg) {
		t.Errorf("error %q: want path %q and a message containing %q", err, path, msg)
	}
}

func TestValidateSubnets(t *testing.T) {
	for _, tc := range []struct {
		pod, svc  string
		path, msg string // "" means valid
	}{
		{"10.244.0.0/16", "10.96.0.0/16", "", ""},
		{"10.0.0.0/8", "172.16.0.0/12", "", ""},
		{"10.244.0.0/19", "10.96.0.0/28", "", ""},
		{"10.244.0.0/20", "10.96.0.0/16", "podSubnet", "use a /8 to /19"},
		{"10.0.0.0/7", "192.168.100.0/24", "podSubnet", "use a /8 to /19"},
		{"10.244.1.0/16", "10.96.0.0/16", "podSubnet", "write 10.244.0.0/16"},
		{"10.244.0.0/16", "10.96.0.0/29", "serviceSubnet", "use a /12 to /28"},
		{"10.244.0.0/16", "10.96.0.0/11", "serviceSubnet", "at most a /12"},
		{"10.96.0.0/12", "10.96.0.0/16", "serviceSubnet", "overlaps podSubnet 10.96.0.0/12"},
		{"10.244.0.0/16", "10.244.128.0/24", "serviceSubnet", "overlaps podSubnet"},
		{"127.0.0.0/16", "10.96.0.0/16", "podSubnet", "loopback"},
		{"10.244.0.0/16", "169.254.0.0/16", "serviceSubnet", "link-local"},
		{"224.0.0.0/16", "10.96.0.0/16", "podSubnet", "multicast"},
		{"10.244.0.0", "10.96.0.0/16", "podSubnet", "not a CIDR"},
	} {
		c := Default("dev")
		c.PodSubnet, c.ServiceSubnet = tc.pod, tc.svc
		err := c.Validate()
		if tc.path == "" {
			if err != nil {
				t.Errorf("%s %s: %v", tc.pod, tc.svc, err)
			}
			continue
		}
		wantFieldError(t, err, tc.path, tc.msg)
	}
}

func TestValidateMounts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		mounts    []Mount
		path, msg string // "" means valid
	}{
		{"directory", []Mount{{HostPath: dir, ContainerPath: "/data"}}, "", ""},
		{"file read-only", []Mount{{HostPath: file, ContainerPath: "/etc/extra.conf", ReadOnly: true}}, "", ""},
		{"under /var", []Mount{{HostPath: dir, ContainerPath: "/var/local/data"}}, "", ""},
		{"relative host path", []Mount{{HostPath: "data", ContainerPath: "/data"}}, "nodes[0].mounts[0].hostPath", "not an absolute path"},
		{"missing host path", []Mount{{HostPath: filepath.Join(dir, "nope"), ContainerPath: "/data"}}, "nodes[0].mounts[0].hostPath", "does not exist on the host: create it first"},
		{"empty host path", []Mount{{ContainerPath: "/data"}}, "nodes[0].mounts[0].hostPath", "missing"},
		{"relative container path", []Mount{{HostPath: dir, ContainerPath: "data"}}, "nodes[0].mounts[0].containerPath", "not an absolute path"},
		{"unclean container path", []Mount{{HostPath: dir, ContainerPath: "/data/"}}, "nodes[0].mounts[0].containerPath", "write /data"},
		{"root", []Mount{{HostPath: dir, ContainerPath: "/"}}, "nodes[0].mounts[0].containerPath", "would hide"},
		{"kubelet dir", []Mount{{HostPath: dir, ContainerPath: "/var/lib/kubelet"}}, "nodes[0].mounts[0].containerPath", "/var/lib/kubelet"},
		{"inside kubernetes", []Mount{{HostPath: dir, ContainerPath: "/etc/kubernetes/extra"}}, "nodes[0].mounts[0].containerPath", "/etc/kubernetes"},
		{"above kubernetes", []Mount{{HostPath: dir, ContainerPath: "/etc"}}, "nodes[0].mounts[0].containerPath", "would hide"},
		{"var", []Mount{{HostPath: dir, ContainerPath: "/var"}}, "nodes[0].mounts[0].containerPath", "would hide"},
		{"twice", []Mount{{HostPath: dir, ContainerPath: "/data"}, {HostPath: file, ContainerPath: "/data"}}, "nodes[0].mounts[1].containerPath", "already mounted by nodes[0].mounts[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default("dev")
			c.Nodes[0].Mounts = tc.mounts
			err := c.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFieldError(t, err, tc.path, tc.msg)
		})
	}
}

func TestValidateExtraArgs(t *testing.T) {
	for _, tc := range []struct {
		args      map[string]map[string]string
		path, msg string
	}{
		{map[string]map[string]string{"kube-apiserver": {"audit-log-path": "-", "v": "2"}, "kubelet": {"max-pods": "50"},
			"kube-controller-manager": {"node-monitor-period": "2s"}, "kube-scheduler": {"v": ""}}, "", ""},
		{map[string]map[string]string{"kube-apiserverr": {"v": "2"}}, "extraArgs.kube-apiserverr", "use one of kube-apiserver, kube-controller-manager, kube-scheduler, kubelet"},
		{map[string]map[string]string{"etcd": {"v": "2"}}, "extraArgs.etcd", "not a component"},
		{map[string]map[string]string{"kubelet": {"--max-pods": "50"}}, "extraArgs.kubelet.--max-pods", "without dashes: max-pods"},
		{map[string]map[string]string{"kubelet": {"Max_Pods": "50"}}, "extraArgs.kubelet.Max_Pods", "not a flag name"},
		{map[string]map[string]string{"kubelet": {"feature-gates": "A=true"}}, "extraArgs.kubelet.feature-gates", "featureGates"},
		{map[string]map[string]string{"kubelet": {"v": "2\n"}}, "extraArgs.kubelet.v", "control character"},
	} {
		c := Default("dev")
		c.ExtraArgs = tc.args
		err := c.Validate()
		if tc.path == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
		wantFieldError(t, err, tc.path, tc.msg)
	}
}

func TestValidateFeatureGates(t *testing.T) {
	c := Default("dev")
	c.FeatureGates = map[string]bool{"ContextualLogging": false, "NativeHistograms": true, "AllAlpha": false}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.FeatureGatesFlag(); got != "AllAlpha=false,ContextualLogging=false,NativeHistograms=true" {
		t.Errorf("FeatureGatesFlag = %q", got)
	}
	if got := Default("dev").FeatureGatesFlag(); got != "" {
		t.Errorf("FeatureGatesFlag without gates = %q", got)
	}
	for _, tc := range []struct {
		gates     map[string]bool
		path, msg string
	}{
		{map[string]bool{"NoSuchGate": true}, "featureGates.NoSuchGate", "has no feature gate"},
		{map[string]bool{"ContextualLoging": true}, "featureGates.ContextualLoging", "did you mean ContextualLogging?"},
		{map[string]bool{"contextuallogging": true}, "featureGates.contextuallogging", "did you mean ContextualLogging?"},
		// GA and locked: setting it to its default is allowed, anything else is refused.
		{map[string]bool{"InPlacePodVerticalScaling": false}, "featureGates.InPlacePodVerticalScaling", "locked to true"},
		// Dependencies, as the components check them at start.
		{map[string]bool{"TopologyAwareWorkloadScheduling": true}, "featureGates.TopologyAwareWorkloadScheduling", "needs GenericWorkload, which is disabled"},
		{map[string]bool{"GracefulNodeShutdown": false}, "featureGates.GracefulNodeShutdown", "(enabled) needs it"},
	} {
		c.FeatureGates = tc.gates
		wantFieldError(t, c.Validate(), tc.path, tc.msg)
	}
	c.FeatureGates = map[string]bool{"InPlacePodVerticalScaling": true}
	if err := c.Validate(); err != nil {
		t.Errorf("a locked gate at its default: %v", err)
	}
	c.FeatureGates = map[string]bool{"TopologyAwareWorkloadScheduling": true, "GenericWorkload": true}
	if err := c.Validate(); err != nil {
		t.Errorf("a gate with its dependency: %v", err)
	}
}

func TestValidatePortPaths(t *testing.T) {
	c := Default("dev")
	c.APIServerPort = 8443
	c.Ports = []PortMapping{{8080, 30080}, {8443, 30081}}
	wantFieldError(t, c.Validate(), "ports[1].hostPort", "API server")
	c.Ports = []PortMapping{{8080, 30080}, {8080, 30081}}
	wantFieldError(t, c.Validate(), "ports[1].hostPort", "published twice (also ports[0])")
	c.Ports = []PortMapping{{8080, 80}}
	wantFieldError(t, c.Validate(), "ports[0].nodePort", "NodePort range 30000-32767")
	c.Ports = nil
	c.Nodes = append(c.Nodes, Node{Name: "dev-m02", Role: "wroker"})
	wantFieldError(t, c.Validate(), "nodes[1].role", `"wroker" is not one of control-plane, worker`)
	c.Nodes[1] = Node{Name: "dev-m02", Role: RoleWorker, CPUs: "lots"}
	wantFieldError(t, c.Validate(), "nodes[1].cpus", `"lots" is not a quantity`)
	c.Nodes[1] = Node{Name: "dev-m02", Role: RoleWorker, Memory: "100Mi"}
	wantFieldError(t, c.Validate(), "nodes[1].memory", "less than the 512Mi")
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"cpus", "cpu", 1}, {"role", "rloe", 1}, {"nmae", "name", 1}, {"nmae", "image", 2}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := EditDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
