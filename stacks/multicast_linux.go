package stacks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// multicastOnlyJoined turns IP_MULTICAST_ALL (IPV6_MULTICAST_ALL for an
// IPv6 socket) off: the socket then receives the multicast datagrams its
// own memberships let in, not those of every group some socket of the
// host joined (Linux's default). IPV6_MULTICAST_ALL came with Linux 4.20:
// without it the IPv6 socket keeps the default.
func multicastOnlyJoined(c *net.UDPConn, v6 bool) error {
	return controlFD(c, func(fd int) error {
		if v6 {
			err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
			if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
				return fmt.Errorf("set IPV6_MULTICAST_ALL: %w", err)
			}
			return nil
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
			return fmt.Errorf("set IP_MULTICAST_ALL: %w", err)
		}
		return nil
	})
}

// multicastBindAddr is the address a listener of the group binds: the
// group's own (only the group's datagrams reach the socket).
func multicastBindAddr(group netip.AddrPort) netip.AddrPort { return group }
