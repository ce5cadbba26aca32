// Package stacks holds gotaps' protocol stacks in plain Go: each dials and
// listens, declares which RFC 9622 selection properties it can satisfy, and
// never touches the actor runtime.
//
// This is an implementation layer with no compatibility promise: import
// package taps instead.
package stacks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// Capabilities say which RFC 9622 transport services a stack provides. A
// selection property set to Require needs the capability; Prohibit needs its
// absence.
type Capabilities struct {
	Reliability           bool
	PreserveOrder         bool
	CongestionControl     bool
	PreserveMsgBoundaries bool
	PerMsgReliability     bool
	Multistreaming        bool
	ZeroRTTMsg            bool
	FullChecksumSend      bool
	FullChecksumRecv      bool
	KeepAlive             bool
	Multipath             bool
	SoftErrorNotify       bool
	// Secure: the stack authenticates and encrypts (TLS, QUIC).
	Secure bool
}

// Options configure one dial or listen. The zero value is valid.
type Options struct {
	// Local is the local address to bind; the zero value lets the system
	// choose.
	Local netip.AddrPort
	// Interface binds the socket to a network interface (SO_BINDTODEVICE)
	// when not empty.
	Interface string
	// KeepAlive is the TCP keep-alive idle time; 0 leaves keep-alives off.
	KeepAlive time.Duration
	// Backlog is ignored by stacks that cannot set it.
	Backlog int
}

// Transport is an established transport connection. Read returns the bytes
// of a byte stream (or one message of a boundary-preserving stack).
type Transport interface {
	net.Conn
	// CloseWrite ends the sending direction (TCP FIN) while reads go on.
	CloseWrite() error
	// Abort closes the connection at once, resetting it where the
	// protocol can (TCP RST).
	Abort() error
}

// Listener accepts Transports.
type Listener interface {
	// Accept waits for the next inbound Transport.
	Accept() (Transport, error)
	// Close stops listening; a blocked Accept returns net.ErrClosed.
	Close() error
	// Addr is the bound local address.
	Addr() net.Addr
}

// Stack is one protocol stack (TCP, TLS over TCP, UDP, QUIC, ...).
// Implementations are safe for concurrent use.
type Stack interface {
	// Name is the stack's short name ("tcp", "tls", ...).
	Name() string
	// Capabilities tells what the stack provides.
	Capabilities() Capabilities
	// Dial establishes a Transport to remote. It returns when the stack's
	// whole handshake is done or ctx ends.
	Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error)
	// Listen binds a Listener to opts.Local.
	Listen(ctx context.Context, opts Options) (Listener, error)
}

// ErrUnknownStack is returned by ByName for names no stack has.
var ErrUnknownStack = errors.New("unknown protocol stack")

// ByName returns the stack with the given name.
func ByName(name string) (Stack, error) {
	for _, s := range All() {
		if s.Name() == name {
			return s, nil
		}
	}
	return nil, ErrUnknownStack
}

// All returns every stack gotaps has, in the order of the default
// preference.
func All() []Stack {
	return []Stack{TCP()}
}
