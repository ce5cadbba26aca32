package messages

import (
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// This file holds the Go-only commands the facade sends to actors: they
// carry handles (framer instances, stacks, byte slices owned by the
// receiver) that protobuf cannot. Commands are verb+noun; a command is
// never modified after it is sent.

// ConnectionConfig is the immutable snapshot of a Preconnection (RFC 9622
// call-by-value) from which connections and listeners are made.
type ConnectionConfig struct {
	Remotes []*Endpoint
	Locals  []*Endpoint
	// Properties are the effective selection and connection properties.
	Properties *Properties
	// MessageDefaults are the default message properties.
	MessageDefaults *MessageProps
	// Framers as added to the Preconnection: index 0 was added first and
	// runs last on send, first on receive. Each connection instantiates its
	// own copies.
	Framers []framers.Framer
	// Stacks are the selected protocol stacks, best first.
	Stacks []stacks.Stack
	// StackOptions are the socket options and TLS configuration from the
	// connection properties and security parameters; each attempt adds its
	// local address and interface.
	StackOptions stacks.Options
	// DeriveStackOptions, when set, is the pure function that derives the
	// property-dependent fields of StackOptions (timeouts, keep-alive,
	// DSCP, checksum coverage, ...) from Properties and keeps the others
	// of base (TLS, ServerName, ...): SetProperty recomputes StackOptions
	// with it, so that every later dial (re-establishment, Clone) uses the
	// connection's current properties.
	DeriveStackOptions func(props *Properties, base stacks.Options) stacks.Options
	// AttemptDelay is the racing stagger (Connection Attempt Delay).
	AttemptDelay time.Duration
	// SecureFallback (opportunistic security) makes every plain stack a
	// fallback of the secure ones: a plain attempt waits while a secure
	// attempt to the same remote on the same path runs, until that attempt
	// fails or has run for 2 s, or half the EstablishmentTimeout or of
	// what Initiate's ctx leaves when that is shorter (actors/racer.go).
	SecureFallback bool
	// EstablishmentTimeout bounds the whole race; 0 means none.
	EstablishmentTimeout time.Duration
	// RecvBufferLimit bounds the received bytes held for the application.
	RecvBufferLimit int
	// SendBufferLimit bounds the bytes queued for sending.
	SendBufferLimit int
	// LingerTimeout bounds how long a graceful close waits for the peer's
	// end of stream after sending its own.
	LingerTimeout time.Duration
	// Resolver resolves host names.
	Resolver stacks.Resolver
	// AcceptBacklog bounds the connections a listener holds for the
	// application (accepted and not yet taken); 0 means the default.
	AcceptBacklog int
	// Reestablish, when set, makes a connection that loses its transport
	// (failure or remote close) establish a new one with this backoff
	// instead of ending.
	Reestablish *supervision.Backoff
}

// MessageProps are the effective properties of one Message (RFC 9622
// §9.1.3), resolved from its MessageContext and the connection defaults.
type MessageProps struct {
	// Lifetime: 0 means infinite.
	Lifetime         time.Duration
	Priority         int64
	Ordered          bool
	SafelyReplayable bool
	Final            bool
	// ChecksumLen: -1 means full coverage.
	ChecksumLen int64
	Reliable    bool
	// DSCP is the codepoint the message's msgCapacityProfile asks for,
	// valid when DSCPSet.
	DSCP            uint8
	NoFragmentation bool
	NoSegmentation  bool
	DSCPSet         bool
	// ReliableSet and OrderedSet: msgReliable / msgOrdered were set (on
	// the MessageContext, the Connection or the Preconnection), not taken
	// from the connection's reliability / preserveOrder: a value the
	// stack cannot honour then fails the Send.
	ReliableSet bool
	OrderedSet  bool
}

// StartListening asks the root to create a listener.
type StartListening struct {
	Config *ConnectionConfig
	// Claim, when set, is the *actors.StartClaim the listener claims
	// before it binds anything: a caller whose ctx ended as the answer
	// came abandons it, and stops the listener or keeps it from binding.
	Claim any
}

// SendMessage hands one Message (or part of one) to a connection.
type SendMessage struct {
	// SendID identifies this Send call; its Sent/SendError/Expired event
	// carries it.
	SendID uint64
	// MessageID identifies the Message: partial sends share it.
	MessageID uint64
	// Data is owned by the connection once sent.
	Data []byte
	// FramerMeta holds, per framer index, the metadata for that framer.
	FramerMeta   []framers.Metadata
	EndOfMessage bool
	Props        *MessageProps
	// Queued is when the application handed the message over (for
	// msgLifetime). A later part of a Message sent in parts has none: the
	// Message's lifetime is its first part's.
	Queued time.Time
	// Abandon: not a part but the end of Message MessageID, sent in parts,
	// which failed in Connection.Send after some of its parts were handed
	// over (a later part was refused, or could not be handed over): the
	// connection drops what it holds of it. No event answers it.
	Abandon bool
}

// SendBatch hands several messages over at once (Connection.Batch): they
// leave in as few writes as possible.
type SendBatch struct{ Messages []*SendMessage }

// CloseConnection starts a graceful close.
type CloseConnection struct{}

// AbortConnection aborts at once. Err, when set, is the reason reported in
// the ConnectionError (a panic in a handler, say). UnlessReady: only a
// connection still establishing is aborted; one that is Ready when the
// actor takes the message is left alone (an Initiate or Clone whose ctx
// ended as the connection became Ready: Ready wins).
type AbortConnection struct {
	Err         error
	UnlessReady bool
}

// GetConnectionInfo asks for a *ConnectionInfo.
type GetConnectionInfo struct{}

// SetConnectionProperty sets one connection property.
type SetConnectionProperty struct {
	Name  string
	Value *PropertyValue
}

// StopListener stops a listener.
type StopListener struct{}

// SetConnectionLimit sets a listener's new-connection budget; -1 is
// unlimited.
type SetConnectionLimit struct{ Limit int64 }

// ShutdownSystem closes everything the root owns.
type ShutdownSystem struct{ Abort bool }

// CloseGroup closes (or, with Abort, aborts) every member of a group.
type CloseGroup struct{ Abort bool }

// ListGroupMembers asks a group for its members.
type ListGroupMembers struct{}
