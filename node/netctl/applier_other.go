//go:build !linux

package netctl

import "errors"

// HostApplier is the Applier of a real node; it exists on Linux only.
type HostApplier struct{}

// NewHostApplier fails: routes and iptables are Linux-only.
func NewHostApplier(cniConfDir string) (*HostApplier, error) {
	return nil, errors.New("netctl: the node network controller runs on Linux only")
}

// ConfPath is the CNI config file the applier writes.
func (a *HostApplier) ConfPath() string { return "" }

// WriteCNIConfig is not supported outside Linux.
func (a *HostApplier) WriteCNIConfig([]byte) error { return errUnsupported }

// SyncRoutes is not supported outside Linux.
func (a *HostApplier) SyncRoutes([]Route) error { return errUnsupported }

// EnsureMasquerade is not supported outside Linux.
func (a *HostApplier) EnsureMasquerade(string) error { return errUnsupported }

var errUnsupported = errors.New("netctl: not supported on this OS")
