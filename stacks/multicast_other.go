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

// multicastBindAddr is the address a listener of the group asks for: the
// group's own. net.ListenPacket (listenGroupUDP is ok false here) binds
// the wildcard address of the group's port in its place, so unicast
// datagrams to that port reach the listener too, as on Windows.
func multicastBindAddr(group netip.AddrPort) netip.AddrPort { return group }

// listenGroupUDP is Linux's (multicast_linux.go): here ListenPacket binds
// the group's port (ok false).
func listenGroupUDP(func(network, address string, c syscall.RawConn) error, netip.AddrPort) (*net.UDPConn, bool, error) {
	return nil, false, nil
}
