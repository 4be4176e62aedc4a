// Package verbosity changes the log verbosity of a running control-plane component from inside
// its node (`kubeforge-node verbosity COMPONENT LEVEL`), through the component's own
// /debug/flags/v endpoint (upstream's, on its secure port on the node's loopback), as the node's
// admin. `kubeforge trace --why` raises the scheduler's to read its reasons, then lowers it.
package verbosity

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubeforge.dev/kubeforge/contract"
)

// Ports are the secure ports of the components whose verbosity can be changed (their
// --bind-address is the node's loopback).
var Ports = map[string]int{"kube-scheduler": 10259, "kube-controller-manager": 10257}

// Set sets component's klog verbosity to level, with the client certificate of kubeconfig.
func Set(ctx context.Context, component string, level int, kubeconfig string) error {
	port, ok := Ports[component]
	if !ok {
		return fmt.Errorf("unknown component %q: one of kube-scheduler, kube-controller-manager", component)
	}
	return set(ctx, component, fmt.Sprintf("https://127.0.0.1:%d/debug/flags/v", port), level, kubeconfig)
}

// set PUTs level to url (a component's /debug/flags/v).
func set(ctx context.Context, component, url string, level int, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	tc, err := rest.TLSConfigFor(cfg)
	if err != nil || tc == nil {
		return fmt.Errorf("the client certificate of %s: %v", kubeconfig, err)
	}
	// The component serves on the node's loopback with a certificate it made itself (kubeadm's
	// layout): there is no CA to check it against, and no one else on that address.
	tc = &tls.Config{Certificates: tc.Certificates, GetClientCertificate: tc.GetClientCertificate, InsecureSkipVerify: true}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(strconv.Itoa(level)))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: PUT /debug/flags/v: %s: %s", component, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Main is `kubeforge-node verbosity COMPONENT LEVEL`.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: kubeforge-node verbosity kube-scheduler|kube-controller-manager LEVEL")
		return 2
	}
	level, err := strconv.Atoi(args[1])
	if err != nil || level < 0 || level > 10 {
		fmt.Fprintf(stderr, "kubeforge-node verbosity: level %q: want 0 to 10\n", args[1])
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Set(ctx, args[0], level, contract.AdminKubeconfig); err != nil {
		fmt.Fprintf(stderr, "kubeforge-node verbosity: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: verbosity %d\n", args[0], level)
	return 0
}
