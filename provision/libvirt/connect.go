// Package libvirt is kubeforge's VM driver (--driver kvm): nodes are libvirt domains booting the
// VM node image (images.BuildVM) on a NAT network of the cluster's own, reached over SSH
// (golang.org/x/crypto/ssh, host key pinned). It talks to a local or remote libvirt daemon with
// github.com/digitalocean/go-libvirt (qemu:///system, qemu+ssh://..., qemu+libssh://...), with
// errors that name the problem and the fix; domain, network, pool and volume definitions come
// from libvirt's typed XML structs (libvirt.org/go/libvirtxml).
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
)

// DefaultURI is the local system daemon.
const DefaultURI = "qemu:///system"

// ConnectTimeout bounds a connection attempt (an unreachable remote host, a daemon that does not
// answer).
const ConnectTimeout = 20 * time.Second

// installHint is how to get a local libvirt on Debian or Ubuntu.
const installHint = "install and start libvirt: apt-get install -y libvirt-daemon-system qemu-system-x86, then `systemctl start libvirtd` (or run `libvirtd -d`)"

// ParseURI checks a libvirt URI kubeforge can use: the qemu driver over the local socket
// (qemu:///system, qemu+unix:///system?socket=PATH) or SSH (qemu+ssh://user@host[:port]/system).
func ParseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, kferr.Usage("--libvirt-uri %q is not a URI: use %s or qemu+ssh://USER@HOST/system", s, DefaultURI)
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return nil, kferr.Usage("--libvirt-uri %q: kubeforge runs VMs with libvirt's qemu driver; use %s or qemu+ssh://USER@HOST/system", s, DefaultURI)
	}
	switch transport {
	case "", "unix":
		if u.Host != "" && transport == "" {
			return nil, kferr.Usage("--libvirt-uri %q: a remote host needs a transport; use qemu+ssh://%s/system", s, u.Host)
		}
	case "ssh", "libssh", "libssh2":
		if u.Hostname() == "" {
			return nil, kferr.Usage("--libvirt-uri %q names no host: use qemu+ssh://USER@HOST/system", s)
		}
	default:
		return nil, kferr.Usage("--libvirt-uri %q: transport %q is not supported; use the local socket (%s) or ssh (qemu+ssh://USER@HOST/system)", s, transport, DefaultURI)
	}
	if u.Path != "/system" && u.Path != "/session" {
		return nil, kferr.Usage("--libvirt-uri %q: use the /system (or /session) daemon, e.g. %s", s, DefaultURI)
	}
	return u, nil
}

// Connect connects to the libvirt daemon at uri within ConnectTimeout (or ctx's deadline).
func Connect(ctx context.Context, uri string) (*golibvirt.Libvirt, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	type result struct {
		l   *golibvirt.Libvirt
		err error
	}
	done := make(chan result, 1)
	go func() {
		var l *golibvirt.Libvirt
		err := safe.Call(func() (err error) {
			l, err = golibvirt.ConnectToURI(u)
			return err
		})
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, connectError(u, r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		go func() { // the attempt may still succeed: close what it opens
			if r := <-done; r.l != nil {
				_ = safe.Call(r.l.Disconnect) // a panic in it must not end the process
			}
		}()
		return nil, kferr.Environment(fixFor(u, "check that the host is up and libvirtd runs there"),
			"libvirt at %s did not answer within %s", redacted(u), ConnectTimeout)
	}
}

// connectError explains why a connection failed and how to fix it.
func connectError(u *url.URL, err error) error {
	where := redacted(u)
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ENOENT) || (errors.Is(err, syscall.ECONNREFUSED) && isLocal(u)):
		return kferr.Environment(installHint, "no libvirt daemon answers at %s (%v)", where, err)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return kferr.Environment("add your user to the libvirt group (`sudo usermod -aG libvirt $USER`, then log in again), or run as root",
			"permission denied on libvirt's socket for %s", where)
	case strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "no supported methods remain"):
		return kferr.Environment(fmt.Sprintf("check the user in the URI and that your SSH key (~/.ssh/id_ed25519 or ?keyfile=PATH) is in %s's authorized_keys", u.Hostname()),
			"SSH to %s refused the credentials", u.Host)
	case strings.Contains(msg, "knownhosts") || strings.Contains(msg, "host key"):
		return kferr.Environment(fmt.Sprintf("connect once with `ssh %s` to check and record its host key in ~/.ssh/known_hosts", u.Host),
			"the SSH host key of %s is unknown or changed: %v", u.Host, err)
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || strings.Contains(msg, "i/o timeout"):
		return kferr.Environment(fixFor(u, "check the host name and port, and that sshd runs there"), "cannot reach %s: %v", u.Host, err)
	}
	return kferr.Environment(fixFor(u, installHint), "connecting to libvirt at %s: %v", where, err)
}

func isLocal(u *url.URL) bool { return u.Host == "" }

// fixFor is the local install hint for a local URI, remote otherwise.
func fixFor(u *url.URL, remote string) string {
	if isLocal(u) {
		return installHint
	}
	return remote
}

// redacted is u without a password.
func redacted(u *url.URL) string { return u.Redacted() }

// notFound tells whether err is libvirt's "no such domain, network, pool or volume".
func notFound(err error) bool {
	var le golibvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork, golibvirt.ErrNoStoragePool, golibvirt.ErrNoStorageVol:
		return true
	}
	return false
}
