//go:build !linux

package netctl

import (
	"context"
	"errors"
	"net/netip"
)

// SetupDNS is only implemented on Linux.
func SetupDNS(context.Context, netip.Addr, string, string) error {
	return errors.New("netctl boot: only supported on Linux")
}

// GuardServiceCIDR is only implemented on Linux.
func GuardServiceCIDR(netip.Prefix) error { return errors.New("netctl: only supported on Linux") }
