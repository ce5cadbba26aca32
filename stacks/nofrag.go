package stacks

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// NoFragDatagrams is implemented by the UDP and UDP-Lite Transports
// (dialled and accepted): datagrams sent without network-layer
// fragmentation (RFC 9622 §9.1.3.9 noFragmentation).
//
// On Linux the socket's IP_MTU_DISCOVER (IPv4, also for IPv4-mapped peers
// of an IPv6 socket) or IPV6_MTU_DISCOVER is switched to IP_PMTUDISC_DO /
// IPV6_PMTUDISC_DO for such a datagram: an IPv4 datagram leaves with the
// Don't Fragment bit, an IPv6 one is never fragmented at the source, and
// one larger than the path MTU the kernel knows is refused with EMSGSIZE.
// On Darwin and FreeBSD IP_DONTFRAG / IPV6_DONTFRAG are switched instead.
// The switch is made only when the state changes: a run of such datagrams
// costs one setsockopt, and so does the way back (AllowFragmentation,
// which restores the value the option had before the first switch).
// Sockets of a Listener are shared by its peers: a peer's plain writes
// restore the default by themselves, and writes of other states wait
// while one peer switches.
type NoFragDatagrams interface {
	// WriteNoFrag sends b as one datagram without network-layer
	// fragmentation, carrying tos (as TOSDatagrams.WriteMsg) when hasTOS.
	// A datagram larger than the path MTU is not sent: the error is a
	// *FragmentationError (ErrFragmentationNeeded) and the Transport
	// stays usable. The socket stays in that state for the datagrams
	// after it until AllowFragmentation.
	WriteNoFrag(b []byte, tos uint8, hasTOS bool) (int, error)
	// AllowFragmentation returns the socket to its default (the kernel
	// may fragment datagrams larger than the path MTU) for the datagrams
	// sent after it; no system call when it is there already.
	AllowFragmentation() error
}

// ErrFragmentationNeeded is wrapped by FragmentationError: a datagram that
// must not be fragmented is larger than the path MTU.
var ErrFragmentationNeeded = errors.New("datagram larger than the path MTU and must not be fragmented (noFragmentation)")

// ErrNoFragUnsupported is returned by WriteNoFrag on systems where a
// socket cannot be told not to fragment (every unix but Linux, Darwin
// and FreeBSD, and Windows); it wraps errors.ErrUnsupported.
var ErrNoFragUnsupported = fmt.Errorf("noFragmentation: %w on this system", errors.ErrUnsupported)

// FragmentationError is the error of a WriteNoFrag whose datagram is
// larger than the path MTU (EMSGSIZE): nothing was sent. It unwraps to
// ErrFragmentationNeeded and to the system call's error.
type FragmentationError struct {
	Size int   // the datagram's payload bytes
	MTU  int   // the path MTU the kernel knows (IP_MTU / IPV6_MTU); 0 when it did not tell
	Err  error // the send's error (EMSGSIZE)
}

func (e *FragmentationError) Error() string {
	if e.MTU > 0 {
		return fmt.Sprintf("datagram of %d bytes not sent: larger than the path MTU %d and must not be fragmented (noFragmentation)", e.Size, e.MTU)
	}
	return fmt.Sprintf("datagram of %d bytes not sent: larger than the path MTU and must not be fragmented (noFragmentation)", e.Size)
}

func (e *FragmentationError) Unwrap() []error { return []error{ErrFragmentationNeeded, e.Err} }

// dfState is a UDP socket's don't-fragment switch, per address family
// (index 0 IPv4, 1 IPv6: the option differs). Sends of the current state
// share the read lock; a switch takes the write lock.
type dfState struct {
	mu   sync.RWMutex
	on   [2]bool
	orig [2]int  // the option's value before the first switch
	read [2]bool // orig was read
}

func dfIndex(v4 bool) int {
	if v4 {
		return 0
	}
	return 1
}

// send runs write with the socket's state for the family set to on,
// switching it first when it differs. rawConn is called only for a
// switch: a write in the current state costs no allocation.
func (s *dfState) send(rawConn func() (syscall.RawConn, error), v4, on bool, write func() (int, error)) (int, error) {
	i := dfIndex(v4)
	for {
		s.mu.RLock()
		if s.on[i] == on {
			n, err := write()
			s.mu.RUnlock()
			return n, err
		}
		s.mu.RUnlock()
		rc, err := rawConn()
		if err != nil {
			return 0, err
		}
		if err := s.set(rc, v4, on); err != nil {
			return 0, err
		}
	}
}

// set switches the family's state to on (one setsockopt, and a
// getsockopt the first time to learn the default).
func (s *dfState) set(rc syscall.RawConn, v4, on bool) error {
	i := dfIndex(v4)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on[i] == on {
		return nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		if !s.read[i] {
			v, err := getDF(int(fd), v4)
			if err != nil {
				serr = err
				return
			}
			s.orig[i], s.read[i] = v, true
		}
		serr = setDF(int(fd), v4, on, s.orig[i])
	})
	if err = errors.Join(err, serr); err != nil {
		return err
	}
	s.on[i] = on
	return nil
}

// anyOn reports whether a family's state is on.
func (s *dfState) anyOn() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.on[0] || s.on[1]
}

// allow switches both families back to the default.
func (s *dfState) allow(rc syscall.RawConn) error {
	if !s.anyOn() {
		return nil
	}
	return errors.Join(s.set(rc, true, false), s.set(rc, false, false))
}

// fragmentationError turns the EMSGSIZE of a don't-fragment send of size
// bytes into a FragmentationError, with the path MTU of a connected
// socket; other errors are returned as they are.
func fragmentationError(rawConn func() (syscall.RawConn, error), v4 bool, size int, err error) error {
	if err == nil || !errors.Is(err, syscall.EMSGSIZE) {
		return err
	}
	fe := &FragmentationError{Size: size, Err: err}
	rc, rerr := rawConn()
	if rerr != nil {
		return fe
	}
	_ = rc.Control(func(fd uintptr) {
		if mtu, err := pathMTU(int(fd), v4); err == nil {
			fe.MTU = mtu
		}
	})
	return fe
}

// isV4 reports whether a is an IPv4 (or IPv4-mapped) UDP address.
func isV4(a net.Addr) bool {
	ua, ok := a.(*net.UDPAddr)
	return ok && ua.AddrPort().Addr().Unmap().Is4()
}

// WriteNoFrag sends b as one datagram without fragmentation; see
// NoFragDatagrams.
func (t *udpTransport) WriteNoFrag(b []byte, tos uint8, hasTOS bool) (int, error) {
	remote := t.UDPConn.RemoteAddr()
	v4 := isV4(remote)
	var oob []byte
	if hasTOS {
		var err error
		if oob, err = tosOOB(remote.(*net.UDPAddr).AddrPort().Addr(), tos); err != nil {
			return 0, err
		}
	}
	n, err := t.df.send(t.SyscallConn, v4, true, func() (int, error) { return t.write(b, oob) })
	return n, fragmentationError(t.SyscallConn, v4, len(b), err)
}

// AllowFragmentation restores the socket's default; see NoFragDatagrams.
func (t *udpTransport) AllowFragmentation() error {
	if !t.df.anyOn() {
		return nil
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return err
	}
	return t.df.allow(rc)
}

// WriteNoFrag sends b as one datagram to the peer without fragmentation;
// see NoFragDatagrams. The listener's socket stays in that state until a
// plain write of any of its peers. Without a TOS the datagram carries the
// peer's own DSCP, if any (setOwnDSCP).
func (p *udpPeer) WriteNoFrag(b []byte, tos uint8, hasTOS bool) (int, error) {
	oob := p.ownOOB()
	if hasTOS {
		var err error
		if oob, err = tosOOB(p.remote.Addr(), tos); err != nil {
			return 0, err
		}
	}
	return p.writeDF(b, oob, true)
}

// AllowFragmentation does nothing: the peer's next plain write restores
// the shared socket's default itself.
func (p *udpPeer) AllowFragmentation() error { return nil }

// writeDF sends one datagram to the peer with the shared socket's
// don't-fragment state set to df.
func (p *udpPeer) writeDF(b, oob []byte, df bool) (int, error) {
	v4 := p.remote.Addr().Unmap().Is4()
	n, err := p.l.df.send(p.l.conn.SyscallConn, v4, df, func() (int, error) { return p.write(b, oob) })
	if df {
		err = fragmentationError(p.l.conn.SyscallConn, v4, len(b), err)
	}
	return n, err
}

// KeepStreamDF makes sure the TCP socket under t (TCP or TLS) sets the
// Don't Fragment bit, which is what noFragmentation asks of a byte
// stream: the transport segments to the path MTU, and Linux sets DF on
// TCP by default (IP_PMTUDISC_WANT) unless the socket or the system
// (net.ipv4.ip_no_pmtu_disc) turned path MTU discovery off
// (IP_PMTUDISC_DONT), which is then switched back to IP_PMTUDISC_WANT.
// Elsewhere it does nothing. Transports without a socket of their own
// report ErrNotApplicable.
func KeepStreamDF(t Transport) error {
	rc, isTCP, network, err := rawSocket(t)
	if err != nil {
		return err
	}
	if !isTCP {
		return fmt.Errorf("%w: not a TCP socket", ErrNotApplicable)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = keepStreamDF(int(fd), network == "tcp4") }); err != nil {
		return err
	}
	return serr
}
