package stacks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SoftError is an ICMP (or ICMPv6) error the kernel reported for a datagram
// the Transport sent (RFC 9622 SoftError): the peer's port is closed, the
// host or network is unreachable, the path MTU is smaller, ... It does not
// end the Transport.
type SoftError struct {
	// Err is the errno the kernel derived from the ICMP message
	// (syscall.ECONNREFUSED for port unreachable, EHOSTUNREACH,
	// ENETUNREACH, EMSGSIZE for "fragmentation needed", ...).
	Err error
	// Offender is the node that sent the ICMP error (SO_EE_OFFENDER); the
	// zero Addr when the kernel did not tell.
	Offender netip.Addr
	// Dest is the destination of the datagram that caused the error.
	Dest netip.AddrPort
	// Origin is the ee_origin of the extended error (2 = ICMP, 3 =
	// ICMPv6, 1 = local); Type and Code are the ICMP type and code; Info
	// is ee_info (the next-hop MTU for EMSGSIZE).
	Origin, Type, Code uint8
	Info               uint32
}

func (e *SoftError) Error() string {
	s := fmt.Sprintf("soft error: %v (ICMP type %d code %d", e.Err, e.Type, e.Code)
	if e.Offender.IsValid() {
		s += " from " + e.Offender.String()
	}
	if e.Dest.IsValid() {
		s += " for " + e.Dest.String()
	}
	return s + ")"
}

// Unwrap returns Err, so errors.Is(err, syscall.ECONNREFUSED) works.
func (e *SoftError) Unwrap() error { return e.Err }

// SoftErrorNotifier is implemented by the UDP and UDP-Lite Transports.
type SoftErrorNotifier interface {
	// SoftErrors returns the channel on which ICMP errors arrive as
	// *SoftError when the Transport was made with Options.SoftErrors (nil
	// otherwise: a nil channel never delivers). Errors are found while a
	// Read or Write is under way, so someone must be reading. The channel
	// holds SoftErrorQueue errors; newer ones are dropped when it is full.
	// It is closed when the Transport is closed. Safe for concurrent use.
	SoftErrors() <-chan error
}

// SoftErrorQueue is the capacity of a Transport's SoftErrors channel.
const SoftErrorQueue = 16

// softErrors is the channel end of a Transport with Options.SoftErrors.
type softErrors struct {
	mu      sync.Mutex
	ch      chan error
	closed  bool
	dropped atomic.Uint64
}

func newSoftErrors() *softErrors { return &softErrors{ch: make(chan error, SoftErrorQueue)} }

func (s *softErrors) deliver(e *SoftError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

func (s *softErrors) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// chanOf returns s.ch, or nil for a nil s.
func (s *softErrors) chanOf() <-chan error {
	if s == nil {
		return nil
	}
	return s.ch
}

// isSoftErrno tells whether a Read or Write error is a pending ICMP error
// (sk_err) rather than a failure of the socket. onRead also accepts
// EMSGSIZE, which on a write means the datagram itself is too large.
func isSoftErrno(err error, onRead bool) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN,
		unix.ENONET, unix.EPROTO, unix.ECONNRESET:
		return true
	case unix.EMSGSIZE:
		return onRead
	}
	return false
}

// enableRecvErr sets IP_RECVERR (and IPV6_RECVERR on IPv6 sockets, where
// IP_RECVERR still covers IPv4-mapped peers).
func enableRecvErr(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("get SO_DOMAIN: %w", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1); err != nil {
			return fmt.Errorf("set IPV6_RECVERR: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1) // mapped peers, best effort
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		return fmt.Errorf("set IP_RECVERR: %w", err)
	}
	return nil
}

// drainErrQueue reads every error queued on the socket (recvmsg
// MSG_ERRQUEUE, non-blocking) and returns them.
func drainErrQueue(rc syscall.RawConn) []*SoftError {
	var out []*SoftError
	_ = rc.Control(func(fd uintptr) {
		var buf [512]byte
		var oob [512]byte
		for {
			_, oobn, _, from, err := unix.Recvmsg(int(fd), buf[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			if se := parseErrQueue(oob[:oobn], from); se != nil {
				out = append(out, se)
			}
		}
	})
	return out
}

// parseErrQueue turns the IP_RECVERR / IPV6_RECVERR control message of one
// error queue entry into a SoftError.
func parseErrQueue(oob []byte, from unix.Sockaddr) *SoftError {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
	for _, m := range msgs {
		isErr := (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR)
		if !isErr || len(m.Data) < eeSize {
			continue
		}
		d := m.Data
		se := &SoftError{
			Err:    syscall.Errno(binary.NativeEndian.Uint32(d[0:4])),
			Origin: d[4],
			Type:   d[5],
			Code:   d[6],
			Info:   binary.NativeEndian.Uint32(d[8:12]),
			Dest:   sockaddrToAddrPort(from),
		}
		se.Offender = offender(d[eeSize:])
		return se
	}
	return nil
}

// offender parses the struct sockaddr that follows sock_extended_err
// (SO_EE_OFFENDER); family AF_UNSPEC means none.
func offender(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		}
	}
	return netip.Addr{}
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
