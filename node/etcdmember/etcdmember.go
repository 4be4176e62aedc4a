// Package etcdmember changes the membership of a control plane's stacked etcd from inside a
// control-plane node (`kubeforge-node etcd-member add|remove|list`), talking to the local member
// with the node's etcd client certificate. The host runs it through the driver's exec, so adding
// or removing a control plane needs no route from the host to the nodes.
package etcdmember

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubeforge.dev/kubeforge/contract"
)

// Paths of the client credentials in a control-plane node (kubeadm's layout, see contract).
const (
	CAFile   = contract.EtcdCAFile
	CertFile = contract.EtcdClientCertFile
	KeyFile  = contract.EtcdClientKeyFile
	Endpoint = "https://127.0.0.1:2379"
)

// Member is name=peerURL.
type Member struct {
	Name    string
	PeerURL string
}

// InitialCluster renders members as etcd's --initial-cluster (sorted by name).
func InitialCluster(ms []Member) string {
	s := append([]Member(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	parts := make([]string, len(s))
	for i, m := range s {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// members turns etcd's member list into Members; a member added but not yet started has no name:
// it gets pendingName when its peer URL is pendingURL.
func members(list []*memberInfo, pendingName, pendingURL string) []Member {
	var out []Member
	for _, m := range list {
		name := m.name
		if name == "" && len(m.peerURLs) > 0 && m.peerURLs[0] == pendingURL {
			name = pendingName
		}
		if name == "" || len(m.peerURLs) == 0 {
			continue
		}
		out = append(out, Member{Name: name, PeerURL: m.peerURLs[0]})
	}
	return out
}

type memberInfo struct {
	id       uint64
	name     string
	peerURLs []string
}

// Client is a connection to the local etcd member.
type Client struct{ c *clientv3.Client }

// ClientConfig is the configuration of a client of the local member, with the node's etcd
// client certificate.
func ClientConfig(ctx context.Context) (clientv3.Config, error) {
	cert, err := tls.LoadX509KeyPair(CertFile, KeyFile)
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(CAFile)
	if err != nil {
		return clientv3.Config{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return clientv3.Config{}, fmt.Errorf("%s: no certificate", CAFile)
	}
	return clientv3.Config{
		Endpoints:   []string{Endpoint},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Context:     ctx,
	}, nil
}

// Dial connects with the node's etcd client certificate.
func Dial(ctx context.Context) (*Client, error) {
	cfg, err := ClientConfig(ctx)
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", Endpoint, err)
	}
	return &Client{c: c}, nil
}

func (c *Client) Close() error { return c.c.Close() }

func (c *Client) list(ctx context.Context) ([]*memberInfo, error) {
	resp, err := c.c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	var out []*memberInfo
	for _, m := range resp.Members {
		out = append(out, &memberInfo{id: m.ID, name: m.Name, peerURLs: m.PeerURLs})
	}
	return out, nil
}

// Add adds a member (unless one with its peer URL is there already, from an earlier attempt) and
// returns the --initial-cluster the new member must start with.
func (c *Client) Add(ctx context.Context, name, peerURL string) (string, error) {
	list, err := c.list(ctx)
	if err != nil {
		return "", err
	}
	found := false
	for _, m := range list {
		// A member added but never started, for another address: the remains of a failed add.
		// etcd would refuse the new member's --initial-cluster while it is listed, so it goes.
		if m.name == "" && !slices.Contains(m.peerURLs, peerURL) {
			if _, err := c.c.MemberRemove(ctx, m.id); err != nil {
				return "", fmt.Errorf("removing the never-started etcd member %v: %w", m.peerURLs, err)
			}
			continue
		}
		for _, u := range m.peerURLs {
			if u == peerURL {
				found = true
			}
		}
		if m.name == name && !found {
			return "", fmt.Errorf("etcd already has a member named %s with peer URLs %v", name, m.peerURLs)
		}
	}
	if !found {
		if _, err := c.c.MemberAdd(ctx, []string{peerURL}); err != nil {
			return "", fmt.Errorf("adding etcd member %s (%s): %w", name, peerURL, err)
		}
	}
	if list, err = c.list(ctx); err != nil {
		return "", err
	}
	return InitialCluster(members(list, name, peerURL)), nil
}

// Remove removes the member named name, or with peer URL peerURL (a member that never started
// has no name); a missing member is not an error.
func (c *Client) Remove(ctx context.Context, name, peerURL string) error {
	list, err := c.list(ctx)
	if err != nil {
		return err
	}
	for _, m := range list {
		if (name != "" && m.name == name) || (peerURL != "" && slices.Contains(m.peerURLs, peerURL)) {
			if _, err := c.c.MemberRemove(ctx, m.id); err != nil {
				return fmt.Errorf("removing etcd member %s: %w", name, err)
			}
		}
	}
	return nil
}

// List returns the members.
func (c *Client) List(ctx context.Context) ([]Member, error) {
	list, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	return members(list, "", ""), nil
}

// Main is `kubeforge-node etcd-member add --name N --peer-url URL | remove --name N | list`.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: etcd-member add --name NAME --peer-url URL | remove --name NAME | list")
		return 2
	}
	fs := flag.NewFlagSet("etcd-member "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "member name (the node name)")
	peer := fs.String("peer-url", "", "the member's peer URL, https://IP:2380")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Dial(ctx)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer c.Close()
	switch args[0] {
	case "add":
		if *name == "" || *peer == "" {
			fmt.Fprintln(stderr, "etcd-member add needs --name and --peer-url")
			return 2
		}
		// etcd refuses a new voting member until every current member is connected (a member
		// that just restarted is still catching up): retry for a while.
		var ic string
		perr := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			ic, err = c.Add(ctx, *name, *peer)
			return err == nil || !strings.Contains(err.Error(), "unhealthy cluster"), nil
		})
		if err == nil && perr != nil {
			err = perr
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, ic)
	case "remove":
		if *name == "" && *peer == "" {
			fmt.Fprintln(stderr, "etcd-member remove needs --name or --peer-url")
			return 2
		}
		if err := c.Remove(ctx, *name, *peer); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	case "list":
		ms, err := c.List(ctx)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, InitialCluster(ms))
	default:
		fmt.Fprintln(stderr, errors.New("etcd-member: unknown action "+args[0]))
		return 2
	}
	return 0
}
