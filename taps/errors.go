package taps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// Sentinel errors. The typed errors below unwrap to them, and to the
// standard library's sentinels where one fits (net.ErrClosed,
// context.DeadlineExceeded, context.Canceled).
var (
	// ErrClosed is net.ErrClosed: the connection or listener has ended.
	ErrClosed = net.ErrClosed
	// ErrExpired: msgLifetime passed before the message was sent (the RFC
	// 9622 Expired event).
	ErrExpired = actors.ErrExpired
	// ErrAborted: the connection was aborted locally (Abort, AbortGroup, or
	// a panic in one of its handlers or framers).
	ErrAborted = actors.ErrAborted
	// ErrFinalSent: a Send after a message marked final.
	ErrFinalSent = actors.ErrFinalSent
	// ErrMessageFailed: an earlier part of a Message sent in parts
	// (SendPartial) failed, with a SendError or Expired: the Message failed
	// as a whole, and so does every later part of it. Its SendError unwraps
	// to that earlier part's error too.
	ErrMessageFailed = actors.ErrMessageFailed
	// ErrNotAllowed: the operation is not allowed in the connection's state.
	ErrNotAllowed = actors.ErrNotAllowed
	// ErrUnfulfilled: no protocol stack satisfies the transport properties
	// (the seed's unfulfilled_handler case).
	ErrUnfulfilled = stacks.ErrNoStack
	// ErrInvalidEndpoint: an endpoint is incomplete or malformed.
	ErrInvalidEndpoint = errors.New("invalid endpoint")
	// ErrSendQueueFull: SendAsync found the send queue full.
	ErrSendQueueFull = actors.ErrSendQueueFull
	// ErrMessageTooLarge: a framed message above the framer's maximum size.
	ErrMessageTooLarge = framers.ErrMessageTooLarge
	// ErrEstablishmentTimeout: the Preconnection's establishment timeout
	// fired.
	ErrEstablishmentTimeout = actors.ErrEstablishmentTimeout
	// ErrPropertyNotSupported: a message property the selected stack cannot
	// honour; the SendError says which and why.
	ErrPropertyNotSupported = actors.ErrPropertyNotSupported
	// ErrNotReplayable: on a stack that may duplicate messages (UDP) every
	// message must be marked SafelyReplayable.
	ErrNotReplayable = actors.ErrNotReplayable
	// ErrSystemShutdown: the System is shut down.
	ErrSystemShutdown = actors.ErrShutdown
	// ErrPathLost: the cause of a Reestablishing event raised before any
	// traffic failed, because the transport's path is gone: its local
	// address was removed or its link went down, or the interface its
	// socket is bound to has no route to the peer left (Linux's route
	// monitor, for an initiated connection with a re-establishment policy).
	ErrPathLost = actors.ErrPathLost
	// ErrTLSTruncated: a TLS peer ended its TCP stream without a
	// close_notify alert, so what was received may be cut short (the
	// truncation attack); it ends the connection with a ConnectionError
	// rather than a clean end of stream, and unwraps to io.ErrUnexpectedEOF.
	ErrTLSTruncated = stacks.ErrTLSTruncated
	// ErrServiceUnavailable: the DNS SRV records of a RemoteEndpoint's
	// service say it is decidedly not available at the host name (a
	// single target "." over every transport that could be used, RFC
	// 2782): Initiate fails with an EstablishmentError (ResolutionFailed,
	// no attempt, no packet beyond the DNS queries) wrapping a
	// *stacks.ResolveError that names the SRV record and wraps this.
	ErrServiceUnavailable = stacks.ErrServiceUnavailable
	// ErrNoServicePort: a RemoteEndpoint's (or LocalEndpoint's) service
	// leaves it no port: the service is not an IANA service name, and no
	// SRV record gives one (Initiate, a Connection's next establishment
	// and Preconnection.Resolve look them up for a host name; elsewhere
	// none is looked up). A *stacks.ServiceError naming the service wraps
	// it: in an *EndpointError (ErrInvalidEndpoint) before any lookup, or,
	// once the SRV lookups found no record, in the EstablishmentError
	// (ResolutionFailed), or in Resolve's error.
	ErrNoServicePort = stacks.ErrNoServicePort
	// ErrDatagramsNotNegotiated: the QUIC peer did not enable datagrams
	// (RFC 9221). An attempt Requiring perMsgReliability fails with it
	// once the handshake tells (the error also unwraps to
	// errors.ErrUnsupported), so Initiate returns an EstablishmentError
	// wrapping it when no other attempt succeeds. A Listener Requiring it
	// closes the session of a client without datagrams.
	ErrDatagramsNotNegotiated = stacks.ErrDatagramsNotNegotiated
)

// ErrorReason is the RFC 9623 Appendix B reason an error carries.
type ErrorReason uint8

const (
	ReasonUnknown ErrorReason = iota
	ReasonInvalidConfiguration
	ReasonNoCandidates
	ReasonResolutionFailed
	ReasonEstablishmentFailed
	ReasonPolicyProhibited
	ReasonNotCloneable
	ReasonMessageTooLarge
	ReasonProtocolFailed
	ReasonInvalidMessageProperties
	ReasonDeframingFailed
	ReasonConnectionAborted
	ReasonTimeout
)

func (r ErrorReason) String() string {
	return [...]string{"Unknown", "InvalidConfiguration", "NoCandidates", "ResolutionFailed",
		"EstablishmentFailed", "PolicyProhibited", "NotCloneable", "MessageTooLarge", "ProtocolFailed",
		"InvalidMessageProperties", "DeframingFailed", "ConnectionAborted", "Timeout"}[r]
}

// AttemptError is one failed establishment attempt: a leaf of the
// candidate tree [endpoint, stack].
type AttemptError struct {
	Endpoint string
	Stack    string
	Err      error
}

func (e AttemptError) Error() string { return fmt.Sprintf("%s %s: %v", e.Stack, e.Endpoint, e.Err) }
func (e AttemptError) Unwrap() error { return e.Err }

// EstablishmentError is the RFC 9622 EstablishmentError event: Initiate,
// InitiateWithSend and Listen return it, and OnEstablishmentError handlers
// receive it. Attempts lists every attempt and why it failed. It unwraps to
// the cause (a *net.DNSError, context.DeadlineExceeded, ErrUnfulfilled,
// a *PropertyError, ...) and to every attempt's error. When every attempt
// failed, the cause is the resolution failure (*stacks.ResolveError) of
// the remote endpoints that were not attempted because they did not
// resolve, if any; Reason stays ReasonEstablishmentFailed.
type EstablishmentError struct {
	Reason   ErrorReason
	Attempts []AttemptError
	Err      error
}

func (e *EstablishmentError) Error() string {
	var b strings.Builder
	b.WriteString("establishment failed")
	if e.Reason != ReasonUnknown {
		b.WriteString(" (" + e.Reason.String() + ")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if len(e.Attempts) > 0 {
		if e.Err == nil {
			fmt.Fprintf(&b, ": all %d attempt(s) failed", len(e.Attempts))
		}
		for _, a := range e.Attempts {
			b.WriteString("; ")
			b.WriteString(a.Error())
		}
	}
	return b.String()
}

func (e *EstablishmentError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}

// ConnectionError is the RFC 9622 ConnectionError event: an established
// connection ended with an error (peer reset, local Abort, framer failure,
// a panic in a handler, connTimeout). It unwraps to the cause; one that
// connTimeout ended (ConnTimeout) has ReasonTimeout and unwraps to
// syscall.ETIMEDOUT on every stack.
type ConnectionError struct {
	Reason ErrorReason
	Err    error
}

func (e *ConnectionError) Error() string { return "connection error: " + errString(e.Err) }
func (e *ConnectionError) Unwrap() error { return e.Err }

// SendError is the RFC 9622 SendError event (and, when it unwraps to
// ErrExpired, the Expired event) of one Send.
type SendError struct {
	Reason ErrorReason
	Err    error
}

func (e *SendError) Error() string { return "send: " + errString(e.Err) }
func (e *SendError) Unwrap() error { return e.Err }

// ReceiveError is the RFC 9622 ReceiveError event of one Receive. Receive
// on a connection that has ended returns a ReceiveError unwrapping to
// ErrClosed.
type ReceiveError struct {
	Reason ErrorReason
	Err    error
}

func (e *ReceiveError) Error() string { return "receive: " + errString(e.Err) }
func (e *ReceiveError) Unwrap() error { return e.Err }

// CloneError is the RFC 9622 CloneError event.
type CloneError struct {
	Reason ErrorReason
	Err    error
}

func (e *CloneError) Error() string { return "clone: " + errString(e.Err) }
func (e *CloneError) Unwrap() error { return e.Err }

// EndpointError reports an invalid endpoint. It unwraps to
// ErrInvalidEndpoint and to the cause.
type EndpointError struct {
	Endpoint string
	Err      error
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("invalid endpoint %q: %v", e.Endpoint, e.Err)
}
func (e *EndpointError) Unwrap() []error { return []error{ErrInvalidEndpoint, e.Err} }

// PanicError is a panic recovered from a user handler or framer. It ends
// only the connection it happened on, as a ConnectionError wrapping it; a
// handler's is also reported to the System (WithHandlerPanic), which is
// the only report when the connection had ended already.
type PanicError = supervision.PanicError

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// establishmentError converts an actor-level failure.
func establishmentError(err error) *EstablishmentError {
	var ee *EstablishmentError
	if errors.As(err, &ee) {
		return ee
	}
	out := &EstablishmentError{Reason: ReasonEstablishmentFailed}
	var f *actors.EstablishmentFailure
	if errors.As(err, &f) {
		out.Err = publicPathError(f.Err) // stackopts.go
		for _, a := range f.Attempts {
			out.Attempts = append(out.Attempts, AttemptError(a))
		}
		var re *stacks.ResolveError
		switch {
		case errors.Is(f.Err, actors.ErrEstablishmentTimeout), ctxEnded(f.Err):
			out.Reason = ReasonTimeout
		case errors.As(f.Err, &re) && len(f.Attempts) == 0:
			// (with attempts, f.Err names the remote endpoints that did
			// not resolve while the attempts to the others failed)
			out.Reason = ReasonResolutionFailed
		case errors.Is(f.Err, actors.ErrNoCandidates):
			out.Reason = ReasonNoCandidates
		}
		return out
	}
	out.Err = publicPathError(err)
	switch {
	case errors.Is(err, ErrUnfulfilled), errors.Is(err, ErrNoNetworkPath):
		out.Reason = ReasonNoCandidates
	case errors.Is(err, ErrInvalidEndpoint), errors.Is(err, ErrConflictingProperties):
		out.Reason = ReasonInvalidConfiguration
	case ctxEnded(err):
		out.Reason = ReasonTimeout
	}
	return out
}

func connectionError(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConnectionError
	if errors.As(err, &ce) {
		return ce
	}
	r := ReasonProtocolFailed
	switch {
	case errors.Is(err, ErrAborted):
		r = ReasonConnectionAborted
	case errors.Is(err, framers.ErrMessageTooLarge):
		r = ReasonMessageTooLarge
	case errors.Is(err, framers.ErrDeframingFailed), errors.Is(err, framers.ErrTruncated):
		r = ReasonDeframingFailed
	case errors.Is(err, syscall.ETIMEDOUT): // connTimeout (ConnTimeout)
		r = ReasonTimeout
	}
	return &ConnectionError{Reason: r, Err: err}
}

func sendError(err error) error {
	if err == nil {
		return nil
	}
	var se *SendError
	if errors.As(err, &se) {
		return se
	}
	r := ReasonUnknown
	switch {
	case errors.Is(err, framers.ErrMessageTooLarge), errors.Is(err, stacks.ErrFragmentationNeeded):
		r = ReasonMessageTooLarge
	case errors.Is(err, ErrInvalidPropertyValue), errors.Is(err, ErrInvalidPropertyType),
		errors.Is(err, ErrPropertyNotSupported), errors.Is(err, ErrNotReplayable):
		// RFC 9622 §9.1.3: properties inconsistent with the Connection
		r = ReasonInvalidMessageProperties
	}
	return &SendError{Reason: r, Err: err}
}

// ctxEnded reports whether err is a context's end (an establishment that
// its ctx stopped: ReasonTimeout).
func ctxEnded(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
