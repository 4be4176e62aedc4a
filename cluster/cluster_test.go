package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeforge.dev/kubeforge/bootstrap/ready"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

func kubeconfigFor(name, server string) []byte {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "t-" + name}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		panic(err)
	}
	return b
}

func TestMergeAndRemoveKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kube", "config")
	if err := RemoveFromKubeconfig(path, "a"); err != nil {
		t.Fatalf("removing from a missing file: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		if err := MergeKubeconfig(path, kubeconfigFor(n, "https://127.0.0.1:1"), n); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "b" || cfg.Contexts["a"] == nil || cfg.AuthInfos["a"].Token != "t-a" {
		t.Fatalf("after merging a and b: current %q, contexts %v", cfg.CurrentContext, cfg.Contexts)
	}
	if err := RemoveFromKubeconfig(path, "b"); err != nil {
		t.Fatal(err)
	}
	cfg, _ = clientcmd.LoadFromFile(path)
	if cfg.CurrentContext != "" || cfg.Contexts["b"] != nil || cfg.Clusters["b"] != nil || cfg.Contexts["a"] == nil {
		t.Fatalf("after removing b: current %q, contexts %v", cfg.CurrentContext, cfg.Contexts)
	}
}

// Concurrent starts of different clusters must not lose each other's contexts.
func TestMergeKubeconfigConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := fmt.Sprintf("c%d", i)
			if err := MergeKubeconfig(path, kubeconfigFor(n, "https://127.0.0.1:1"), n); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Contexts) != 16 {
		t.Fatalf("%d contexts survived, want 16", len(cfg.Contexts))
	}
}

func TestMergeKubeconfigRejectsBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("{not yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MergeKubeconfig(path, kubeconfigFor("a", "https://127.0.0.1:1"), "a"); err == nil {
		t.Fatal("merged into an unreadable kubeconfig")
	}
}

func TestRunUndoesInReverse(t *testing.T) {
	var log []string
	mk := func(name string, fail bool) step {
		return step{
			run: func(context.Context, *build) error {
				log = append(log, "run "+name)
				if fail {
					return errors.New(name + " failed")
				}
				return nil
			},
			undo: func(context.Context, *build) error { log = append(log, "undo "+name); return nil },
		}
	}
	p := &Provider{log: ui.Discard()}
	b := &build{}
	err := p.runSteps(context.Background(), b, []step{mk("a", false), mk("b", false), mk("c", true), mk("d", false)}, false)
	if err == nil || err.Error() != "c failed" {
		t.Fatalf("err %v", err)
	}
	want := []string{"run a", "run b", "run c", "undo c", "undo b", "undo a"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}

	log = nil
	if err := p.runSteps(context.Background(), b, []step{mk("a", false), mk("b", true)}, true); err == nil {
		t.Fatal("no error")
	}
	if want := []string{"run a", "run b"}; !reflect.DeepEqual(log, want) {
		t.Fatalf("keep: got %v, want %v", log, want)
	}

	log = nil
	if err := p.runSteps(context.Background(), b, []step{mk("a", false), mk("b", false)}, false); err != nil {
		t.Fatal(err)
	}
	if want := []string{"run a", "run b"}; !reflect.DeepEqual(log, want) {
		t.Fatalf("success: got %v, want %v", log, want)
	}
}

// Undo runs even when the failure was the context ending (Ctrl-C, --wait).
func TestRunUndoesAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	undone := false
	steps := []step{
		{run: func(context.Context, *build) error { return nil }, undo: func(ctx context.Context, _ *build) error {
			if ctx.Err() != nil {
				t.Error("undo got a cancelled context")
			}
			undone = true
			return nil
		}},
		{run: func(ctx context.Context, _ *build) error { cancel(); return ctx.Err() }},
	}
	if err := (&Provider{log: ui.Discard()}).runSteps(ctx, &build{}, steps, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if !undone {
		t.Fatal("not undone")
	}
}

func TestNodePodCIDR(t *testing.T) {
	for _, c := range []struct {
		subnet string
		i      int
		want   string
	}{
		{"10.244.0.0/16", 0, "10.244.0.0/24"},
		{"10.244.0.0/16", 1, "10.244.1.0/24"},
		{"10.244.0.0/16", 255, "10.244.255.0/24"},
		{"10.128.0.0/9", 300, "10.129.44.0/24"},
	} {
		got, err := nodePodCIDR(c.subnet, c.i)
		if err != nil || got.String() != c.want {
			t.Errorf("nodePodCIDR(%s, %d) = %s, %v; want %s", c.subnet, c.i, got, err, c.want)
		}
	}
	for _, c := range []struct {
		subnet string
		i      int
	}{{"10.244.0.0/16", 256}, {"10.244.0.0/25", 0}, {"fd00::/48", 0}, {"nonsense", 0}, {"10.244.0.0/16", -1}} {
		if got, err := nodePodCIDR(c.subnet, c.i); err == nil {
			t.Errorf("nodePodCIDR(%s, %d) = %s, want an error", c.subnet, c.i, got)
		}
	}
}

func TestCheckSubnets(t *testing.T) {
	network := provision.Network{Name: "kubeforge-dev", Subnet: netip.MustParsePrefix("192.168.49.0/24")}
	c := spec.Default("dev")
	if err := checkSubnets(c, network); err != nil {
		t.Fatal(err)
	}
	c.PodSubnet = "192.168.0.0/16"
	if err := checkSubnets(c, network); err == nil || !strings.Contains(err.Error(), "podSubnet 192.168.0.0/16 overlaps the nodes' network kubeforge-dev (192.168.49.0/24)") {
		t.Errorf("pod subnet over the node network: %v", err)
	}
	c = spec.Default("dev")
	c.ServiceSubnet = "192.168.48.0/20"
	if err := checkSubnets(c, network); err == nil || !strings.Contains(err.Error(), "serviceSubnet") {
		t.Errorf("service subnet over the node network: %v", err)
	}
}

// networkDriverFake returns network from EnsureNetwork and counts DeleteNetwork calls.
type networkDriverFake struct {
	provision.Driver
	network provision.Network
	deleted int
}

func (d *networkDriverFake) EnsureNetwork(context.Context, string) (provision.Network, error) {
	return d.network, nil
}

func (d *networkDriverFake) DeleteNetwork(context.Context, string) error {
	d.deleted++
	return nil
}

// TestNetworkUndoRemovesOnlyItsOwn: a failed start removes the network only when its network step
// made it; one it found (left by something else) stays.
func TestNetworkUndoRemovesOnlyItsOwn(t *testing.T) {
	for _, created := range []bool{true, false} {
		d := &networkDriverFake{network: provision.Network{Name: "kubeforge-dev", Subnet: netip.MustParsePrefix("192.168.49.0/24"), Created: created}}
		b := &build{spec: spec.Default("dev"), driver: d}
		steps := []step{stepNetwork(), {name: "fails", run: func(context.Context, *build) error { return errors.New("later step failed") }}}
		if err := (&Provider{log: ui.Discard()}).runSteps(context.Background(), b, steps, false); err == nil {
			t.Fatal("runSteps succeeded")
		}
		if want := map[bool]int{true: 1, false: 0}[created]; d.deleted != want {
			t.Errorf("network Created=%v: DeleteNetwork called %d times, want %d", created, d.deleted, want)
		}
	}
}

func TestMachineMounts(t *testing.T) {
	got := machineMounts([]spec.Mount{{HostPath: "/srv", ContainerPath: "/data", ReadOnly: true}})
	if want := []provision.Mount{{HostPath: "/srv", ContainerPath: "/data", ReadOnly: true}}; !reflect.DeepEqual(got, want) {
		t.Errorf("machineMounts = %+v, want %+v", got, want)
	}
	if got := machineMounts(nil); got != nil {
		t.Errorf("machineMounts(nil) = %+v", got)
	}
}

// TestPollInterval: an emulated cluster's API server is asked once a second while it starts.
func TestPollInterval(t *testing.T) {
	if got := pollInterval(spec.Cluster{Driver: spec.DriverDocker}); got != ready.APIServerPoll {
		t.Errorf("docker: %v", got)
	}
	if got := pollInterval(spec.Cluster{Driver: spec.DriverKVM, Accel: spec.AccelTCG}); got != time.Second {
		t.Errorf("kvm+tcg: %v", got)
	}
}
