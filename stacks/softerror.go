package stacks

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
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
	// Dest is the destination of the datagram that caused the error. Both
	// carry the zone of a link-local IPv6 address: the interface's name,
	// as in the addresses the net package reads (a UDP Listener's peers).
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
