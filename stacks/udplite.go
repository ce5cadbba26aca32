package stacks

import (
	"errors"
	"fmt"
	"net"
	"sync"
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
// a socket option. On an accepted Transport the socket is shared by every
// peer of its Listener: the send coverage is the peer's own (each of its
// datagrams leaves with it, the shared socket switched for it while no
// other peer's datagram is being written), while the receive coverage is
// the socket's, every peer's, which a peer's SetRecvChecksumLen cannot
// change (ErrNotApplicable). Safe for concurrent use; read the values in
// effect back with TransportInfo.SendChecksumCoverage /
// RecvChecksumCoverage.
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

// udpLitePeer is one peer of a udpLiteListener; its send coverage is its
// own (udpPeer.sendCov, set on the shared socket for each of its
// datagrams: covState), its receive coverage the shared socket's.
type udpLitePeer struct{ *udpPeer }

// SetSendChecksumLen sets the coverage of the peer's datagrams sent from
// now on; no system call until one of them is written (covState).
func (p *udpLitePeer) SetSendChecksumLen(n int) error {
	p.sendCov.Store(int32(max(min(n, 0xffff), -1)))
	return nil
}

// SetRecvChecksumLen fails with ErrNotApplicable unless n is the
// coverage the shared socket already requires: the kernel checks it on
// every datagram the socket receives, from every peer, and does not tell
// a datagram's coverage, so one peer cannot have a minimum of its own
// (setting it would change every other peer's, and the Listener's).
func (p *udpLitePeer) SetRecvChecksumLen(n int) error {
	var info TransportInfo
	if err := readCoverage(p.l.conn, &info); err != nil {
		return err
	}
	if info.RecvChecksumCoverage == cscov(n) {
		return nil
	}
	return fmt.Errorf("%w: the receive checksum coverage of a UDP-Lite Listener's socket is shared by every peer it "+
		"accepted (set recvChecksumLen on the Listener's Preconnection)", ErrNotApplicable)
}

func (p *udpLitePeer) Info() (TransportInfo, error) {
	info, err := p.udpPeer.Info()
	if err != nil {
		return info, err
	}
	if err := readCoverage(p.l.conn, &info); err != nil {
		return info, err
	}
	info.SendChecksumCoverage = cscov(int(p.sendCov.Load())) // the peer's, not the socket's last
	return info, nil
}

// covState is the send coverage (UDPLITE_SEND_CSCOV) of a UDP-Lite
// listener's socket, shared by its peers, each of which sends with a
// coverage of its own: a datagram whose peer's coverage is the socket's
// is written under the read lock, beside others of that coverage; one
// that needs another switches the socket and is written under the write
// lock, so that no other peer's datagram leaves with its coverage.
type covState struct {
	def int // the listener's coverage (Options.SendChecksumLen): a new peer's
	mu  sync.RWMutex
	cur int // the socket's coverage, Options.SendChecksumLen's convention
}

// send writes one datagram (write) of a peer whose coverage is want on the
// socket c, switching the socket to want first if needed.
func (s *covState) send(c *net.UDPConn, want int, write func() (int, error)) (int, error) {
	s.mu.RLock()
	if s.cur == want {
		defer s.mu.RUnlock()
		return write()
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != want {
		if err := controlFD(c, func(fd int) error { return setCoverage(fd, udpliteSendCscov, want) }); err != nil {
			return 0, err
		}
		s.cur = want
	}
	return write()
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
