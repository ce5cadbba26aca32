package stacks

import (
	"net"

	"golang.org/x/sys/unix"
)

// singularMax reads the largest payload of one packet of a connected
// socket (TransportInfo.SingularMsgMaxLen): for UDP the path MTU less the
// IP and UDP headers, for TCP the MSS.
func singularMax(fd int, kind sockKind, v4 bool) (int, error) {
	if kind == sockTCP {
		return unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	}
	mtu, err := pathMTU(fd, v4)
	if err != nil {
		return 0, err
	}
	hdr := 40 + 8
	if v4 {
		hdr = 20 + 8
	}
	return max(mtu-hdr, 0), nil
}

// udpSingularMax is the SingularMsgMaxLen of a connected UDP socket, 0 when
// unknown. IP_MTU answers from the route the socket has cached, which a
// change of IP_TOS drops until the next send (ENOTCONN then): a probe
// socket connected to the same peer answers instead.
func udpSingularMax(c *net.UDPConn) int {
	remote, _ := c.RemoteAddr().(*net.UDPAddr)
	if remote == nil {
		return 0
	}
	v4 := remote.AddrPort().Addr().Unmap().Is4()
	n := 0
	err := controlFD(c, func(fd int) error {
		var err error
		n, err = singularMax(fd, sockUDP, v4)
		return err
	})
	if err != nil {
		n, _ = probeSingularMax(remote)
	}
	return n
}

// probeSingularMax is singularMax for a peer of a shared, unconnected
// socket (a UDP listener's): a probe socket connected to the peer reads
// the path MTU the kernel knows for it. Connecting a UDP socket sends
// nothing.
func probeSingularMax(remote *net.UDPAddr) (int, error) {
	c, err := net.DialUDP("udp", nil, remote)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	v4 := remote.AddrPort().Addr().Unmap().Is4()
	n := 0
	err = controlFD(c, func(fd int) error {
		var err error
		n, err = singularMax(fd, sockUDP, v4)
		return err
	})
	return n, err
}
