package stacks

import (
	"encoding/binary"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A UDP (or UDP-Lite) Listener bound to the wildcard address learns the
// address each datagram was sent to (IP_PKTINFO, IPV6_RECVPKTINFO) and
// answers each peer from that address (an IP_PKTINFO / IPV6_PKTINFO
// control message on every datagram to it): without it the kernel picks
// the source by route, and a peer that sent to another of the host's
// addresses (127.0.0.2, a secondary address, an address reached by
// another interface) gets its answers from an address it never sent to,
// which its connected socket drops.

// dstOOBSpace is the control message space of one IPv6 and one IPv4
// packet-info value.
var dstOOBSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(unix.SizeofInet4Pktinfo)

// enableRecvDst turns the reporting of each datagram's destination address
// on for a socket bound to the wildcard address, and reports whether it
// did (false for a socket bound to one address, which needs none).
func enableRecvDst(c *net.UDPConn) (bool, error) {
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok || !ua.AddrPort().Addr().IsUnspecified() {
		return false, nil
	}
	err := controlFD(c, func(fd int) error {
		domain, err := socketDomain(fd)
		if err != nil {
			return err
		}
		if domain == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
				return err
			}
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1) // IPv4-mapped peers of a dual-stack socket
			return nil
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
	})
	return err == nil, err
}

// parseTOSDst is parseTOS that also finds the destination address of a
// received datagram (the zero Addr when none says), in one pass.
func parseTOSDst(oob []byte) (tos uint8, dst netip.Addr) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == solIP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			dst = netip.AddrFrom4(pi.Addr)
		case m.Header.Level == solIPv6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			dst = netip.AddrFrom16(pi.Addr).Unmap()
		case m.Header.Level == solIP && m.Header.Type == recvTOSType && len(m.Data) >= 1:
			tos = m.Data[0]
		case m.Header.Level == solIPv6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			tos = uint8(binary.NativeEndian.Uint32(m.Data[:4]))
		}
	}
	return tos, dst
}

// srcOOB is the control message that sends a datagram to remote from the
// local address src: IP_PKTINFO for an IPv4 (or IPv4-mapped) peer,
// IPV6_PKTINFO for an IPv6 one; nil when src is not a unicast address of
// remote's family.
func srcOOB(src, remote netip.Addr) []byte {
	if !src.IsValid() || src.IsUnspecified() || src.IsMulticast() || src.Is4() != remote.Unmap().Is4() {
		return nil
	}
	if src.Is4() {
		b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = solIP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Spec_dst = src.As4()
		return b
	}
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = solIPv6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	pi.Addr = src.As16()
	if z := src.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			pi.Ifindex = uint32(ifi.Index)
		}
	}
	return b
}
