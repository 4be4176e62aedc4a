package spec

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/internal/versions"
)

func TestDefault(t *testing.T) {
	c := Default("test")
	if err := c.Validate(); err != nil {
		t.Fatalf("Default(\"test\").Validate() = %v", err)
	}
	if c.Name != "test" || c.Driver != "docker" || c.KubernetesVersion != versions.Default().Kubernetes {
		t.Errorf("Default = %+v", c)
	}
	if want := []Node{{Name: "test", Role: RoleControlPlane}}; !reflect.DeepEqual(c.Nodes, want) {
		t.Errorf("Nodes = %+v, want %+v", c.Nodes, want)
	}
	if c.PodSubnet != "10.244.0.0/16" || c.ServiceSubnet != "10.96.0.0/16" || c.DNSDomain != "cluster.local" {
		t.Errorf("networking = %s %s %s", c.PodSubnet, c.ServiceSubnet, c.DNSDomain)
	}
	if c.APIServerPort != 0 {
		t.Errorf("APIServerPort = %d, want 0 (pick a free one)", c.APIServerPort)
	}
	if c.Wait <= 0 {
		t.Errorf("Wait = %v, want > 0", c.Wait)
	}

	d := Default("")
	if d.Name != DefaultName || d.Nodes[0].Name != DefaultName {
		t.Errorf("Default(\"\") named %q / node %q, want %q", d.Name, d.Nodes[0].Name, DefaultName)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Default(\"\").Validate() = %v", err)
	}

	// Subnets must not overlap: pod and service traffic are routed differently.
	pod, svc := netip.MustParsePrefix(c.PodSubnet), netip.MustParsePrefix(c.ServiceSubnet)
	if pod.Overlaps(svc) {
		t.Errorf("default pod subnet %s overlaps service subnet %s", pod, svc)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a := Default("a")
	a.Nodes[0].Name = "changed"
	if b := Default("a"); b.Nodes[0].Name != "a" {
		t.Errorf("Default shares its Nodes slice between calls")
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"kubeforge", true},
		{"a", true},
		{"0", true},
		{"dev-1", true},
		{"a-b-c", true},
		{"1abc", true},
		{strings.Repeat("a", 50), true},
		{strings.Repeat("a", 51), false},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Dev", false},
		{"DEV", false},
		{"my_cluster", false},
		{"-dev", false},
		{"dev-", false},
		{"dev.local", false},
		{"dev cluster", false},
		{"dév", false},
		{"dev/1", false},
		{"dev\n", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "DNS label") {
			t.Errorf("ValidateName(%q) error %q does not say what a valid name is", tc.name, err)
		}
	}
}

func TestValidateNameLeavesRoomForNodeSuffix(t *testing.T) {
	// The longest valid cluster name must still give valid node names (DNS labels, <= 63).
	long := strings.Repeat("a", 50)
	for i := 0; i < 100; i++ {
		n := NodeName(long, i)
		if len(n) > 63 {
			t.Fatalf("NodeName(%d) = %q is %d bytes, over a DNS label's 63", i, n, len(n))
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Cluster)
		errHas string // "" means valid
	}{
		{"default", func(*Cluster) {}, ""},
		{"worker nodes", func(c *Cluster) {
			c.Nodes = append(c.Nodes, Node{Name: NodeName(c.Name, 1), Role: RoleWorker}, Node{Name: NodeName(c.Name, 2), Role: RoleWorker})
		}, ""},
		{"second control plane", func(c *Cluster) {
			c.Nodes = append(c.Nodes, Node{Name: NodeName(c.Name, 1), Role: RoleControlPlane})
		}, ""},
		{"port 65535", func(c *Cluster) { c.APIServerPort = 65535 }, ""},
		{"port 6443", func(c *Cluster) { c.APIServerPort = 6443 }, ""},
		{"other subnets", func(c *Cluster) { c.PodSubnet, c.ServiceSubnet = "172.16.0.0/12", "10.0.0.0/24" }, ""},

		{"kvm driver", func(c *Cluster) { c.Driver, c.Accel, c.LibvirtURI = DriverKVM, "tcg", "qemu:///system" }, ""},
		{"unknown driver", func(c *Cluster) { c.Driver = "podman" }, "use --driver docker"},
		{"accel without kvm", func(c *Cluster) { c.Accel = "tcg" }, "--driver kvm"},
		{"bad accel", func(c *Cluster) { c.Driver, c.Accel = DriverKVM, "hvf" }, "not one of kvm"},
		{"kvm with ports", func(c *Cluster) { c.Driver, c.Ports = DriverKVM, []PortMapping{{HostPort: 8080, NodePort: 30080}} }, "--port is not supported"},
		{"kvm with mounts", func(c *Cluster) {
			c.Driver, c.Nodes[0].Mounts = DriverKVM, []Mount{{HostPath: "/a", ContainerPath: "/b"}}
		}, "nodes[0].mounts"},
		{"bad name", func(c *Cluster) { c.Name = "Bad_Name" }, "invalid cluster name"},
		{"no nodes", func(c *Cluster) { c.Nodes = nil }, "no nodes"},
		{"first node a worker", func(c *Cluster) { c.Nodes[0].Role = RoleWorker }, "nodes[0].role"},
		{"unknown role", func(c *Cluster) { c.Nodes = append(c.Nodes, Node{Name: "x", Role: "master"}) }, "nodes[1].role"},
		{"empty role", func(c *Cluster) { c.Nodes = append(c.Nodes, Node{Name: "x"}) }, "nodes[1].role"},
		{"pod subnet not a CIDR", func(c *Cluster) { c.PodSubnet = "10.244.0.0" }, "podSubnet"},
		{"pod subnet garbage", func(c *Cluster) { c.PodSubnet = "banana" }, "podSubnet"},
		{"pod subnet empty", func(c *Cluster) { c.PodSubnet = "" }, "podSubnet"},
		{"pod subnet bad length", func(c *Cluster) { c.PodSubnet = "10.244.0.0/33" }, "podSubnet"},
		{"ipv6 pod subnet", func(c *Cluster) { c.PodSubnet = "fd00:10:244::/56" }, "podSubnet: fd00:10:244::/56 is not IPv4"},
		{"ipv6 service subnet", func(c *Cluster) { c.ServiceSubnet = "fd00:10:96::/112" }, "serviceSubnet: fd00:10:96::/112 is not IPv4"},
		{"service subnet bad octet", func(c *Cluster) { c.ServiceSubnet = "10.960.0.0/16" }, "serviceSubnet"},
		{"service subnet empty", func(c *Cluster) { c.ServiceSubnet = "" }, "serviceSubnet"},
		{"negative port", func(c *Cluster) { c.APIServerPort = -1 }, "apiServerPort"},
		{"port too large", func(c *Cluster) { c.APIServerPort = 65536 }, "apiServerPort"},
		{"unsupported driver", func(c *Cluster) { c.Driver = "podman" }, "driver"},
		{"empty driver", func(c *Cluster) { c.Driver = "" }, "driver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default("test")
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.errHas == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.errHas != "" && err == nil:
				t.Errorf("Validate() = nil, want an error mentioning %q", tc.errHas)
			case tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas):
				t.Errorf("Validate() = %q, want it to mention %q", err, tc.errHas)
			}
		})
	}
}

func TestNodeName(t *testing.T) {
	for _, tc := range []struct {
		i    int
		want string
	}{
		{0, "c"}, {1, "c-m02"}, {2, "c-m03"}, {8, "c-m09"}, {9, "c-m10"}, {99, "c-m100"},
	} {
		if got := NodeName("c", tc.i); got != tc.want {
			t.Errorf("NodeName(c, %d) = %q, want %q", tc.i, got, tc.want)
		}
	}
	// Names of one cluster's nodes are distinct and are themselves valid names.
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		n := NodeName("dev", i)
		if seen[n] {
			t.Errorf("NodeName(dev, %d) = %q repeats", i, n)
		}
		seen[n] = true
		if err := ValidateName(n); err != nil {
			t.Errorf("NodeName(dev, %d) = %q is not a valid DNS label: %v", i, n, err)
		}
	}
}

func TestServiceIP(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		n      int
		want   string // "" means error
	}{
		{"10.96.0.0/16", 0, "10.96.0.0"},
		{"10.96.0.0/16", 1, "10.96.0.1"},
		{"10.96.0.0/16", 10, "10.96.0.10"},
		{"10.96.0.0/16", 256, "10.96.1.0"},
		{"10.96.0.0/16", 65535, "10.96.255.255"},
		{"10.96.0.0/16", 65536, ""},
		{"10.96.5.7/16", 10, "10.96.0.10"}, // host bits are masked off
		{"172.20.0.0/28", 10, "172.20.0.10"},
		{"172.20.0.0/29", 10, ""},
		{"fd00:10:96::/112", 10, "fd00:10:96::a"},
		{"fd00:10:96::/112", 1, "fd00:10:96::1"},
		{"255.255.255.0/24", 255, "255.255.255.255"},
		{"255.255.255.0/24", 256, ""}, // runs off the end of the address space
		{"not-a-cidr", 10, ""},
		{"", 1, ""},
	} {
		c := Default("test")
		c.ServiceSubnet = tc.subnet
		got, err := c.ServiceIP(tc.n)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ServiceIP(%d) of %q = %s, want an error", tc.n, tc.subnet, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ServiceIP(%d) of %q: %v", tc.n, tc.subnet, err)
			continue
		}
		if got != netip.MustParseAddr(tc.want) {
			t.Errorf("ServiceIP(%d) of %q = %s, want %s", tc.n, tc.subnet, got, tc.want)
		}
	}
}

func TestClusterJSONRoundTrip(t *testing.T) {
	// The spec is saved in the cluster's state file and read back by later commands.
	c := Default("dev")
	c.Nodes = append(c.Nodes, Node{Name: NodeName("dev", 1), Role: RoleWorker})
	c.APIServerPort = 40123
	c.Image = "kubeforge.local/node:test"
	// What `node add` reuses from the record: a new node gets the cluster's flags and gates.
	c.ExtraArgs = map[string]map[string]string{ComponentKubelet: {"max-pods": "50"}}
	c.FeatureGates = map[string]bool{"ContextualLogging": false}
	c.Nodes[0].Mounts = []Mount{{HostPath: "/srv", ContainerPath: "/data", ReadOnly: true}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Cluster
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the spec:\n got %+v\nwant %+v", back, c)
	}
	for _, key := range []string{`"name":"dev"`, `"role":"worker"`, `"podSubnet":"10.244.0.0/16"`, `"serviceSubnet":"10.96.0.0/16"`, `"dnsDomain":"cluster.local"`,
		`"extraArgs":{"kubelet":{"max-pods":"50"}}`, `"featureGates":{"ContextualLogging":false}`, `"containerPath":"/data"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
}

func TestWithNodes(t *testing.T) {
	c := Default("dev").WithNodes(3, 1)
	want := []Node{{Name: "dev", Role: RoleControlPlane}, {Name: "dev-m02", Role: RoleWorker}, {Name: "dev-m03", Role: RoleWorker}}
	if !reflect.DeepEqual(c.Nodes, want) {
		t.Errorf("Nodes = %+v, want %+v", c.Nodes, want)
	}
	if ha := Default("dev").WithNodes(4, 3); ha.ControlPlanes() != 3 || ha.Nodes[2].Role != RoleControlPlane || ha.Nodes[3].Role != RoleWorker {
		t.Errorf("WithNodes(4, 3) = %+v", ha.Nodes)
	}
	if !c.HasWorkers() || Default("dev").HasWorkers() {
		t.Errorf("HasWorkers wrong")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for i, n := range []string{"dev", "dev-m02", "dev-m03", "dev-m12"} {
		want := i
		if i == 3 {
			want = 11
		}
		if got := NodeIndex("dev", n); got != want {
			t.Errorf("NodeIndex(%s) = %d, want %d", n, got, want)
		}
	}
	for _, n := range []string{"dev-m01", "dev-m1", "dev-m2x", "other", "dev-m", "dev-m-3"} {
		if got := NodeIndex("dev", n); got != -1 {
			t.Errorf("NodeIndex(%s) = %d, want -1", n, got)
		}
	}
}

func TestWithName(t *testing.T) {
	c := Default("a").WithNodes(2, 1)
	d := c.WithName("b")
	if d.Name != "b" || d.Nodes[0].Name != "b" || d.Nodes[1].Name != "b-m02" || d.Nodes[1].Role != RoleWorker {
		t.Errorf("WithName = %+v", d)
	}
	if c.Nodes[1].Name != "a-m02" {
		t.Errorf("WithName changed the original's nodes: %+v", c.Nodes)
	}
}

func TestValidateShape(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Cluster)
		want string
	}{
		{"too many nodes", func(c *Cluster) { *c = c.WithNodes(MaxNodes+1, 1) }, "more than kubeforge supports"},
		{"duplicate name", func(c *Cluster) { c.Nodes[2].Name = c.Nodes[1].Name }, "used twice"},
		{"eviction too short", func(c *Cluster) { c.PodEvictionTimeout = 5 * time.Second }, "between 20s and 1h"},
		{"bad node port", func(c *Cluster) { c.Ports = []PortMapping{{HostPort: 8080, NodePort: 80}} }, "NodePort range"},
		{"bad host port", func(c *Cluster) { c.Ports = []PortMapping{{HostPort: 0, NodePort: 30080}} }, "host port must be"},
		{"port twice", func(c *Cluster) { c.Ports = []PortMapping{{8080, 30080}, {8080, 30081}} }, "published twice"},
	} {
		c := Default("dev").WithNodes(3, 1)
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	ok := Default("dev").WithNodes(2, 1)
	ok.PodEvictionTimeout, ok.Ports = 30*time.Second, []PortMapping{{8080, 30080}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid shape: %v", err)
	}
}

func TestNodeResources(t *testing.T) {
	cpus, mem, err := Node{Name: "n", CPUs: "1500m", Memory: "2Gi"}.Resources()
	if err != nil || cpus.MilliValue() != 1500 || mem.Value() != 2<<30 {
		t.Errorf("Resources = %s %s %v", cpus.String(), mem.String(), err)
	}
	if c, m, err := (Node{Name: "n"}).Resources(); err != nil || !c.IsZero() || !m.IsZero() {
		t.Errorf("no caps = %s %s %v", c.String(), m.String(), err)
	}
	for _, n := range []Node{{Name: "n", CPUs: "x"}, {Name: "n", CPUs: "100m"}, {Name: "n", Memory: "lots"}, {Name: "n", Memory: "64Mi"}} {
		if _, _, err := n.Resources(); err == nil {
			t.Errorf("%+v accepted", n)
		}
	}
	c := Default("dev")
	c.Nodes[0].Memory = "1Mi"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "nodes[0]") {
		t.Errorf("Validate with a tiny node = %v", err)
	}
}

func TestProxyFromEnv(t *testing.T) {
	env := map[string]string{"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:1", "https_proxy": "http://lower:2", "no_proxy": "a,b"}
	got := ProxyFromEnv(func(k string) string { return env[k] })
	want := Proxy{HTTPProxy: "http://upper:1", HTTPSProxy: "http://lower:2", NoProxy: "a,b"}
	if got != want {
		t.Errorf("ProxyFromEnv = %+v, want %+v", got, want)
	}
	if (ProxyFromEnv(func(string) string { return "" }) != Proxy{}) {
		t.Error("an empty environment gave a proxy")
	}
}

func TestMachineNamesCollide(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"kf", "kf", true},
		{"kf", "kf-m02", true},
		{"kf-m02", "kf", true},
		{"kf-m100", "kf", true},
		{"kf-lb", "kf", true},
		{"kf", "kf-lb", true},
		{"kf", "kf2", false},
		{"kf", "kf-m", false},
		{"kf", "kf-mx2", false},
		{"kf", "kf-dev", false},
		{"kf-m02", "kf-m03", false},
		{"dev", "kf", false},
		{"a-m02", "a-m02-lb", true},
		{"kf", "kf-cloud", true},
		{"kf-svc-default-web", "kf", true},
		{"kf", "kf-svc", false},
	} {
		if got := MachineNamesCollide(tc.a, tc.b); got != tc.want {
			t.Errorf("MachineNamesCollide(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
