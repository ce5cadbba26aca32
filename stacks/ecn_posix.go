//go:build unix

package stacks

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// msgTrunc is the recvmsg flag of a datagram longer than the buffer.
const msgTrunc = unix.MSG_TRUNC

// enableRecvTOS sets IP_RECVTOS, and IPV6_RECVTCLASS on IPv6 sockets (where
// IP_RECVTOS still covers IPv4-mapped peers, best effort).
func enableRecvTOS(fd int) error {
	domain, err := socketDomain(fd)
	if err != nil {
		return fmt.Errorf("get SO_DOMAIN: %w", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1); err != nil {
			return fmt.Errorf("set IPV6_RECVTCLASS: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1); err != nil {
		return fmt.Errorf("set IP_RECVTOS: %w", err)
	}
	return nil
}

// tosOOBSpace is enough control message space for one TOS / TCLASS value.
var tosOOBSpace = unix.CmsgSpace(4)

// parseTOS finds the TOS (IPv4, one byte) or Traffic Class (IPv6, an int)
// in received control messages.
func parseTOS(oob []byte) uint8 {
	if len(oob) == 0 {
		return 0
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == solIP && m.Header.Type == recvTOSType && len(m.Data) >= 1:
			return m.Data[0]
		case m.Header.Level == solIPv6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			return uint8(binary.NativeEndian.Uint32(m.Data[:4]))
		}
	}
	return 0
}

// tosOOB is the control message that sends one datagram to remote with
// tos: IP_TOS for IPv4 (and IPv4-mapped) peers, IPV6_TCLASS for IPv6.
// IPV6_TCLASS carries an int; IP_TOS an int or, on some BSDs, one byte
// (ipTOSCmsgLen). It never fails here.
func tosOOB(remote netip.Addr, tos uint8) ([]byte, error) {
	n := 4
	if remote.Unmap().Is4() {
		n = ipTOSCmsgLen
	}
	b := make([]byte, unix.CmsgSpace(n))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.SetLen(unix.CmsgLen(n))
	if remote.Unmap().Is4() {
		h.Level, h.Type = solIP, unix.IP_TOS
	} else {
		h.Level, h.Type = solIPv6, unix.IPV6_TCLASS
	}
	if n == 1 {
		b[unix.CmsgLen(0)] = tos
	} else {
		binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(tos))
	}
	return b, nil
}
