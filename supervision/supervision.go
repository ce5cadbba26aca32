// Package supervision is gotaps' failure policy, written down per actor
// kind: which failures stop an actor, which are contained, and how user code
// (handlers, framers) is kept from crashing the process.
//
// The rules:
//   - A socket-owning actor (candidate, connection, listener) is stopped on
//     failure, never restarted: a restarted actor would have lost its socket
//     while the application saw nothing. Its failure reaches the application
//     as a ConnectionError (or EstablishmentError while establishing).
//   - A framer actor that panics is stopped by its connection, which then
//     ends with a ConnectionError carrying the *PanicError.
//   - The root and every top-level actor use the Stop guardian: protoactor's
//     default (restart up to 10 times in 10 s) is never in force.
//   - A panic in a user handler is recovered by Contain, turned into a
//     *PanicError and reported on that connection only (its
//     ConnectionError, while it has not ended) and to the System
//     (actors.System.ReportPanic; taps.WithHandlerPanic).
//
// This is an implementation layer with no compatibility promise: import
// package taps instead.
package supervision

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"
)

// Kind names an actor kind for which a policy is written.
type Kind uint8

const (
	Root Kind = iota
	Preconnection
	Racer
	Candidate
	Group
	Connection
	Framer
	Listener
)

func (k Kind) String() string {
	switch k {
	case Root:
		return "root"
	case Preconnection:
		return "preconnection"
	case Racer:
		return "racer"
	case Candidate:
		return "candidate"
	case Group:
		return "group"
	case Connection:
		return "connection"
	case Framer:
		return "framer"
	case Listener:
		return "listener"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// OwnsSocket reports whether actors of kind k own a socket and so must never
// be restarted.
func (k Kind) OwnsSocket() bool {
	return k == Candidate || k == Connection || k == Listener
}

// DirectiveFor is the written policy: what a parent does when a child of
// kind k fails. gotaps never restarts: every kind is stopped, and the parent
// turns the stop into the event the application sees.
func DirectiveFor(k Kind) actor.Directive {
	return actor.StopDirective
}

// Strategy returns the supervisor strategy a parent applies to children of
// kind k: one-for-one, no retries, DirectiveFor(k).
func Strategy(k Kind) actor.SupervisorStrategy {
	return actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return DirectiveFor(k) })
}

// Guardian is the strategy for top-level actors (the root): stop on failure.
func Guardian() actor.SupervisorStrategy { return Strategy(Root) }

// PanicError is a recovered panic from user code (a handler or a framer) or
// from an actor. It is what the application finds inside the
// ConnectionError.
type PanicError struct {
	// Where names the code that panicked ("OnReady handler", "framer
	// *framers.LengthPrefix", ...).
	Where string
	// Value is the value passed to panic.
	Value any
	// Stack is the goroutine stack at the panic.
	Stack []byte
	// ConnectionID is the id of the connection whose handler panicked
	// (taps.Connection.ID; for a ConnectionReceived handler, the received
	// connection's), when it is known; 0 otherwise.
	ConnectionID uint64
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.Where, e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// Log writes e as one Error record of l (slog.Default when l is nil):
// msg, then the connection, the handler, the panic value and the stack.
func (e *PanicError) Log(l *slog.Logger, msg string) {
	if l == nil {
		l = slog.Default() // read now: the application may set it later
	}
	l.Error(msg, "connection", e.ConnectionID, "handler", e.Where, "panic", e.Value, "stack", string(e.Stack))
}

// Contain runs fn and turns a panic into a *PanicError.
func Contain(where string, fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Where: where, Value: r, Stack: debug.Stack()}
		}
	}()
	fn()
	return nil
}

// FromFailure converts the reason protoactor passes to a supervisor (the
// recovered panic value) into a *PanicError.
func FromFailure(where string, reason any) *PanicError {
	if pe, ok := reason.(*PanicError); ok {
		return pe
	}
	return &PanicError{Where: where, Value: reason}
}
