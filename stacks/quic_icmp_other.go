//go:build !linux

package stacks

import (
	"context"
	"net/netip"
)

// watchQUICICMP leaves sock and ctx as they are: outside Linux an
// unconnected UDP socket has no error queue (the BSDs and macOS report
// ICMP errors on connected sockets only; Go turns the reporting off on
// Windows, SIO_UDP_CONNRESET), so a QUIC dial to a port where nothing
// listens ends by its handshake timeout. See quic_icmp_linux.go.
func watchQUICICMP(ctx context.Context, sock *quicSocket, _ netip.AddrPort) (quicUDP, context.Context, icmpWatch) {
	return sock, ctx, noICMPWatch{}
}
