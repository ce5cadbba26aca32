package stacks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

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

// listenGroupUDP opens the UDP socket of a Listen on a multicast group
// bound to the group's own address and port (group), with ctrl applied as
// net.ListenConfig applies its Control. ListenPacket cannot do it: for a
// multicast address it binds the wildcard address of the port, and the
// socket then also takes the unicast datagrams sent to that port (as if
// their senders were members of the group), and conflicts with a socket
// bound to a unicast address and that port (a multicast rendezvous's
// sender on the group's port). ok is true: Linux binds group addresses.
func listenGroupUDP(ctrl func(network, address string, c syscall.RawConn) error, group netip.AddrPort) (_ *net.UDPConn, ok bool, _ error) {
	family, network := unix.AF_INET6, "udp6"
	if group.Addr().Unmap().Is4() {
		family, network = unix.AF_INET, "udp4"
	}
	fail := func(op string, err error) (*net.UDPConn, bool, error) {
		return nil, true, &net.OpError{Op: "listen", Net: network, Addr: net.UDPAddrFromAddrPort(group), Err: os.NewSyscallError(op, err)}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fail("socket", err)
	}
	f := os.NewFile(uintptr(fd), "udp-multicast")
	defer f.Close() // FilePacketConn keeps a descriptor of its own
	if ctrl != nil {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, true, err
		}
		if err := ctrl(network, group.String(), rc); err != nil {
			return nil, true, err
		}
	}
	if err := unix.Bind(fd, sockaddrOf(family, group)); err != nil {
		return fail("bind", err)
	}
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, true, err
	}
	uc, isUDP := c.(*net.UDPConn)
	if !isUDP {
		_ = c.Close()
		return nil, true, fmt.Errorf("multicast socket is a %T", c)
	}
	return uc, true, nil
}
