package stacks

import (
	"net"
	"net/netip"
	"syscall"
)

// multicastOnlyJoined: Windows delivers a group's datagrams to the sockets
// that joined it only.
func multicastOnlyJoined(*net.UDPConn, bool) error { return nil }

// multicastBindAddr is the address a listener of the group binds: Windows
// cannot bind a multicast address, so the wildcard address of the group's
// family, on the group's port (unicast datagrams to that port reach the
// listener too).
func multicastBindAddr(group netip.AddrPort) netip.AddrPort {
	if group.Addr().Unmap().Is4() {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), group.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Unspecified(), group.Port())
}

// listenGroupUDP is Linux's (multicast_linux.go): here ListenPacket binds
// the group's port (ok false).
func listenGroupUDP(func(network, address string, c syscall.RawConn) error, netip.AddrPort) (*net.UDPConn, bool, error) {
	return nil, false, nil
}
