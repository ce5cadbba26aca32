package taps

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// ConnectionState is a connection's RFC 9622 state (the seed's
// ConnectionState: ESTABLISHING=1 ... CLOSED=4).
type ConnectionState uint8

const (
	StateEstablishing ConnectionState = iota + 1
	StateEstablished
	StateClosing
	StateClosed
)

func (s ConnectionState) String() string {
	switch s {
	case StateEstablishing:
		return "Establishing"
	case StateEstablished:
		return "Established"
	case StateClosing:
		return "Closing"
	case StateClosed:
		return "Closed"
	}
	return fmt.Sprintf("ConnectionState(%d)", uint8(s))
}

func stateOf(s actors.State) ConnectionState { return ConnectionState(s) + 1 }

// A Connection is a message-oriented transport connection (RFC 9622 §8).
// Its methods are safe for concurrent use. Events reach the application in
// order, one at a time per connection: through the blocking calls (Send
// returns at Sent, Receive at a receive event) or through handlers.
type Connection struct {
	sys      *System
	pid      *actor.PID
	group    *actor.PID
	link     *actors.Link
	cfg      *messages.ConnectionConfig
	nextSend atomic.Uint64
	nextMsg  atomic.Uint64
	poster   atomic.Pointer[actors.Poster]  // posts sends to the connection actor (made on the first)
	rare     atomic.Pointer[connRare]       // what few Connections use, made on first use
	recvCtx  atomic.Pointer[MessageContext] // the Context of the message being received in parts
	spare    spareMessage                   // a released Message for the next one (Message.Release)
	dir      actors.Direction               // the direction property (direction.go)
	// accepted: made by a Listener (ConnectionReceived): see prepareClone;
	// atomic, as a QUIC stream may be handed out (GroupedConnections)
	// before its Listener hands it over (wrap)
	accepted atomic.Bool

	mu       sync.Mutex
	partial  map[*MessageContext]*partialMsg // unfinished Messages sent in parts, by their context
	batching atomic.Int32                    // open Batch calls (changed under mu; read without it by post)
	batch    []*messages.SendMessage
}

// connRare holds what few Connections use (Clone, SetProperty of a
// Message Property), apart, so that every Connection does not carry it.
type connRare struct {
	cloneOpt atomic.Pointer[cloneOptions] // the last Clone's derived stack options (clone.go)
	msgDef   atomic.Pointer[msgDefaults]  // Message Properties set on this Connection (nil: none)
}

// rareFields returns c's connRare, making it on first use.
func (c *Connection) rareFields() *connRare {
	if r := c.rare.Load(); r != nil {
		return r
	}
	c.rare.CompareAndSwap(nil, new(connRare))
	return c.rare.Load()
}

// msgDefaults returns the Message Properties set on c (nil: none).
func (c *Connection) msgDefaults() *msgDefaults {
	if r := c.rare.Load(); r != nil {
		return r.msgDef.Load()
	}
	return nil
}

// partialMsg is a Message being sent in parts with one MessageContext
// (SendPartial), from its first part to its last.
type partialMsg struct {
	id   uint64
	size int // the bytes of its parts so far (checkParts)
	// failed: a part failed here (refused, or not handed over): the
	// Message failed as a whole, and its later parts fail at once
	failed error
}

func newConnection(sys *System, link *actors.Link, cfg *messages.ConnectionConfig) *Connection {
	c := &Connection{sys: sys, link: link, cfg: cfg, dir: actors.DirectionOf(cfg.Properties)}
	link.Owner.Store(c)
	return c
}

// connectionOf returns the facade object of a Link, making it if needed.
func connectionOf(sys *System, st *actors.ConnectionStarted, cfg *messages.ConnectionConfig) *Connection {
	if v, ok := st.Link.Owner.Load().(*Connection); ok {
		return v
	}
	c := &Connection{sys: sys, link: st.Link, cfg: cfg, pid: st.Conn, group: st.Group, dir: actors.DirectionOf(cfg.Properties)}
	if !st.Link.Owner.CompareAndSwap(nil, c) {
		return st.Link.Owner.Load().(*Connection)
	}
	return c
}

func (c *Connection) installHandlers(h connHandlers) { c.link.SetHandlers(c.handlersOf(h)) }

// installMissingHandlers installs h's Closed and ConnectionError handlers
// where the event has none yet: on a Connection handed out already (see
// Listener.wrap), those the application set on it stay.
func (c *Connection) installMissingHandlers(h connHandlers) {
	lh := c.handlersOf(h)
	c.updateHandlers(func(cur *actors.Handlers) {
		if cur.Closed == nil {
			cur.Closed = lh.Closed
		}
		if cur.ConnectionError == nil {
			cur.ConnectionError = lh.ConnectionError
		}
	})
}

// handlersOf is h as the Link's handlers of c's events.
func (c *Connection) handlersOf(h connHandlers) actors.Handlers {
	lh := actors.Handlers{}
	if h.ready != nil {
		lh.Ready = func() { h.ready(c) }
	}
	if h.establishmentError != nil {
		lh.EstablishmentError = func(err error) { h.establishmentError(c, establishmentError(err)) }
	}
	if h.closed != nil {
		lh.Closed = func() { h.closed(c) }
	}
	if h.connectionError != nil {
		lh.ConnectionError = func(err error) { h.connectionError(c, connectionError(err)) }
	}
	if h.reestablishing != nil {
		lh.Reestablishing = func(err error, n int) { h.reestablishing(c, err, n) }
	}
	if h.reestablished != nil {
		lh.Reestablished = func(n int) { h.reestablished(c, n) }
	}
	return lh
}

func (c *Connection) updateHandlers(fn func(h *actors.Handlers)) {
	c.replaceHandler(actors.EvNone, fn)
}

// replaceHandler is updateHandlers where fn sets a new handler of ev (the
// Ready or a terminal event): set after ev, it is called once at once.
func (c *Connection) replaceHandler(ev actors.Event, fn func(h *actors.Handlers)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.link.Handlers()
	fn(&h)
	c.link.Replace(h, ev)
}

// OnReady sets the Ready handler (seed: HANDLE_STATE_READY). Set on a
// Connection that is already Ready, it is called once at once (also when
// the Preconnection's handler, which it replaces, already had the event),
// unless the connection's terminal event has already reached a handler.
func (c *Connection) OnReady(fn func(*Connection)) {
	c.replaceHandler(actors.EvReady, func(h *actors.Handlers) {
		h.Ready = nil
		if fn != nil {
			h.Ready = func() { fn(c) }
		}
	})
}

// OnClosed sets the Closed handler (seed: HANDLE_STATE_CLOSED). It is the
// last event of the connection (see ReceiveAsync for the receives and
// sends asked for once it has ended). The peer's end of stream alone does not
// close a connection (see Receive): Closed follows once this side has ended
// its stream too (Close, or a Message sent with the Final property), or the
// peer has closed the connection altogether where the stack shows it (QUIC,
// Unix sockets on Linux; README "Semantics worth knowing"). Set on
// a Connection that is already Closed, it is called once at once (also
// when the Preconnection's or Listener's handler, which it replaces,
// already had the event).
func (c *Connection) OnClosed(fn func(*Connection)) {
	c.replaceHandler(actors.EvClosed, func(h *actors.Handlers) {
		h.Closed = nil
		if fn != nil {
			h.Closed = func() { fn(c) }
		}
	})
}

// OnConnectionError sets the ConnectionError handler (seed:
// HANDLE_STATE_CONNECTION_ERROR). err is a *ConnectionError. Set on a
// Connection that has already ended with a ConnectionError, it is called
// once at once (also when the Preconnection's or Listener's handler, which
// it replaces, already had the event).
func (c *Connection) OnConnectionError(fn func(*Connection, error)) {
	c.replaceHandler(actors.EvConnectionError, func(h *actors.Handlers) {
		h.ConnectionError = nil
		if fn != nil {
			h.ConnectionError = func(err error) { fn(c, connectionError(err)) }
		}
	})
}

// OnEstablishmentError sets the EstablishmentError handler: the event of a
// connection that ends before it is Ready, which only InitiateAsync hands
// over (Initiate, InitiateWithSend, Clone and Rendezvous return the error
// instead). Set after the event, it is called once at once (also when the
// Preconnection's handler, which it replaces, already had the event).
func (c *Connection) OnEstablishmentError(fn func(*Connection, error)) {
	c.replaceHandler(actors.EvEstablishmentError, func(h *actors.Handlers) {
		h.EstablishmentError = nil
		if fn != nil {
			h.EstablishmentError = func(err error) { fn(c, establishmentError(err)) }
		}
	})
}

// OnSoftError sets the SoftError handler (RFC 9622 §8.3.2). ICMP errors
// need softErrorNotify (Prefer or Require) and a stack that reports them
// (UDP, UDP-Lite); their error unwraps to the errno. A minSendRate or
// minRecvRate that cannot be met is reported here too, as *MinRateError.
// The connection stays open.
func (c *Connection) OnSoftError(fn func(*Connection, error)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.SoftError = nil
		if fn != nil {
			h.SoftError = func(err error) { fn(c, softError(err)) }
		}
	})
}

// OnExcessiveRetransmission sets the handler of the seed's retransmit-notify
// event: the transport retransmitted count segments, reaching
// _gotaps.retransmitNotifyThreshold. It needs RetransmitNotify set to
// Prefer or Require and RetransmitNotifyThreshold set to a number; only
// TCP and TLS report it (their TCP_INFO counters are read every 200 ms).
// The next event needs threshold more retransmissions. The connection
// stays open. The handler runs on the connection's event goroutine, in
// order with its other events.
func (c *Connection) OnExcessiveRetransmission(fn func(c *Connection, count int)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.ExcessiveRetransmission = nil
		if fn != nil {
			h.ExcessiveRetransmission = func(n int) { fn(c, n) }
		}
	})
}

// OnPathChange sets the PathChange handler (RFC 9622 §8.3.2): the
// connection's path changed and it stays open. It fires:
//
//   - on every system, when the connection is Established again
//     (re-establishment under WithReestablishment, or the switch after
//     RemoveRemote or RemoveLocal of the endpoint in use) with another
//     local IP address or another remote address and port than before:
//     after the Reestablished event;
//   - when an initiated QUIC connection migrates its session (RFC 9000
//     §9) to another local endpoint of its set, because RemoveLocal
//     removed the local endpoint in use or (Linux) the route monitor found
//     its path lost: with the new local address, without Reestablishing
//     or Reestablished (the connection stays Established, its streams
//     carry on); every member of its group sharing the session fires it;
//   - on the accepting side of a QUIC session, when the peer migrates it:
//     with the peer's new address (also in GetProperties' Remote and in
//     Endpoints), once per move, on every connection of the session that
//     has this handler, at the session's next read or write (any of its
//     streams, or a datagram) after quic-go switched to the new path (a
//     peer that migrates but sends nothing leaves quic-go on the old path
//     until it does). The check costs one atomic load per read or write
//     of a session without such a handler, a few more with one, nothing
//     per packet;
//   - on Linux, when the kernel's path to the peer changes while the
//     connection is Established: a netlink route monitor (one per System,
//     running while a connection has this handler or a re-establishment
//     policy, WithReestablishment) watches link, address and route
//     changes and, where the process may join the MPTCP path manager's
//     events (CAP_NET_ADMIN), MPTCP subflows joining or leaving; after
//     each burst the connection
//     reads its path again: the outgoing interface, preferred source and
//     MTU of the route to its peer, the socket's path MTU (TCP and TLS:
//     tcpi_pmtu; UDP and UDP-Lite: IP_MTU) and, when it runs MPTCP on a
//     kernel with MPTCP_INFO, its subflow count (a handover). Any
//     difference from the previous reading fires it once. Other stacks
//     (QUIC, Unix sockets) are watched for the route alone.
//
// Outside Linux only the first kind fires. The handler runs on the
// connection's event goroutine, in order with its other events and never
// after its terminal event; a handler that panics aborts the connection,
// as the other handlers do. nil removes the handler (and the watch, unless
// a re-establishment policy keeps it).
func (c *Connection) OnPathChange(fn func(*Connection)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.PathChange = nil
		if fn != nil {
			h.PathChange = func(stacks.PathReading) { fn(c) }
		}
	})
}

// MinRateError is the error of the SoftError event raised when a
// connection could not meet its minSendRate or minRecvRate: over a whole
// Interval (1 s) during which the application had more to send (or waited
// to receive), the rate stayed below the minimum. It unwraps to
// ErrRateNotMet. The connection stays open.
type MinRateError struct {
	// Property is MinSendRate or MinRecvRate.
	Property Property
	// Min is the property's value and Rate the measured rate, in bit/s.
	Min, Rate uint64
	Interval  time.Duration
}

func (e *MinRateError) Error() string {
	return fmt.Sprintf("%s of %d bit/s could not be met: %d bit/s over the last %v", e.Property, e.Min, e.Rate, e.Interval)
}

// Unwrap returns ErrRateNotMet.
func (e *MinRateError) Unwrap() error { return ErrRateNotMet }

// ErrRateNotMet is what a *MinRateError unwraps to.
var ErrRateNotMet = actors.ErrRateNotMet

// softError converts the cause of a SoftError event to its public form.
// ICMP errors stay as the stack reports them: they unwrap to the errno
// (syscall.ECONNREFUSED for a closed port, EHOSTUNREACH, ...).
func softError(err error) error {
	var re *actors.MinRateError
	if errors.As(err, &re) {
		return &MinRateError{Property: Property(re.Property), Min: re.Min, Rate: re.Rate, Interval: re.Interval}
	}
	return err
}

// OnReestablishing sets the handler called when a connection under
// WithReestablishment has lost its transport (err says why) and attempt n
// of establishing a new one is scheduled: n counts the attempts in a row,
// and a transport lost before it stayed up the policy's StableAfter
// continues the row of the attempts that made it (see
// ReestablishPolicy). The connection is Establishing until
// OnReestablished. Preconnection.OnReestablishing sets it from the
// connection's start.
func (c *Connection) OnReestablishing(fn func(c *Connection, err error, attempt int)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.Reestablishing = nil
		if fn != nil {
			h.Reestablishing = func(err error, n int) { fn(c, err, n) }
		}
	})
}

// OnReestablished sets the handler called when a connection under
// WithReestablishment has a new transport, after attempts attempts in a
// row (the n of the last OnReestablishing).
func (c *Connection) OnReestablished(fn func(c *Connection, attempts int)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.Reestablished = nil
		if fn != nil {
			h.Reestablished = func(n int) { fn(c, n) }
		}
	})
}

// State returns the connection's current state.
func (c *Connection) State() ConnectionState { return stateOf(c.link.State()) }

// Done is closed when the connection has reached Closed (after its last
// event handler ran) and the socket it held is released: a local port it
// was bound to (WithLocalEndpoint) can be bound again at once. A QUIC
// stream's UDP socket belongs to its session, which may outlive the
// stream: a Connection whose end ends the session (the last stream of a
// session this side initiated, or of one accepted by a Listener that has
// stopped; an Abort of the last stream; the peer's end of the session)
// is Done once the session has ended and let go of the socket, after the
// linger (at most 2 s, see README "QUIC:") when it closed gracefully as
// the passive closer and the peer did not end the session first. A
// Connection whose session goes on (other streams of it open, or the
// Listener keeping it for the peer's next stream) is Done at once; the
// session's socket is released with its last Connection, or when its
// Listener's Done is closed, or when System.Shutdown returns.
func (c *Connection) Done() <-chan struct{} { return c.link.Done() }

// Err is nil after a clean Closed (also that of a Close before Ready), the
// *EstablishmentError when the connection failed or was aborted before it
// was Ready (InitiateAsync), the *ConnectionError otherwise. It is
// meaningful once Done is closed.
func (c *Connection) Err() error {
	if err := c.link.EstablishmentErr(); err != nil {
		return establishmentError(err)
	}
	err := c.link.Err()
	if err == nil {
		return nil
	}
	return connectionError(err)
}

// ID is the connection's id, unique within its System (it appears in traces
// and logs).
func (c *Connection) ID() uint64 { return c.link.ID() }

// prepareSend validates one Send and builds the command. Errors are
// *SendError-ready causes; part reports whether the send is a part of a
// Message sent in parts (its last part too).
func (c *Connection) prepareSend(data []byte, mc *MessageContext, eom bool) (m *messages.SendMessage, part bool, err error) {
	m = new(messages.SendMessage)
	if part, err = c.fillSend(m, data, mc, eom); err != nil {
		return nil, part, err
	}
	return m, part, nil
}

// fillSend validates one Send and fills m (zero) with the command; part
// reports whether it is a part of a Message sent in parts (its last part
// too). Every part is checked as a whole Message is (a framer's
// CheckMessage, and the size of the Message's parts so far:
// checkParts). A part that fails fails its whole Message: the later parts
// fail at once, and a Message some parts of which the connection has is
// abandoned there (abandonParts).
//
// A Message sent in parts has its first part's msgLifetime (RFC 9622
// §9.1.3.1: a property of the Message): the later parts have no Queued
// time, so the Message expires only before its first part is sent, and a
// byte stream never loses a part from the middle of a Message.
func (c *Connection) fillSend(m *messages.SendMessage, data []byte, mc *MessageContext, eom bool) (part bool, err error) {
	defaults := c.cfg.MessageDefaults
	if d := c.msgDefaults(); d != nil {
		defaults = d.props
	}
	props, err := resolveMessage(mc, defaults)
	if err == nil {
		for _, f := range c.cfg.Framers {
			if chk, ok := f.(framers.MessageChecker); ok {
				if err = c.checkMessage(f, chk, data); err != nil {
					break
				}
			}
		}
	}
	first := true // m begins a Message (or is a whole one)
	if mc == nil {
		if err != nil {
			return false, err
		}
		m.MessageID = c.nextMsg.Add(1)
	} else {
		c.mu.Lock()
		p := c.partial[mc]
		if p == nil && !eom { // the first part
			p = &partialMsg{id: c.nextMsg.Add(1)}
			if c.partial == nil {
				c.partial = map[*MessageContext]*partialMsg{}
			}
			c.partial[mc] = p
		} else if p != nil {
			first = false
		}
		if p == nil { // a whole Message
			c.mu.Unlock()
			if err != nil {
				return false, err
			}
			m.MessageID = c.nextMsg.Add(1)
		} else {
			part = true
			var sizePanic *PanicError // a framer's MaxMessageSize panicked
			if p.failed != nil {
				err = fmt.Errorf("%w: %w", actors.ErrMessageFailed, p.failed)
			} else if err == nil {
				sizePanic, err = c.checkParts(p.size + len(data))
			}
			if err != nil {
				abandon := !first && p.failed == nil // the connection has parts of it
				if p.failed == nil {
					p.failed = err
				}
				if eom {
					delete(c.partial, mc)
				}
				c.mu.Unlock()
				if sizePanic != nil && c.pid != nil {
					// the framer's failure, as a panic in CheckMessage
					// (checkMessage): told with c.mu released
					tell(c.sys, c.pid, &messages.AbortConnection{Err: sizePanic})
				}
				if abandon {
					c.abandonParts(p.id)
				}
				return true, err
			}
			p.size += len(data)
			if eom {
				delete(c.partial, mc)
			}
			c.mu.Unlock()
			m.MessageID = p.id
		}
		m.FramerMeta = make([]framers.Metadata, len(c.cfg.Framers))
		for i, f := range c.cfg.Framers {
			m.FramerMeta[i] = mc.FramerMetadata(f)
		}
	}
	m.SendID = c.nextSend.Add(1)
	m.Data = data
	m.EndOfMessage = eom
	m.Props = props
	if props.Lifetime > 0 && first {
		m.Queued = time.Now()
	}
	return part, nil
}

// checkParts checks the size of a Message sent in parts, its parts so far
// (size bytes), against the largest message of each framer that has one
// (framers.MaxMessageSizer): a part that takes it above is a SendError,
// not a connection failure in the framer. It runs on the sender's
// goroutine, with c.mu held: a panic in MaxMessageSize is the framer's
// failure, as in CheckMessage (checkMessage): the part fails with the
// *PanicError (err), also returned as pe for the caller to end the
// connection with once it has let go of c.mu.
func (c *Connection) checkParts(size int) (pe *PanicError, err error) {
	for _, f := range c.cfg.Framers {
		if ms, ok := f.(framers.MaxMessageSizer); ok {
			limit, pe := maxMessageSize(f, ms)
			if pe != nil {
				return pe, pe
			}
			if size > limit {
				return nil, &framers.TooLargeError{Size: uint64(size), Max: uint64(limit)}
			}
		}
	}
	return nil, nil
}

// maxMessageSize is ms.MaxMessageSize, f's, with a panic in it returned
// as a *PanicError.
func maxMessageSize(f framers.Framer, ms framers.MaxMessageSizer) (limit int, pe *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			pe = &PanicError{Where: fmt.Sprintf("framer %T MaxMessageSize", f), Value: r, Stack: debug.Stack()}
		}
	}()
	return ms.MaxMessageSize(), nil
}

// abandonParts tells the connection that Message id, some parts of which
// it has, failed here: it drops what it holds of it. It goes the way the
// parts went (post), after them.
func (c *Connection) abandonParts(id uint64) {
	if c.pid != nil {
		c.post(&messages.SendMessage{MessageID: id, EndOfMessage: true, Abandon: true})
	}
}

// partNotHandedOver: part m (of mc's Message) could not be handed over to
// the connection (the send queue was full, or its ctx ended while it waited
// for room): its Message fails as a whole, as for a part refused.
func (c *Connection) partNotHandedOver(mc *MessageContext, m *messages.SendMessage, err error) {
	c.mu.Lock()
	if p := c.partial[mc]; p != nil && p.id == m.MessageID && p.failed == nil {
		p.failed = err
	}
	c.mu.Unlock()
	c.abandonParts(m.MessageID) // nothing to drop when it was the first: the connection ignores it
}

// checkMessage runs a framer's CheckMessage on the sender's goroutine. A
// panic there is the framer's failure: the Send fails with the *PanicError,
// and the connection, once started, ends with it as it does for a panic in
// any other framer method.
func (c *Connection) checkMessage(f framers.Framer, chk framers.MessageChecker, data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Where: fmt.Sprintf("framer %T CheckMessage", f), Value: r, Stack: debug.Stack()}
			if c.pid != nil {
				tell(c.sys, c.pid, &messages.AbortConnection{Err: err})
			}
		}
	}()
	return chk.CheckMessage(data)
}

func (c *Connection) checkSendable() error {
	if !c.dir.Sends() {
		return errSendReceiveOnly
	}
	if st := c.link.State(); !st.Allows(actors.OpSend) {
		return &actors.StateError{Op: actors.OpSend, State: st}
	}
	return nil
}

// Send sends a complete Message and returns when it is Sent (handed to the
// protocol stack), with a *SendError otherwise (one that unwraps to
// ErrExpired is the Expired event). mc may be nil. When the send queue is
// full, Send waits for room, until the message's msgLifetime passes
// (Expired: it is not sent). ctx bounds the wait only: a message already
// handed over may still be sent after ctx ends. data must not be modified
// until Send returns nil or a *SendError. When it returns ctx's error (a
// bare context.Canceled or DeadlineExceeded) the message was handed over
// and may still be written: data is the connection's then, until the
// Connection has ended; to reuse the buffer at once, send a copy, or use
// SendAsync, whose handler tells when the message is Sent.
func (c *Connection) Send(ctx context.Context, data []byte, mc *MessageContext) error {
	return c.send(ctx, data, mc, true)
}

// SendPartial sends part of a Message; the parts sent with the same
// MessageContext form one Message, ended by the call with endOfMessage
// true. Each call has its own Sent or SendError. While a Message is open
// (sent in part), other Messages wait behind it and go out once it ends:
// a blocking Send of another Message on the goroutine that is to end it
// waits for ever (or until its ctx ends); send those with SendAsync.
//
// Each part is checked as a whole Message is (its Message Properties, the
// framers' CheckMessage, and, for a framer with a largest message, the
// size of the parts so far). A Message fails as a whole: once a part of
// it fails (a SendError, or Expired), every later part of it fails too,
// with a SendError unwrapping to [ErrMessageFailed] and to that part's
// error, nothing of it reaches the peer as a complete Message (the
// framers drop the parts they hold; a framer that sent parts already, as
// framers.Delimiter does, fails the connection instead), and the Messages
// waiting behind it go on. msgLifetime is a property of the Message (RFC
// 9622 §9.1.3.1): its first part's applies, while that part waits to go
// out; the later parts' is ignored, so that a byte stream never loses a
// part from the middle of a Message.
func (c *Connection) SendPartial(ctx context.Context, data []byte, mc *MessageContext, endOfMessage bool) error {
	if mc == nil && !endOfMessage {
		return c.refused(0, errPartialNeedsContext())
	}
	return c.send(ctx, data, mc, endOfMessage)
}

// errPartialNeedsContext refuses a part sent without a MessageContext: a
// new SendError each time (its fields are the caller's to change), around
// one shared cause.
func errPartialNeedsContext() error {
	return &SendError{Reason: ReasonInvalidMessageProperties, Err: errNoPartialContext}
}

var errNoPartialContext = errors.New("a partial send needs a MessageContext")

// refused is the SendError of a send refused before it was handed to the
// connection actor (id: its send id, 0 when it had none yet), traced as
// the connection traces the SendErrors (and Expired) of the sends it had.
func (c *Connection) refused(id uint64, err error) error {
	if c.link.Tracing() {
		if id == 0 {
			id = c.nextSend.Add(1)
		}
		c.link.TraceRefusedSend(id, err)
	}
	return sendError(err)
}

func (c *Connection) send(ctx context.Context, data []byte, mc *MessageContext, eom bool) error {
	if err := c.checkSendable(); err != nil {
		return c.refused(0, err)
	}
	w := sendWaiters.Get().(*sendWaiter)
	m := &w.msg
	part, err := c.fillSend(m, data, mc, eom)
	if err != nil {
		w.release()
		return c.refused(0, err)
	}
	var expire time.Time // its msgLifetime bounds a wait for room too
	if !m.Queued.IsZero() {
		expire = m.Queued.Add(m.Props.Lifetime)
	}
	if err := c.link.AcquireSendExpectBy(ctx, len(data), m.SendID, w.fn, expire); err != nil {
		if part {
			c.partNotHandedOver(mc, m, err)
		}
		id := m.SendID
		w.release() // never handed over
		return c.refused(id, err)
	}
	c.postNow(m)
	// the event has usually come already: the write ran on this goroutine
	if !w.state.CompareAndSwap(waitPending, waitParked) {
		return w.finish(w.err)
	}
	select {
	case err := <-w.done:
		return w.finish(err)
	case <-ctx.Done():
		c.link.ForgetSend(m.SendID)
		select {
		case err := <-w.done:
			return w.finish(err)
		default:
			return ctx.Err() // w may still get its event: not reused
		}
	}
}

// sendWaiter is how a blocking Send waits for its event, with the command
// it hands over; it is reused once its message was Sent. An event that
// comes before the Send waits is left in err (no channel operation); once
// the Send waits (parked), it comes through done.
type sendWaiter struct {
	msg   messages.SendMessage
	done  chan error
	fn    func(error)
	err   error
	state atomic.Int32 // waitPending, waitParked or waitDone
}

// finish ends a Send whose event err came. After Sent, nothing refers to
// the message any more (the connection reports it once written) and w is
// reused; after a SendError the message may still be queued (the event of
// a connection that ended or lost its transport comes before its queue is
// dropped), so w is left to the collector.
func (w *sendWaiter) finish(err error) error {
	if err == nil {
		w.release()
		return nil
	}
	return sendError(err)
}

const (
	waitPending = iota
	waitParked
	waitDone
)

var sendWaiters = sync.Pool{New: func() any {
	w := &sendWaiter{done: make(chan error, 1)}
	w.fn = func(err error) {
		w.err = err
		if !w.state.CompareAndSwap(waitPending, waitDone) {
			w.done <- err // its Send waits
		}
	}
	return w
}}

// release returns w to the pool (its channel is empty, its message no
// longer referred to).
func (w *sendWaiter) release() {
	w.msg = messages.SendMessage{}
	w.err = nil
	w.state.Store(waitPending)
	sendWaiters.Put(w)
}

// SendAsync sends a complete Message without waiting (seed: send with a
// sent_handler). handler, when not nil, gets its Sent (nil error) or
// SendError event, in order with the connection's other events. A full send
// queue is reported as a SendError unwrapping to ErrSendQueueFull. Every
// message handed over before the connection ended has its event before
// the terminal event (Closed, ConnectionError); one refused because the
// connection has ended (or is closing) answers a call made after that and
// may come after it.
func (c *Connection) SendAsync(data []byte, mc *MessageContext, handler func(*Connection, error)) {
	c.sendAsync(data, mc, true, handler)
}

// SendPartialAsync is SendPartial without waiting (seed: send with a
// sent_handler and end_of_message False): the parts sent with the same
// MessageContext form one Message, ended by the call with endOfMessage
// true; handler, when not nil, gets each part's Sent or SendError, as for
// SendAsync. Other Messages wait behind an open one, and a part that fails
// fails its whole Message, as for SendPartial.
func (c *Connection) SendPartialAsync(data []byte, mc *MessageContext, endOfMessage bool, handler func(*Connection, error)) {
	if mc == nil && !endOfMessage {
		err := c.refused(0, errPartialNeedsContext())
		if handler != nil {
			c.link.SubmitAs("SendAsync handler", func() { handler(c, err) })
		}
		return
	}
	c.sendAsync(data, mc, endOfMessage, handler)
}

func (c *Connection) sendAsync(data []byte, mc *MessageContext, eom bool, handler func(*Connection, error)) {
	// fail refuses send id (0: it has none yet)
	fail := func(id uint64, err error) {
		err = c.refused(id, err)
		if handler != nil {
			c.link.SubmitAs("SendAsync handler", func() { handler(c, err) })
		}
	}
	if err := c.checkSendable(); err != nil {
		fail(0, err)
		return
	}
	m, part, err := c.prepareSend(data, mc, eom)
	if err != nil {
		fail(0, err)
		return
	}
	if err := c.link.TryAcquireSend(len(data)); err != nil {
		if part {
			c.partNotHandedOver(mc, m, err)
		}
		fail(m.SendID, err)
		return
	}
	if handler != nil {
		if !c.link.ExpectSend(m.SendID, func(err error) {
			err = sendError(err)
			c.link.SubmitAs("SendAsync handler", func() { handler(c, err) })
		}) {
			c.link.ReleaseSend(len(data))
			fail(m.SendID, ErrClosed) // the connection has ended: no part of anything goes out
			return
		}
	}
	c.post(m)
}

// Batch runs fn and sends every message fn sends with SendAsync as one
// batch, in as few writes as possible (seed: batch; RFC 9622 StartBatch /
// EndBatch). Blocking Sends inside fn are not batched: each goes out at
// once, with the messages batched before it. The batch is the
// Connection's, not fn's goroutine's: a SendAsync from another goroutine
// while fn runs joins it, and Batches nested or run from several
// goroutines at once make one batch, sent when the last of them ends.
func (c *Connection) Batch(fn func()) {
	c.mu.Lock()
	c.batching.Add(1)
	c.mu.Unlock()
	defer func() {
		// the last Batch to end hands the batch over before it lets
		// batching drop, under mu: a SendAsync that comes after (post)
		// waits for mu and goes after the batch, not before it
		c.mu.Lock()
		if c.batching.Load() == 1 && len(c.batch) > 0 {
			b := c.batch
			c.batch = nil
			tell(c.sys, c.pid, &messages.SendBatch{Messages: b})
		}
		c.batching.Add(-1)
		c.mu.Unlock()
	}()
	fn()
}

// post hands a send to the actor, or to the open batch.
func (c *Connection) post(m *messages.SendMessage) {
	if c.batching.Load() > 0 {
		c.mu.Lock()
		if c.batching.Load() > 0 {
			c.batch = append(c.batch, m)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	c.postActor(m)
}

// postNow hands the send of a blocking Send to the actor: it is not
// batched (its Send waits for its event, which a batch would hold until
// its end: inside Batch's fn, for ever). Messages already batched go
// first, with it, so that sends keep their order.
func (c *Connection) postNow(m *messages.SendMessage) {
	if c.batching.Load() > 0 {
		c.mu.Lock()
		if c.batching.Load() > 0 && len(c.batch) > 0 {
			b := append(c.batch, m)
			c.batch = nil
			tell(c.sys, c.pid, &messages.SendBatch{Messages: b}) // under mu (Batch)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	c.postActor(m)
}

// postActor hands a send to the actor.
func (c *Connection) postActor(m *messages.SendMessage) {
	p := c.poster.Load()
	if p == nil {
		if p = actors.NewPoster(c.sys.s.AS, c.pid); p == nil {
			tell(c.sys, c.pid, m)
			return
		}
		c.poster.Store(p)
	}
	p.Post(m)
}

// Receive waits for one receive event and returns it: a complete Message,
// or a part of one (EndOfMessage false) as MinIncompleteLength and
// MaxLength allow. A receive failure is a *ReceiveError; once the
// connection has ended, or the peer has ended its stream, and every
// received message was returned, Receive returns a *ReceiveError
// unwrapping to ErrClosed (to ErrAborted after this side's Abort, to the
// ConnectionError's cause after a failure). If ctx ends, Receive returns
// ctx.Err() and no message is lost.
//
// The peer's clean end of stream (TCP FIN, TLS close_notify, a QUIC
// stream's FIN) half-closes the connection (RFC 9623: FIN is not Closed):
// the last message before it is final (MessageContext.IsFinal) when gotaps
// has the end as it delivers the message: a framer delivering at the end
// (an unterminated last line), or the data and the end in one read (TLS
// 1.2 close_notify, a QUIC FIN); on plain TCP and Unix sockets the FIN is
// read after the data, so the last message usually is not marked, and the
// next Receive returns a *ReceiveError unwrapping to ErrClosed. canReceive
// becomes false, and the connection stays Established: Send still works
// until this side ends too, with Close or a Message sent with the Final
// property, and then the connection is Closed. If this side had already
// sent its Final Message, or under a re-establishment policy, the peer's
// end of stream ends the connection as before (Closed, or a
// re-establishment).
//
// Over TLS the end of stream is clean only with the peer's close_notify. A
// TCP FIN without it (the stream cut by the peer or on the path: the data
// may be truncated, RFC 8446 §6.1) is a failure instead: the connection
// ends with a *ConnectionError unwrapping to [ErrTLSTruncated] and
// [io.ErrUnexpectedEOF], no message is final, and once the messages
// received before it are returned, Receive returns a *ReceiveError with
// that cause ([SecurityParameters.SetTruncationAllowed] makes a FIN after
// a whole record a clean end).
//
// On Linux the end of a TCP stream (plain TCP, and the TCP under TLS; not
// MPTCP) is checked against the socket's state (only then, not per
// message): when the socket has ended under it (a reset, TCP_USER_TIMEOUT
// or the retransmission timeout, whose error a write took: the kernel
// reads such a socket as an end of stream), or the peer reset the
// connection after its FIN before this side read the FIN, it is a failure,
// never a half-close (nor, over TLS, ErrTLSTruncated): the connection ends
// with a *ConnectionError unwrapping to the socket's error (ECONNRESET,
// ETIMEDOUT), and once the messages received before it are returned,
// Receive returns a *ReceiveError with that cause.
func (c *Connection) Receive(ctx context.Context, opts ...ReceiveOption) (*Message, error) {
	if !c.dir.Receives() {
		return nil, errReceiveSendOnly
	}
	o := receiveOptions(opts)
	if o.max == 0 {
		return nil, errMaxLength
	}
	res, err := c.link.Receive(ctx, o.min, o.max)
	if err != nil {
		return nil, err
	}
	return c.message(res)
}

// ReceiveAsync queues one receive request; handler gets its event (seed:
// receive with a handler), in order with the connection's other events.
// The Messages received before the connection ended come before its
// terminal event (Closed, ConnectionError), also to a ReceiveAsync called
// after the end while that event's handler had not run yet (as the
// previous Received handler does in a receive loop): RFC 9622 §11 holds
// the terminal event back while other events are outstanding. The
// ReceiveError of a receive that finds nothing more, and the SendError of
// a SendAsync refused because the connection has ended, answer a call
// made after the end: they may come after the terminal event.
func (c *Connection) ReceiveAsync(handler func(*Connection, *Message, error), opts ...ReceiveOption) {
	if !c.dir.Receives() {
		c.link.SubmitAs("ReceiveAsync handler", func() { handler(c, nil, errReceiveSendOnly) })
		return
	}
	o := receiveOptions(opts)
	if o.max == 0 {
		c.link.SubmitAs("ReceiveAsync handler", func() { handler(c, nil, errMaxLength) })
		return
	}
	c.link.ReceiveAsync(o.min, o.max, func(res actors.RecvResult) {
		m, err := c.message(res)
		handler(c, m, err)
	})
}

func (c *Connection) message(res actors.RecvResult) (*Message, error) {
	if res.Err != nil {
		var re *ReceiveError
		if errors.As(res.Err, &re) {
			return nil, re
		}
		r := ReasonUnknown
		switch {
		case errors.Is(res.Err, framers.ErrMessageTooLarge):
			r = ReasonMessageTooLarge
		case errors.Is(res.Err, framers.ErrDeframingFailed), errors.Is(res.Err, framers.ErrTruncated):
			r = ReasonDeframingFailed
		}
		return nil, &ReceiveError{Reason: r, Err: res.Err}
	}
	mm := c.spare.take() // the Message and its context in one allocation, or the released one
	mc := &mm.mc
	if !res.EndOfMessage || c.recvCtx.Load() != nil {
		// a message received in parts: every part has the same Context
		// (RFC 9622 §9.3.2.2), one of its own, not a part's (a part's
		// memory is reused once it is released)
		mc = c.partContext(res.EndOfMessage)
	} else {
		mc.conn = c
	}
	for i, md := range res.Meta {
		if md != nil && i < len(c.cfg.Framers) {
			mc.setFramerMetadata(c.cfg.Framers[i], md)
		}
	}
	// Received metadata (RFC 9622 §9.3.2.2): the ECN bits of a UDP or
	// UDP-Lite datagram; final when the peer ended its stream after this
	// message; early when every byte of it was read on QUIC before the
	// handshake completed (0-RTT; crypto/tls has no server 0-RTT).
	if res.HasTOS {
		mc.setECN(stacks.ECNOf(res.TOS))
	}
	if res.Final {
		mc.setReceivedFinal(true)
	}
	if res.Early {
		mc.setEarlyData(true)
	}
	mm.m = Message{Data: res.Data, Context: mc, EndOfMessage: res.EndOfMessage, spare: &c.spare, rm: mm}
	if res.Backing != nil {
		mm.m.backing, mm.m.link = res.Backing, c.link
	}
	return &mm.m, nil
}

// partContext returns the Context of the message a part belongs to,
// making it for the message's first part; the last part (eom) takes it
// off the Connection.
func (c *Connection) partContext(eom bool) *MessageContext {
	if eom {
		if mc := c.recvCtx.Swap(nil); mc != nil {
			return mc
		}
		return &MessageContext{conn: c}
	}
	if mc := c.recvCtx.Load(); mc != nil {
		return mc
	}
	mc := &MessageContext{conn: c}
	if !c.recvCtx.CompareAndSwap(nil, mc) {
		return c.recvCtx.Load()
	}
	return mc
}

// receivedMessage is a received Message with its MessageContext.
type receivedMessage struct {
	m  Message
	mc MessageContext
}

// errCloseClosed is Close's error on a connection already closed (made
// once: a server closing connections its peers closed first meets it often).
var errCloseClosed = fmt.Errorf("close: %w", ErrClosed)

// Close closes the connection gracefully (RFC 9622 §10): every message
// already handed over is sent, then the peer sees the end of the stream.
// After the peer's end of stream (a half-closed connection, see Receive)
// nothing is left to wait for: the transport is closed once the queued
// messages are written, and Closed follows. Otherwise, on TCP, once the peer has acknowledged everything sent and nothing
// received is left unread in the socket, the socket is closed at once and
// Closed follows; otherwise (and on TLS and QUIC) gotaps sends its end of
// stream, reads and discards until the peer's (or until the linger timeout,
// WithLingerTimeout) so that data still arriving cannot reset the
// connection and lose what was sent, and then reports Closed. The linger
// timeout starts once the queued messages are written. Writing them is
// bounded by connTimeout only (ConnTimeout): with it set, a peer that
// stops reading fails the closing connection once no queued byte was
// written (nor, on TCP and TLS, acknowledged) for connTimeout, with a
// ConnectionError unwrapping to syscall.ETIMEDOUT, and the messages still
// queued get SendErrors for it. Without it (Disabled, the default) the
// close waits for the peer to read, as RFC 9622 §10 has it; Abort ends it
// at once. Close does not wait; Done does. When Close returns the
// Connection is Closing (State), and a Send after it fails at once with a
// SendError unwrapping to ErrNotAllowed. Closing a closed connection
// returns an error unwrapping to ErrClosed; Close while it is closing
// (from another goroutine, say) returns nil and changes nothing.
func (c *Connection) Close() error {
	if c.link.State() == actors.Closed {
		return errCloseClosed
	}
	// from now on the Connection is Closing and refuses sends here: the
	// actor may take this Close only after its current turn (Link.State).
	// Closing already (Close, Abort, CloseGroup or AbortGroup called
	// before): this Close changes nothing, and posts nothing that could
	// overtake the earlier command (AbortGroup's goes through the group,
	// and a Close straight to the connection closed it gracefully first)
	if !c.link.MarkCloseCalled() {
		return nil
	}
	actors.GrowStack() // the close runs on this goroutine, many actor frames deep
	c.flushBatch()
	tell(c.sys, c.pid, &messages.CloseConnection{})
	return nil
}

// flushBatch hands the messages of an open Batch to the actor now: a
// Close inside Batch's fn closes after the messages sent before it, not
// before them (they would fail).
func (c *Connection) flushBatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.batch; len(b) > 0 {
		// under mu, as every hand-over of a batch: one made later goes
		// after it
		c.batch = nil
		tell(c.sys, c.pid, &messages.SendBatch{Messages: b})
	}
}

// Abort ends the connection at once (the peer sees a reset); queued
// messages are dropped. The ConnectionError event follows. From the call
// on, the Connection is Closing (until the ConnectionError makes it
// Closed) and refuses sends as not allowed.
func (c *Connection) Abort() {
	if c.link.State() != actors.Closed {
		actors.GrowStack() // the abort runs on this goroutine, many actor frames deep
		// Closing at once, as after Close: the actor may take the Abort
		// only after its current turn (Link.State)
		c.link.MarkCloseCalled()
		tell(c.sys, c.pid, &messages.AbortConnection{})
	}
}

// CloseGroup closes every connection of this connection's group. When it
// returns, every member is Closing (State; a Send is refused with
// ErrNotAllowed), and each closes after its current turn, as after its
// own Close. A connection that left its group (CloneError) is a group of
// its own: it closes alone.
func (c *Connection) CloseGroup() {
	if c.link.LeftGroup() {
		_ = c.Close()
		return
	}
	c.flushBatch()
	c.endGroup(false)
}

// endGroup asks the group to close or abort its members. The group marks
// them all Closing before it answers, so every member is Closing when
// CloseGroup or AbortGroup returns (the closes follow, each after its
// connection's current turn). The wait is for the group's answer, or its
// end (watched: a group that has ended, its last member with it, drops
// the request), not for this connection's: a member that has ended is
// no sign that the group, which outlives it while others run, has taken
// the request in.
func (c *Connection) endGroup(abort bool) {
	actors.GrowStack() // the members' closes may run on this goroutine, many actor frames deep
	c.link.MarkCloseCalled()
	_, _ = callWatching[*actors.GroupClosing](context.Background(), c.sys, c.group, &messages.CloseGroup{Abort: abort})
}

// AbortGroup aborts every connection of this connection's group (of its
// own, after it left its group: see CloseGroup).
func (c *Connection) AbortGroup() {
	if c.link.LeftGroup() {
		c.Abort()
		return
	}
	c.endGroup(true)
}

// GroupedConnections returns the connections of this connection's group
// that have not ended (itself included while it is open; once it has
// ended, the others, none once the whole group has ended). A stream the
// peer opened on a QUIC session a Listener accepted is listed as soon as
// it has joined the group, possibly before the Listener hands it over:
// it is the Connection the Listener's Accept or ConnectionReceived later
// gives, and the event handlers set on it meanwhile stay (the
// Preconnection's Closed and ConnectionError handlers are given it only
// for those events it has no handler for).
func (c *Connection) GroupedConnections(ctx context.Context) ([]*Connection, error) {
	gm, err := callConn[*actors.GroupMembers](ctx, c, &messages.ListGroupMembers{}) // the connection knows whether it left its group
	if errors.Is(err, ErrClosed) && !c.link.LeftGroup() {
		// its actor has stopped: the group, which outlives it while other
		// members run, lists them (it has ended once its last member has)
		gm, err = callWatching[*actors.GroupMembers](ctx, c.sys, c.group, &messages.ListGroupMembers{})
	}
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]*Connection, 0, len(gm.Members))
	for _, m := range gm.Members {
		if m.Link.State() == actors.Closed {
			continue // ended: listed until the group has taken its end in
		}
		out = append(out, connectionOf(c.sys, &actors.ConnectionStarted{Link: m.Link, Conn: m.PID, Group: c.group}, c.cfg))
	}
	return out, nil
}

// ConnectionProperties is what GetProperties reads (RFC 9622 §8): the
// state, whether the connection can send and receive, the selected protocol
// stack, its endpoints and every property's effective value.
type ConnectionProperties struct {
	State      ConnectionState
	CanSend    bool
	CanReceive bool
	// Stack is the selected protocol stack ("tcp"); empty before Ready.
	Stack  string
	Local  *LocalEndpoint
	Remote *RemoteEndpoint
	// Properties holds every property's effective value as configured.
	Properties *TransportProperties
	// Socket is what the transport's socket really does, read back with
	// getsockopt (nil before Ready or for stacks that cannot tell).
	Socket *SocketInfo
	// Selected tells, for each Selection Property, whether the selected
	// stack provides it (RFC 9622 §8: read back as booleans); keepAlive,
	// softErrorNotify, QUIC's perMsgReliability and UDP-Lite's
	// fullChecksumSend / fullChecksumRecv are read back from the socket
	// (SO_KEEPALIVE or a PING period, ICMP error delivery, datagrams
	// negotiated, the checksum coverage), not from what the stack could
	// do; zeroRttMsg and _gotaps.retransmitNotify are false when Avoided
	// or Prohibited (the feature is off);
	// useTemporaryLocalAddress is whether the local address in use is a
	// temporary IPv6 address (RFC 8981; Linux, absent elsewhere).
	Selected map[Property]bool
}

// SocketInfo is read back from a connection's socket.
type SocketInfo struct {
	// DSCP in IP_TOS / IPV6_TCLASS (from connCapacityProfile).
	DSCP uint8
	// UserTimeout is TCP_USER_TIMEOUT (0: the system default).
	UserTimeout time.Duration
	// KeepAlive and KeepAliveIdle: SO_KEEPALIVE and TCP_KEEPIDLE.
	KeepAlive     bool
	KeepAliveIdle time.Duration
	// MPTCP: the connection really runs Multipath TCP.
	MPTCP bool
	// SendMsgMaxLen and RecvMsgMaxLen are the largest message sent or
	// received in one piece; -1 means unlimited.
	SendMsgMaxLen, RecvMsgMaxLen int64
	// TLSVersion, ALPN, CipherSuite and TLSGroup describe the negotiated
	// security (TLS and QUIC; empty otherwise), by their crypto/tls names:
	// "TLS 1.3", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "X25519MLKEM768"
	// (TLSGroup, the key exchange group, is empty for an RSA key exchange).
	TLSVersion  string
	ALPN        string
	CipherSuite string
	TLSGroup    string
	// Used0RTT: the connection carried 0-RTT early data (QUIC); Resumed: the
	// TLS session was resumed from a cached ticket.
	Used0RTT, Resumed bool
	// SendChecksumCoverage and RecvChecksumCoverage are UDPLITE_SEND_CSCOV
	// and UDPLITE_RECV_CSCOV (from msgChecksumLen and recvChecksumLen):
	// bytes covered including the 8-byte UDP-Lite header, 0 = full
	// coverage. Always 0 on other stacks.
	SendChecksumCoverage, RecvChecksumCoverage int
	// MaxPacingRate is SO_MAX_PACING_RATE in bit/s (from maxSendRate; TCP
	// and TLS only, 0 = unlimited).
	MaxPacingRate uint64
	// SoftErrors: ICMP errors are delivered as SoftError events
	// (softErrorNotify; UDP and UDP-Lite).
	SoftErrors bool
	// SingularMsgMaxLen is singularTransmissionMsgMaxLen: the largest
	// message sent in one packet, without fragmentation or transport
	// segmentation. UDP and UDP-Lite: the path MTU the kernel knows
	// (IP_MTU) less the IP and UDP headers; TCP: the MSS (TCP_MAXSEG);
	// TLS: the MSS less one record's overhead; framers' per-Message bytes
	// come off it, and it is at most SendMsgMaxLen. -1: not applicable
	// (QUIC streams, Unix sockets, a Connection that cannot send); 0:
	// unknown (not Linux).
	SingularMsgMaxLen int64
	// Congestion is the congestion control the TCP or TLS socket runs
	// (TCP_CONGESTION, e.g. "cubic", "bbr"; "lp" for a Scavenger
	// connCapacityProfile where the kernel offers it); "" on other stacks.
	Congestion string
	// Datagrams: both ends of the QUIC session enabled datagrams (RFC
	// 9221), so unreliable messages can go unreliably; false elsewhere.
	Datagrams bool
	// Multicast: the connection sends to a multicast group (Initiate to
	// RemoteEndpoint.WithMulticastGroupIP), or a Listener of one received
	// it from a sender. MulticastHopLimit is, for a sender,
	// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS read back from its socket
	// (RemoteEndpoint.WithHopLimit; 1 by default); 0 otherwise.
	Multicast         bool
	MulticastHopLimit uint8
}

// Get returns one property's value, including the read-only ones (connState,
// canSend, canReceive).
func (p *ConnectionProperties) Get(prop Property) (any, bool) {
	switch prop {
	case ConnState:
		return p.State, true
	case CanSend:
		return p.CanSend, true
	case CanReceive:
		return p.CanReceive, true
	case TCPUserTimeoutChangeable:
		// Linux has no TCP User Timeout Option (RFC 5482): a peer can
		// never change the user timeout
		return false, true
	case SingularTransmissionMsgMaxLen:
		if p.Socket == nil || p.Socket.SingularMsgMaxLen == 0 {
			return nil, false
		}
		if p.Socket.SingularMsgMaxLen < 0 {
			return NotApplicable, true
		}
		return p.Socket.SingularMsgMaxLen, true
	case SendMsgMaxLen, RecvMsgMaxLen:
		if p.Socket == nil {
			return nil, false
		}
		n := p.Socket.SendMsgMaxLen
		if prop == RecvMsgMaxLen {
			n = p.Socket.RecvMsgMaxLen
		}
		if n < 0 {
			return Unlimited, true
		}
		return n, true
	}
	if b, ok := p.Selected[prop]; ok {
		return b, true
	}
	if p.Properties == nil {
		return nil, false
	}
	return p.Properties.Get(prop)
}

// GetProperties reads the connection's properties (seed: get_properties).
// It waits at most 5 s for the connection's actor; use GetPropertiesContext
// to bound it yourself.
func (c *Connection) GetProperties() *ConnectionProperties {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.GetPropertiesContext(ctx)
	if err != nil {
		st := c.State()
		return &ConnectionProperties{State: st}
	}
	return p
}

// GetPropertiesContext is GetProperties bounded by ctx.
func (c *Connection) GetPropertiesContext(ctx context.Context) (*ConnectionProperties, error) {
	info, err := callConn[*messages.ConnectionInfo](ctx, c, &messages.GetConnectionInfo{})
	if err != nil {
		return nil, err
	}
	out := &ConnectionProperties{
		State:      c.State(),
		CanSend:    info.CanSend,
		CanReceive: info.CanReceive,
		Stack:      info.Stack,
		Local:      localFromMessage(info.Local),
		Remote:     remoteFromMessage(info.Remote),
	}
	if tp, err := propsFromMessage(info.Properties); err == nil {
		if d := c.msgDefaults(); d != nil {
			for p, v := range d.set {
				_ = tp.Set(p, v) // canonical values: they were set once already
			}
		}
		out.Properties = tp
	}
	if so := info.Socket; so != nil {
		out.Socket = &SocketInfo{DSCP: uint8(so.Dscp), UserTimeout: time.Duration(so.UserTimeoutNs),
			KeepAlive: so.KeepAlive, KeepAliveIdle: time.Duration(so.KeepAliveIdleNs), MPTCP: so.Mptcp,
			SendMsgMaxLen: so.SendMsgMaxLen, RecvMsgMaxLen: so.RecvMsgMaxLen, TLSVersion: so.TlsVersion, ALPN: so.Alpn,
			CipherSuite: so.CipherSuite, TLSGroup: so.TlsGroup, Used0RTT: so.Used_0Rtt, Resumed: so.Resumed,
			SendChecksumCoverage: int(so.SendChecksumCoverage), RecvChecksumCoverage: int(so.RecvChecksumCoverage),
			MaxPacingRate: so.MaxPacingRate, SoftErrors: so.SoftErrors, SingularMsgMaxLen: so.SingularMsgMaxLen,
			Congestion: so.Congestion, Datagrams: so.Datagrams,
			Multicast: so.Multicast, MulticastHopLimit: uint8(so.MulticastHopLimit)}
	}
	readBackSelection(out) // multipath as the socket really runs (stackopts.go)
	if st, err := stackNamed(info.Stack); err == nil {
		caps := st.Capabilities()
		out.Selected = map[Property]bool{}
		for _, prop := range NewTransportProperties().Properties() {
			if prop.Kind() != KindSelection {
				continue
			}
			if has, known := caps.Has(string(prop)); known {
				if prop == PreserveMsgBoundaries && len(c.cfg.Framers) > 0 {
					has = true // a framer delimits messages
				}
				out.Selected[prop] = has
			}
		}
		readBackSelected(out.Selected, info.Stack, out.Socket)
		for _, p := range []Property{ZeroRTTMsg, RetransmitNotify} {
			if pref := out.Properties.Preference(p); (pref == Avoid || pref == Prohibit) && out.Selected[p] {
				out.Selected[p] = false // selected with the feature off: no 0-RTT, no retransmission reports
			}
		}
		if ap, ok := out.Local.Addr(); ok {
			if tmp, err := stacks.IsTemporaryAddress(ap.Addr()); err == nil {
				out.Selected[UseTemporaryLocalAddress] = tmp
			}
		}
	}
	return out, nil
}

// stackNamed is the stack a connection names: stacks.ByName's, or the
// Unix stack, which stacks.All (and so ByName) leaves out.
func stackNamed(name string) (stacks.Stack, error) {
	if name == "unix" {
		return stacks.Unix(), nil
	}
	return stacks.ByName(name)
}

// readBackSelected replaces the stack's capabilities in selected by what
// the connection's socket really has, where the socket tells:
// keepAlive is SO_KEEPALIVE on TCP and TLS (QUIC: a PING period was
// set), perMsgReliability on QUIC is whether datagrams were negotiated,
// softErrorNotify is whether ICMP errors are delivered, and on
// UDP-Lite fullChecksumSend / fullChecksumRecv are whether the checksum
// coverage is full.
func readBackSelected(selected map[Property]bool, stack string, so *SocketInfo) {
	if so == nil {
		return
	}
	if _, ok := selected[KeepAlive]; ok {
		selected[KeepAlive] = so.KeepAlive
	}
	if _, ok := selected[SoftErrorNotify]; ok {
		selected[SoftErrorNotify] = so.SoftErrors
	}
	if stack == "quic" {
		// unreliable messages need datagrams both ends enabled
		selected[PerMsgReliability] = so.Datagrams
	}
	if stack == "udplite" {
		selected[FullChecksumSend] = so.SendChecksumCoverage == 0
		selected[FullChecksumRecv] = so.RecvChecksumCoverage == 0
	}
}

// SetProperty sets a connection property (RFC 9622 §8). On an open
// Connection the socket changes at once (connTimeout, keepAliveTimeout,
// tcp.userTimeout*, connCapacityProfile, recvChecksumLen, the rates,
// _gotaps.retransmitNotifyThreshold), and every later socket of the
// Connection (re-establishment, Clone) is made with the new value. A wrong
// type or value, a read-only or non-connection property (also
// tcp.userTimeoutChangeable) or a property the live transport cannot take
// (stacks.ErrNotApplicable: connTimeout on UDP, say) returns a
// *PropertyError and changes nothing; the connection is never terminated
// by a SetProperty error. connCapacityProfile on a UDP or UDP-Lite
// Connection a Listener accepted, which shares the Listener's socket,
// marks that Connection's later datagrams only (a per-datagram IP_TOS /
// IPV6_TCLASS control message; errors.ErrUnsupported on Windows); on a
// QUIC Connection it is stacks.ErrNotApplicable, accepted (quic-go shares
// the Listener's socket and has no per-connection TOS) or initiated (the
// DSCP is the session's socket's, set when it is dialed; dialed without
// one, quic-go writes each packet's TOS byte itself, for ECN), and so it
// is on a Unix domain socket Connection (no IP header), as are the TCP
// options (on UDP and QUIC too).
//
// A Message Property (msgPriority, msgLifetime, ...; RFC 9622 §9.1.3)
// becomes this Connection's default for the Messages it sends afterwards
// whose MessageContext does not set it, over the Preconnection's; other
// members of its group keep theirs, a later Clone starts with it. A
// default the stack cannot honour (msgReliable true on UDP) fails each
// such Send with a *SendError. A Connection Property waits at most 5 s for
// the connection's actor (a *PropertyError wrapping
// context.DeadlineExceeded after that). Safe for concurrent use.
func (c *Connection) SetProperty(p Property, v any) error {
	desc := descOf(p)
	if desc == nil {
		return &PropertyError{Property: p, Value: v, Err: ErrUnknownProperty}
	}
	// the canonical name from here on: the connection, its group and the
	// socket options know a property by it alone ("conn-timeout" would be
	// stored beside connTimeout, never applied)
	p = desc.name
	if desc.kind == KindMessage {
		return c.setMessageDefault(p, v)
	}
	if desc.kind != KindConnection || p == TCPUserTimeoutChangeable { // see ConnectionProperties.Get
		err := ErrReadOnlyProperty
		if desc.kind == KindSelection {
			err = ErrInvalidPropertyType
		}
		return &PropertyError{Property: p, Value: v, Err: err}
	}
	scratch := NewTransportProperties()
	if err := scratch.Set(p, v); err != nil {
		return err
	}
	canon, _ := scratch.Get(p)
	if err := checkSetProperty(c.cfg, p, canon); err != nil { // stackopts.go
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := callConn[bool](ctx, c, &messages.SetConnectionProperty{Name: string(p), Value: encodeValue(canon)})
	if err != nil {
		return &PropertyError{Property: p, Value: v, Err: err}
	}
	return nil
}

// msgDefaults are the Message Properties set on a Connection with
// SetProperty (RFC 9622 §9.1.3): the defaults of the Messages it sends,
// over the Preconnection's. A value is never changed in place: SetProperty
// stores a new one.
type msgDefaults struct {
	props *messages.MessageProps // the Preconnection's defaults with set applied
	set   map[Property]any       // canonical values, for GetProperties
}

// setMessageDefault makes v the value of Message Property p for the
// Messages this Connection sends from now on, unless their
// MessageContext sets it. Only this Connection's: a Clone made later
// starts with them, the other members of its group do not get them.
func (c *Connection) setMessageDefault(p Property, v any) error {
	scratch := NewTransportProperties()
	if err := scratch.Set(p, v); err != nil {
		return err
	}
	canon, _ := scratch.Get(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	next := &msgDefaults{set: map[Property]any{p: canon}}
	mp := *c.cfg.MessageDefaults
	if cur := c.msgDefaults(); cur != nil {
		mp = *cur.props
		for q, w := range cur.set {
			if q != p {
				next.set[q] = w
			}
		}
	}
	_ = applyMessageProps(&mp, func(q Property) (any, bool) { return canon, q == p })
	switch p {
	case MsgReliable:
		mp.ReliableSet = true
	case MsgOrdered:
		mp.OrderedSet = true
	}
	next.props = &mp
	c.rareFields().msgDef.Store(next)
	return nil
}

// EstablishmentReport tells what racing did for this connection: each
// attempt, when it started and ended (offsets from Initiate) and which won.
// It is nil for connections received by a Listener, and when the
// connection's actor does not answer within 5 s.
func (c *Connection) EstablishmentReport() *EstablishmentReport {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := callConn[*messages.ConnectionInfo](ctx, c, &messages.GetConnectionInfo{})
	if err != nil || info.EstablishmentReport == nil {
		return nil
	}
	r := info.EstablishmentReport
	out := &EstablishmentReport{Duration: time.Duration(r.DurationNs), FromCache: r.FromCache}
	for _, a := range r.Attempts {
		out.Attempts = append(out.Attempts, Attempt{
			Endpoint: a.Endpoint, Stack: a.Stack, Path: a.Path,
			Start: time.Duration(a.StartOffsetNs), End: time.Duration(a.EndOffsetNs), Err: a.Error, Won: a.Won,
		})
	}
	return out
}

// EstablishmentReport is what racing did for one connection.
type EstablishmentReport struct {
	Attempts  []Attempt
	Duration  time.Duration
	FromCache bool
}

// Attempt is one establishment attempt. Start and End are offsets from the
// call to Initiate; End is negative for an attempt stopped unfinished.
type Attempt struct {
	Endpoint string
	Stack    string
	Path     string
	Start    time.Duration
	End      time.Duration
	Err      string
	Won      bool
}
