//go:build !linux

package taps

import (
	"net"
	"testing"
)

// awaitFINAcked needs the peer socket's TCP state (TCP_INFO), read on
// Linux only: elsewhere the test that needs it is skipped.
func awaitFINAcked(t *testing.T, _ *net.TCPConn) {
	t.Helper()
	t.Skip("needs the TCP state of the peer's socket (TCP_INFO): Linux only")
}
