package stacks

import (
	"errors"
	"net/netip"
	"syscall"
)

// ECN codepoints (RFC 3168), the low two bits of the TOS / Traffic Class
// byte.
const (
	NotECT uint8 = 0 // not ECN-capable
	ECT1   uint8 = 1 // ECN-capable transport, ECT(1)
	ECT0   uint8 = 2 // ECN-capable transport, ECT(0)
	ECNCE  uint8 = 3 // congestion experienced
)

// TOS builds a TOS / Traffic Class byte from a 6-bit DSCP and a 2-bit ECN
// codepoint.
func TOS(dscp, ecn uint8) uint8 { return dscp<<2 | ecn&3 }

// ECNOf returns the ECN codepoint of a TOS byte (tos & 3).
func ECNOf(tos uint8) uint8 { return tos & 3 }

// DSCPOf returns the DSCP of a TOS byte (tos >> 2).
func DSCPOf(tos uint8) uint8 { return tos >> 2 }

// TOSDatagrams is implemented by the UDP and UDP-Lite Transports (dialled
// and accepted): per-datagram access to the IP TOS byte (IPv4) or Traffic
// Class (IPv6), which holds the DSCP and the ECN bits. Receiving is always
// on (IP_RECVTOS / IPV6_RECVTCLASS are set on every UDP socket). ReadMsg
// and WriteMsg are as safe for concurrent use as Read and Write. On
// Windows, which has no TOS control messages, ReadMsg always reports TOS 0
// and WriteMsg fails with errors.ErrUnsupported.
type TOSDatagrams interface {
	// ReadMsg reads one datagram like Read and returns the TOS byte it
	// arrived with (ECN = tos & 3, DSCP = tos >> 2; 0 when the kernel
	// did not say).
	ReadMsg(b []byte) (n int, tos uint8, err error)
	// WriteMsg sends b as one datagram carrying tos, set for this
	// datagram only by an IP_TOS / IPV6_TCLASS control message; the
	// socket's own DSCP (Options.DSCP) stays for other datagrams.
	WriteMsg(b []byte, tos uint8) (int, error)
}

// ReadMsg reads one datagram and its TOS byte; see TOSDatagrams.
func (t *udpTransport) ReadMsg(b []byte) (int, uint8, error) { return t.readMsg(b) }

// WriteMsg sends one datagram with its own TOS byte; see TOSDatagrams.
func (t *udpTransport) WriteMsg(b []byte, tos uint8) (int, error) {
	oob, err := tosOOB(t.remoteAddr(), tos)
	if err != nil {
		return 0, err
	}
	return t.write(b, oob)
}

func (t *udpTransport) remoteAddr() netip.Addr {
	if ap, err := netip.ParseAddrPort(t.RemoteAddr().String()); err == nil {
		return ap.Addr()
	}
	return netip.Addr{}
}

// readMsg reads one datagram with its TOS byte, swallowing pending ICMP
// errors (sk_err) and turning them into SoftErrors when asked to.
func (t *udpTransport) readMsg(b []byte) (int, uint8, error) {
	oob := make([]byte, tosOOBSpace)
	for {
		n, oobn, flags, _, err := t.ReadMsgUDP(b, oob)
		if err != nil {
			if isSoftErrno(err, true) {
				t.softError()
				continue
			}
			return 0, 0, err
		}
		tos := parseTOS(oob[:oobn])
		if flags&msgTrunc != 0 {
			return n, tos, ErrMessageTruncated
		}
		return n, tos, nil
	}
}

// write sends one datagram (with control message oob, may be nil). A
// pending ICMP error reported by the send instead of sending is
// swallowed (and delivered as SoftError) and the send retried.
func (t *udpTransport) write(b, oob []byte) (int, error) {
	for i := 0; ; i++ {
		var n int
		var err error
		if oob == nil {
			n, err = t.UDPConn.Write(b)
		} else {
			n, _, err = t.WriteMsgUDP(b, oob, t.peer)
		}
		if err != nil && i < 3 && isSoftErrno(err, false) {
			t.softError()
			continue
		}
		return n, err
	}
}

// softError delivers the queued ICMP errors when SoftErrors is on.
func (t *udpTransport) softError() {
	if t.soft == nil {
		return
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return
	}
	for _, se := range drainErrQueue(rc) {
		t.soft.deliver(se)
	}
}

// configureUDPSocket enables IP_RECVTOS / IPV6_RECVTCLASS and, with
// softErrors, IP_RECVERR / IPV6_RECVERR on a UDP or UDP-Lite socket.
func configureUDPSocket(c syscall.Conn, softErrors bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = enableRecvTOS(int(fd))
		if serr == nil && softErrors {
			serr = enableRecvErr(int(fd))
		}
	})
	return errors.Join(err, serr)
}
