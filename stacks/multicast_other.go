//go:build !linux && !windows

package stacks

import (
	"net"
	"net/netip"
	"syscall"
)

// multicastOnlyJoined: the BSDs deliver a group's datagrams to the sockets
// that joined it only.
func multicastOnlyJoined(*net.UDPConn, bool) error { return nil }

// multicastBindAddr is the address a listener of the group binds: the
// group's own (only the group's datagrams reach the socket).
func multicastBindAddr(group netip.AddrPort) netip.AddrPort { return group }

// listenGroupUDP is Linux's (multicast_linux.go): here ListenPacket binds
// the group's port (ok false).
func listenGroupUDP(func(network, address string, c syscall.RawConn) error, netip.AddrPort) (*net.UDPConn, bool, error) {
	return nil, false, nil
}
