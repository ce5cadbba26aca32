package stacks

import (
	"errors"
	"net"
)

// UDP-Lite (RFC 3828) protocol number and socket options (linux/udp.h);
// golang.org/x/sys does not define them.
const (
	ipprotoUDPLite   = 136 // IPPROTO_UDPLITE
	solUDPLite       = 136 // SOL_UDPLITE
	udpliteSendCscov = 10  // UDPLITE_SEND_CSCOV
	udpliteRecvCscov = 11  // UDPLITE_RECV_CSCOV
	udpliteHeaderLen = 8
)

// ErrUDPLiteUnsupported is wrapped by the UDP-Lite stack's Dial and Listen
// when the kernel has no UDP-Lite (EPROTONOSUPPORT).
var ErrUDPLiteUnsupported = errors.New("kernel does not support UDP-Lite")

type udpLiteStack struct{}

// UDPLite returns the UDP-Lite stack (RFC 3828, IP protocol 136): UDP
// with a checksum that may cover only the start of each datagram, for
// applications that prefer damaged data to none (RFC 9622
// fullChecksumSend / fullChecksumRecv not required, msgChecksumLen,
// recvChecksumLen). Datagrams, Listener demultiplexing, TOS/ECN and soft
// errors work as on the UDP stack; it also applies
// Options.SendChecksumLen and RecvChecksumLen, and its Transports implement
// ChecksumCoverage. Sockets are opened with raw syscalls; Dial and Listen
// fail with ErrUDPLiteUnsupported on kernels without UDP-Lite and on
// every system but Linux (on Windows too, where it also wraps
// errors.ErrUnsupported).
//
// Its Capabilities are UDP's with FullChecksumSend and FullChecksumRecv
// false, so selection only picks it when full coverage is not required.
func UDPLite() Stack { return udpLiteStack{} }

func (udpLiteStack) Name() string { return "udplite" }

func (udpLiteStack) Capabilities() Capabilities {
	return Capabilities{PreserveMsgBoundaries: true, SoftErrorNotify: softErrorsDelivered}
}

// ChecksumCoverage is implemented by UDP-Lite Transports. The coverage is
// a socket option: on an accepted Transport it is shared by every peer of
// its Listener. Safe for concurrent use; read the values in effect back
// with TransportInfo.SendChecksumCoverage / RecvChecksumCoverage.
type ChecksumCoverage interface {
	// SetSendChecksumLen sets how many payload bytes the checksum of the
	// datagrams sent from now on covers (UDPLITE_SEND_CSCOV), with the
	// meaning of Options.SendChecksumLen: 0 full, n > 0 the first n
	// bytes, negative the header only. The kernel uses full coverage
	// for datagrams not longer than the coverage.
	SetSendChecksumLen(n int) error
	// SetRecvChecksumLen sets the least coverage a received datagram must
	// have (UDPLITE_RECV_CSCOV), as Options.RecvChecksumLen.
	SetRecvChecksumLen(n int) error
}

// cscov converts a payload length in Options' convention to the kernel's
// coverage value (header included, 0 = full).
func cscov(n int) int {
	switch {
	case n == 0:
		return 0
	case n < 0:
		return udpliteHeaderLen
	}
	return min(n+udpliteHeaderLen, 0xffff)
}

// udpLiteTransport is a connected UDP-Lite socket.
type udpLiteTransport struct{ *udpTransport }

func (t *udpLiteTransport) SetSendChecksumLen(n int) error {
	return controlFD(t.UDPConn, func(fd int) error { return setCoverage(fd, udpliteSendCscov, n) })
}

func (t *udpLiteTransport) SetRecvChecksumLen(n int) error {
	return controlFD(t.UDPConn, func(fd int) error { return setCoverage(fd, udpliteRecvCscov, n) })
}

// Info adds the checksum coverage to the UDP information.
func (t *udpLiteTransport) Info() (TransportInfo, error) {
	info, err := t.udpTransport.Info()
	if err != nil {
		return info, err
	}
	return info, readCoverage(t.UDPConn, &info)
}

// udpLiteListener demultiplexes one UDP-Lite socket by peer like the UDP
// listener.
type udpLiteListener struct{ *udpListener }

func (l *udpLiteListener) Accept() (Transport, error) {
	tr, err := l.udpListener.Accept()
	if err != nil {
		return nil, err
	}
	return &udpLitePeer{tr.(*udpPeer)}, nil
}

// udpLitePeer is one peer of a udpLiteListener; its coverage settings are
// the shared socket's.
type udpLitePeer struct{ *udpPeer }

func (p *udpLitePeer) SetSendChecksumLen(n int) error {
	return controlFD(p.l.conn, func(fd int) error { return setCoverage(fd, udpliteSendCscov, n) })
}

func (p *udpLitePeer) SetRecvChecksumLen(n int) error {
	return controlFD(p.l.conn, func(fd int) error { return setCoverage(fd, udpliteRecvCscov, n) })
}

func (p *udpLitePeer) Info() (TransportInfo, error) {
	info, err := p.udpPeer.Info()
	if err != nil {
		return info, err
	}
	return info, readCoverage(p.l.conn, &info)
}

// controlFD runs f on the descriptor of c.
func controlFD(c *net.UDPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
