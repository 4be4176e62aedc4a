//go:build e2e

// Integration tests of the host Applier (netlink routes, iptables, the CNI config with the real
// CNI plugins) and of the controller driving it. They need root and run in a network namespace
// and a mount namespace of their own: TestMain re-executes the test binary under
// `unshare --net --mount` with a tmpfs over /run, so nothing here can touch the host's routes,
// iptables or /run/netns, and everything goes away with the process.
//
//	go test -tags e2e -count=1 ./node/netctl/
package netctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	envInNetns  = "KUBEFORGE_NETCTL_E2E_IN_NETNS" // set in the re-executed child
	envHostNS   = "KUBEFORGE_NETCTL_E2E_HOST_NETNS"
	e2eLink     = "kf0"          // the "node's eth0" in the test namespace
	e2eNodeIP   = "192.168.49.2" // its address
	e2eNodeNet  = "192.168.49.2/24"
	cniPluginsD = "/usr/lib/cni" // Debian's containernetworking-plugins, as in the node image
)

func TestMain(m *testing.M) {
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	if os.Getenv(envInNetns) == "" {
		// Re-execute in fresh network and mount namespaces; /run is a private tmpfs there (the
		// iptables lock and `ip netns` files stay inside).
		args := append([]string{"--net", "--mount", "--propagation", "private", "--",
			"sh", "-c", `mount -t tmpfs -o mode=0755 kubeforge-e2e /run && exec "$@"`, "sh", os.Args[0]},
			os.Args[1:]...)
		cmd := exec.Command("unshare", args...)
		cmd.Env = append(os.Environ(), envInNetns+"=1", envHostNS+"="+hostNS)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "e2e: unshare (root needed):", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	// Belt and braces: never run against the namespace we were started in.
	if hostNS == os.Getenv(envHostNS) {
		fmt.Fprintln(os.Stderr, "e2e: still in the original network namespace", hostNS, "; refusing to run")
		os.Exit(2)
	}
	if err := setupNetns(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setting up the test namespace:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// setupNetns brings lo up and creates the node's "eth0": a veth pair kf0/kf0p, kf0 with
// 192.168.49.2/24, so that gateways 192.168.49.x are on-link. (There is no dummy driver in this
// kernel; veth is built in.)
func setupNetns() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e2eLink}, PeerName: e2eLink + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	addr, err := netlink.ParseAddr(e2eNodeNet)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName(e2eLink)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return err
	}
	peer, err := netlink.LinkByName(e2eLink + "p")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kernelRoutes lists the main table's IPv4 routes as "dst via gw proto N" strings, sorted by ip.
func kernelRoutes(t *testing.T) string {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range rs {
		if r.Dst == nil || r.Gw == nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s via %s proto %d", r.Dst, r.Gw, r.Protocol))
	}
	return strings.Join(lines, "\n")
}

func newE2EApplier(t *testing.T) *HostApplier {
	t.Helper()
	a, err := NewHostApplier(filepath.Join(t.TempDir(), "net.d"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestE2ERoutes(t *testing.T) {
	a := newE2EApplier(t)
	t.Cleanup(func() { _ = a.SyncRoutes(nil) })

	// A route someone else owns (another protocol) and a stale one of ours (from before a restart).
	run(t, "ip", "route", "add", "10.99.0.0/16", "via", "192.168.49.99", "proto", "static")
	run(t, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.49.9", "proto", fmt.Sprint(RouteProtocol))
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", "10.99.0.0/16").Run() })

	if err := a.SyncRoutes([]Route{route("10.244.2.0/24", "192.168.49.4"), route("10.244.1.0/24", "192.168.49.3")}); err != nil {
		t.Fatal(err)
	}
	want := "10.99.0.0/16 via 192.168.49.99 proto 4\n" +
		"10.244.1.0/24 via 192.168.49.3 proto 107\n" +
		"10.244.2.0/24 via 192.168.49.4 proto 107"
	if got := kernelRoutes(t); got != want {
		t.Fatalf("routes after first sync:\n%s\nwant\n%s", got, want)
	}
	if out := run(t, "ip", "route", "show", "proto", "107"); !strings.Contains(out, "10.244.1.0/24 via 192.168.49.3 dev kf0") {
		t.Errorf("ip route show proto 107:\n%s", out)
	}

	// Idempotent.
	if err := a.SyncRoutes([]Route{route("10.244.1.0/24", "192.168.49.3"), route("10.244.2.0/24", "192.168.49.4")}); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t); got != want {
		t.Fatalf("routes after second sync:\n%s", got)
	}

	// Node IP change, node removed, and a route added by hand to a desired destination (taken over).
	run(t, "ip", "route", "add", "10.244.3.0/24", "via", "192.168.49.50")
	if err := a.SyncRoutes([]Route{route("10.244.2.0/24", "192.168.49.7"), route("10.244.3.0/24", "192.168.49.5")}); err != nil {
		t.Fatal(err)
	}
	want = "10.99.0.0/16 via 192.168.49.99 proto 4\n" +
		"10.244.2.0/24 via 192.168.49.7 proto 107\n" +
		"10.244.3.0/24 via 192.168.49.5 proto 107"
	if got := kernelRoutes(t); got != want {
		t.Fatalf("routes after changes:\n%s\nwant\n%s", got, want)
	}

	// A gateway that is not on-link fails that route only, and says which.
	err := a.SyncRoutes([]Route{route("10.244.2.0/24", "192.168.49.7"), route("10.244.4.0/24", "172.31.0.1")})
	if err == nil || !strings.Contains(err.Error(), "10.244.4.0/24 via 172.31.0.1") {
		t.Fatalf("unreachable gateway: err = %v", err)
	}
	want = "10.99.0.0/16 via 192.168.49.99 proto 4\n" +
		"10.244.2.0/24 via 192.168.49.7 proto 107"
	if got := kernelRoutes(t); got != want {
		t.Fatalf("routes after partial failure:\n%s\nwant\n%s", got, want)
	}

	// Nothing desired: ours go, the static one stays.
	if err := a.SyncRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t); got != "10.99.0.0/16 via 192.168.49.99 proto 4" {
		t.Fatalf("routes after removing all:\n%s", got)
	}
}

// natChain lists a nat chain's rules (iptables -S), without the -N line.
func natChain(t *testing.T, chain string) string {
	t.Helper()
	var rules []string
	for _, l := range strings.Split(run(t, "iptables", "-w", "-t", "nat", "-S", chain), "\n") {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		}
	}
	return strings.Join(rules, "\n")
}

func TestE2EMasquerade(t *testing.T) {
	a := newE2EApplier(t)
	masq := "-j MASQUERADE --random-fully"
	wantChain := func(cidr string) string {
		return "-A KUBEFORGE-MASQ -s " + cidr + " -d " + cidr + " -j RETURN\n" +
			"-A KUBEFORGE-MASQ -s " + cidr + " ! -d " + cidr + " " + masq
	}
	const wantJump = `-A POSTROUTING -m comment --comment "kubeforge pod masquerade" -j KUBEFORGE-MASQ`
	check := func(stage, cidr string, wantChanged, changed bool) {
		t.Helper()
		if got := natChain(t, MasqueradeChain); got != wantChain(cidr) {
			t.Fatalf("%s: KUBEFORGE-MASQ:\n%s\nwant\n%s", stage, got, wantChain(cidr))
		}
		if got := natChain(t, "POSTROUTING"); got != wantJump {
			t.Fatalf("%s: POSTROUTING:\n%s", stage, got)
		}
		if changed != wantChanged {
			t.Errorf("%s: changed = %v, want %v", stage, changed, wantChanged)
		}
	}

	changed, err := a.ensureMasquerade("10.244.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	check("first", "10.244.0.0/16", true, changed)

	// Unchanged rules are left alone (the comparison with iptables-save output holds).
	changed, err = a.ensureMasquerade("10.244.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	check("again", "10.244.0.0/16", false, changed)

	// Another program flushes our chain, or removes the jump, or the whole nat table.
	run(t, "iptables", "-w", "-t", "nat", "-F", MasqueradeChain)
	changed, _ = a.ensureMasquerade("10.244.0.0/16")
	check("after chain flush", "10.244.0.0/16", true, changed)
	run(t, "iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "kubeforge pod masquerade", "-j", MasqueradeChain)
	changed, _ = a.ensureMasquerade("10.244.0.0/16")
	check("after jump removal", "10.244.0.0/16", true, changed)
	run(t, "iptables", "-w", "-t", "nat", "-F")
	run(t, "iptables", "-w", "-t", "nat", "-X")
	if err := a.EnsureMasquerade("10.244.0.0/16"); err != nil {
		t.Fatal(err)
	}
	check("after nat table flush", "10.244.0.0/16", false, false)

	// A rule slipped into our chain, and a change of cluster CIDR: the chain is rewritten.
	run(t, "iptables", "-w", "-t", "nat", "-I", MasqueradeChain, "-s", "1.2.3.4", "-j", "RETURN")
	changed, _ = a.ensureMasquerade("10.244.0.0/16")
	check("after foreign rule", "10.244.0.0/16", true, changed)
	changed, err = a.ensureMasquerade("10.245.7.0/16") // masked
	if err != nil {
		t.Fatal(err)
	}
	check("new cluster CIDR", "10.245.0.0/16", true, changed)

	if err := a.EnsureMasquerade("fd00::/48"); err == nil {
		t.Error("IPv6 cluster CIDR accepted")
	}
}

func TestE2ECNIConfigFile(t *testing.T) {
	a := newE2EApplier(t)
	conf, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"), 0)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := a.writeCNIConfig(conf)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v err %v", changed, err)
	}
	st1, err := os.Stat(a.ConfPath())
	if err != nil {
		t.Fatal(err)
	}
	if st1.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st1.Mode())
	}
	changed, err = a.writeCNIConfig(conf)
	if err != nil || changed {
		t.Fatalf("same content rewritten: changed %v err %v", changed, err)
	}
	st2, _ := os.Stat(a.ConfPath())
	if !os.SameFile(st1, st2) || !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("file replaced although the content was the same")
	}
	conf2, _ := CNIConfig(netip.MustParsePrefix("10.244.2.0/24"), 0)
	if err := a.WriteCNIConfig(conf2); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a.ConfPath()); string(got) != string(conf2) {
		t.Errorf("content after change:\n%s", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(a.ConfPath()))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestE2ECNIPlugins runs Debian's CNI plugins (the node image's) with the generated config, as
// the runtime would: a pod namespace gets an address from the pod CIDR and a default route via the
// bridge, is reachable from the node, and a hostPort reaches it.
func TestE2ECNIPlugins(t *testing.T) {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniPluginsD, p)); err != nil {
			t.Fatalf("CNI plugin %s missing (install containernetworking-plugins): %v", p, err)
		}
	}
	confList, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(confList, &list); err != nil {
		t.Fatal(err)
	}
	// host-local's leases go to a temporary directory instead of /var/lib/cni/networks.
	list.Plugins[0]["ipam"].(map[string]any)["dataDir"] = t.TempDir()

	const pod = "kfpod"
	run(t, "ip", "netns", "add", pod)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
	portMappings := []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}

	cni := func(command string, plugin map[string]any, prev json.RawMessage) json.RawMessage {
		t.Helper()
		conf := map[string]any{"cniVersion": list.CNIVersion, "name": list.Name}
		for k, v := range plugin {
			conf[k] = v
		}
		if prev != nil {
			conf["prevResult"] = prev
		}
		if caps, ok := plugin["capabilities"].(map[string]any); ok && caps["portMappings"] == true {
			conf["runtimeConfig"] = map[string]any{"portMappings": portMappings}
		}
		stdin, _ := json.Marshal(conf)
		cmd := exec.Command(filepath.Join(cniPluginsD, plugin["type"].(string)))
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID=e2e-pod",
			"CNI_NETNS=/run/netns/"+pod, "CNI_IFNAME=eth0", "CNI_PATH="+cniPluginsD)
		cmd.Stdin = strings.NewReader(string(stdin))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("CNI %s %s: %v\nstdin %s\nstdout %s", command, plugin["type"], err, stdin, out)
		}
		return out
	}
	var result json.RawMessage
	for _, p := range list.Plugins {
		result = cni("ADD", p, result)
	}
	t.Cleanup(func() {
		for i := len(list.Plugins) - 1; i >= 0; i-- {
			cni("DEL", list.Plugins[i], result)
		}
	})
	var res struct {
		IPs []struct {
			Address string `json:"address"`
			Gateway string `json:"gateway"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(result, &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("CNI result %s: %v", result, err)
	}
	podPrefix := netip.MustParsePrefix(res.IPs[0].Address)
	if !netip.MustParsePrefix("10.244.1.0/24").Contains(podPrefix.Addr()) || res.IPs[0].Gateway != "10.244.1.1" {
		t.Fatalf("pod got %s gateway %s", res.IPs[0].Address, res.IPs[0].Gateway)
	}
	if out := run(t, "ip", "-4", "addr", "show", "dev", BridgeName); !strings.Contains(out, "10.244.1.1/24") {
		t.Errorf("bridge %s:\n%s", BridgeName, out)
	}
	if out := run(t, "ip", "netns", "exec", pod, "ip", "route"); !strings.Contains(out, "default via 10.244.1.1 dev eth0") {
		t.Errorf("pod routes:\n%s", out)
	}
	if out := run(t, "iptables", "-w", "-t", "nat", "-S"); !strings.Contains(out, "--dport 8080") {
		t.Errorf("no hostPort DNAT rule for 8080 in nat:\n%s", out)
	}

	// A TCP server in the pod, reached directly and through the hostPort on the node's address.
	ln := listenIn(t, "/run/netns/"+pod, ":80")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from the pod\n"))
			c.Close()
		}
	}()
	for _, addr := range []string{net.JoinHostPort(podPrefix.Addr().String(), "80"), net.JoinHostPort(e2eNodeIP, "8080")} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		if string(buf[:n]) != "hello from the pod\n" {
			t.Errorf("dial %s: read %q", addr, buf[:n])
		}
	}
}

// listenIn opens a TCP listener inside the network namespace at nsPath (the socket stays there).
func listenIn(t *testing.T, nsPath, addr string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", nsPath, r.err)
	}
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// eventually polls cond until it returns nil (tests may poll; the controller never does).
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2EController runs the controller with the host Applier in the test namespace, driven by a
// fake API: restart reconciliation, routes lost as on `docker restart`, rules flushed, a node
// removed.
func TestE2EController(t *testing.T) {
	ctx := context.Background()
	// Leftovers of a previous run: a stale route of ours and a stale chain content.
	run(t, "ip", "route", "add", "10.244.9.0/24", "via", "192.168.49.9", "proto", fmt.Sprint(RouteProtocol))
	a := newE2EApplier(t)
	t.Cleanup(func() { _ = a.SyncRoutes(nil) })

	client := fake.NewClientset(
		node("n1", cidrs("10.244.0.0/24"), e2eNodeIP),
		node("n2", cidrs("10.244.1.0/24"), "192.168.49.3"),
		node("n3", cidrs("10.244.2.0/24"), "192.168.49.4"),
		node("n4", nil, "192.168.49.5"), // no pod CIDR yet
	)
	c, err := NewController(client, a, Options{
		NodeName:     "n1",
		ClusterCIDR:  netip.MustParsePrefix("10.244.0.0/16"),
		ResyncPeriod: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	wantRoutes := func(want string) func() error {
		return func() error {
			if got := kernelRoutes(t); got != want {
				return fmt.Errorf("routes:\n%s\nwant\n%s", got, want)
			}
			return nil
		}
	}
	both := "10.244.1.0/24 via 192.168.49.3 proto 107\n10.244.2.0/24 via 192.168.49.4 proto 107"
	eventually(t, "routes to n2 and n3, stale route gone", wantRoutes(both))
	wantConf, _ := CNIConfig(netip.MustParsePrefix("10.244.0.0/24"), 0)
	eventually(t, "CNI config", func() error {
		got, err := os.ReadFile(a.ConfPath())
		if err != nil || string(got) != string(wantConf) {
			return fmt.Errorf("%s: %v", got, err)
		}
		return nil
	})
	masqOK := func() error {
		if !strings.Contains(natChain(t, MasqueradeChain), "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE") {
			return errors.New("no MASQUERADE rule")
		}
		return nil
	}
	eventually(t, "masquerade rule", masqOK)

	// As after `docker restart` (or someone's `ip route flush`): routes gone; the resync restores them.
	run(t, "ip", "route", "flush", "proto", fmt.Sprint(RouteProtocol))
	eventually(t, "routes restored by resync", wantRoutes(both))
	run(t, "iptables", "-w", "-t", "nat", "-F", MasqueradeChain)
	eventually(t, "masquerade restored by resync", masqOK)

	// n4 gets a pod CIDR; n3 leaves.
	n4 := node("n4", cidrs("10.244.3.0/24"), "192.168.49.5")
	if _, err := client.CoreV1().Nodes().Update(ctx, n4, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route to n4, none to n3", wantRoutes(
		"10.244.1.0/24 via 192.168.49.3 proto 107\n10.244.3.0/24 via 192.168.49.5 proto 107"))
}
