//go:build !linux

package netctl

import (
	"context"
	"errors"
	"net/netip"
)

// SetupDNS is only implemented on Linux.
func SetupDNS(context.Context, netip.Addr, string, string) error {
	return errors.New("netctl dns: only supported on Linux")
}
