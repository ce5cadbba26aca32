//go:build unix && !linux

package stacks

import (
	"errors"
	"fmt"
	"net/netip"
)

// udpLiteSocket fails with ErrUDPLiteUnsupported: UDP-Lite sockets are
// Linux only.
func udpLiteSocket(netip.Addr, netip.AddrPort, Options) (int, error) {
	return -1, fmt.Errorf("%w: %w", ErrUDPLiteUnsupported, errors.ErrUnsupported)
}
