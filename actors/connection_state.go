package actors

import (
	"errors"
	"fmt"
)

// This file is THE connection state machine of RFC 9622 §11: the states,
// the one transition function, and which operations each state allows.
// Only connection.go calls transition, and only through connActor.apply,
// which is the one place the state field is assigned.
//
//	Establishing --Ready--> Established --Close/RemoteClose--> Closing --CloseDone--> Closed
//	     |                       |                                |
//	     +--EstablishmentError---+-----Abort/Failure--------------+------------------> Closed

// State is a connection's RFC 9622 state. The zero value is Establishing.
type State uint8

const (
	Establishing State = iota
	Established
	Closing
	Closed
)

func (s State) String() string {
	switch s {
	case Establishing:
		return "Establishing"
	case Established:
		return "Established"
	case Closing:
		return "Closing"
	case Closed:
		return "Closed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Input is what drives a transition.
type Input uint8

const (
	// InReady: every candidate layer (stack handshake, framers) is ready.
	InReady Input = iota
	// InEstablishmentFailed: no candidate could be established.
	InEstablishmentFailed
	// InClose: the application called Close.
	InClose
	// InRemoteClose: the peer ended its stream.
	InRemoteClose
	// InCloseDone: the graceful close finished.
	InCloseDone
	// InAbort: the application called Abort.
	InAbort
	// InFailure: the transport failed (reset, timeout, framer error).
	InFailure
	// InReestablish: a connection under the opt-in re-establishment policy
	// lost its transport and establishes a new one. This is a gotaps
	// extension of the RFC 9622 diagram: Established -> Establishing; the
	// next Ready is reported as Reestablished, and giving up is a
	// ConnectionError (the connection was Ready once).
	InReestablish
)

func (i Input) String() string {
	switch i {
	case InReady:
		return "Ready"
	case InEstablishmentFailed:
		return "EstablishmentFailed"
	case InClose:
		return "Close"
	case InRemoteClose:
		return "RemoteClose"
	case InCloseDone:
		return "CloseDone"
	case InAbort:
		return "Abort"
	case InFailure:
		return "Failure"
	case InReestablish:
		return "Reestablish"
	}
	return fmt.Sprintf("Input(%d)", uint8(i))
}

// Event is the application-facing event a transition emits.
type Event uint8

const (
	EvNone Event = iota
	EvReady
	EvEstablishmentError
	EvClosed
	EvConnectionError
)

func (e Event) String() string {
	switch e {
	case EvNone:
		return ""
	case EvReady:
		return "Ready"
	case EvEstablishmentError:
		return "EstablishmentError"
	case EvClosed:
		return "Closed"
	case EvConnectionError:
		return "ConnectionError"
	}
	return fmt.Sprintf("Event(%d)", uint8(e))
}

// ErrInvalidTransition is returned for an input the current state does not
// accept.
var ErrInvalidTransition = errors.New("invalid connection state transition")

// transition is the state machine: the next state and the event to emit for
// input in state s. It is pure.
func transition(s State, in Input) (State, Event, error) {
	switch s {
	case Establishing:
		switch in {
		case InReady:
			return Established, EvReady, nil
		case InEstablishmentFailed, InAbort, InFailure:
			return Closed, EvEstablishmentError, nil
		case InClose:
			return Closed, EvClosed, nil
		}
	case Established:
		switch in {
		case InReestablish:
			return Establishing, EvNone, nil
		case InClose, InRemoteClose:
			return Closing, EvNone, nil
		case InAbort, InFailure:
			return Closed, EvConnectionError, nil
		}
	case Closing:
		switch in {
		case InClose, InRemoteClose:
			return Closing, EvNone, nil
		case InCloseDone:
			return Closed, EvClosed, nil
		case InAbort, InFailure:
			return Closed, EvConnectionError, nil
		}
	}
	return s, EvNone, fmt.Errorf("%w: %s in state %s", ErrInvalidTransition, in, s)
}

// Op is an operation the application asks of a connection.
type Op uint8

const (
	OpSend Op = iota
	OpReceive
	OpClose
	OpAbort
	OpClone
	OpSetProperty
	OpGetProperties
	OpChangeEndpoints // AddRemote, RemoveRemote, AddLocal, RemoveLocal (conn_endpoints.go)
)

func (o Op) String() string {
	switch o {
	case OpSend:
		return "Send"
	case OpReceive:
		return "Receive"
	case OpClose:
		return "Close"
	case OpAbort:
		return "Abort"
	case OpClone:
		return "Clone"
	case OpSetProperty:
		return "SetProperty"
	case OpGetProperties:
		return "GetProperties"
	case OpChangeEndpoints:
		return "ChangeEndpoints"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Allows reports whether state s accepts operation op. Sends are queued
// while Establishing (RFC 9622 §7.1); Receive stays allowed while Closing so
// that data received before the close can be drained.
func (s State) Allows(op Op) bool {
	switch op {
	case OpGetProperties:
		return true
	case OpSend, OpClone:
		return s == Establishing || s == Established
	case OpReceive:
		return s != Closed
	case OpClose, OpAbort:
		return s != Closed
	case OpSetProperty:
		return s != Closed
	case OpChangeEndpoints:
		return s == Establishing || s == Established
	}
	return false
}

// CanSend and CanReceive are the read-only canSend/canReceive properties.
func (s State) CanSend() bool    { return s == Established }
func (s State) CanReceive() bool { return s == Established || s == Closing }
