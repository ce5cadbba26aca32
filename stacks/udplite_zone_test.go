//go:build unix

package stacks

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestUDPLiteSockaddrTakesANumericZone: UDP-Lite builds its own socket
// addresses; a link-local address's zone may name the interface or give
// its index in decimal, as the net package takes both ("fe80::1%1" binds
// on interface 1). Before, a numeric zone was dropped (scope id 0), and
// binding such an address failed with EINVAL.
func TestUDPLiteSockaddrTakesANumericZone(t *testing.T) {
	for i, tt := range []struct {
		addr string
		want uint32
	}{
		{"[fe80::1%1]:7", 1},
		{"[fe80::1%4294967295]:7", 4294967295},
		{"[fe80::1%no-such-interface]:7", 0},
		{"[fe80::1]:7", 0},
	} {
		sa, ok := sockaddrOf(unix.AF_INET6, netip.MustParseAddrPort(tt.addr)).(*unix.SockaddrInet6)
		require.True(t, ok, "#%d", i)
		require.Equal(t, tt.want, sa.ZoneId, "#%d: %s", i, tt.addr)
		require.Equal(t, 7, sa.Port, "#%d", i)
	}
}
