package taps

import (
	"context"
	"errors"
	"fmt"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// CloneOption configures Clone. A nil CloneOption is ignored.
type CloneOption func(*cloneOpts)

type cloneOpts struct {
	framers []framers.Framer
	props   *TransportProperties
}

// CloneWithFramer gives the clone this framer stack instead of a copy of
// the original's (RFC 9622 §7.4 Clone(framer)). A nil framer among fs
// fails Clone and CloneAsync at once, with a *CloneError
// (ReasonInvalidConfiguration) unwrapping to os.ErrInvalid.
func CloneWithFramer(fs ...framers.Framer) CloneOption {
	return func(o *cloneOpts) { o.framers = fs }
}

// CloneWithProperties gives the clone these connection properties
// (RFC 9622 §7.4 Clone(connectionProperties)); selection properties stay
// those of the original. A Clone that is a stream of the same QUIC
// session (see Clone) cannot have a connTimeout (the session's idle
// timeout), keepAliveTimeout (its PING period) or connCapacityProfile
// (the DSCP of the session's UDP socket) of its own: giving one of them
// another value than the session has fails Clone and CloneAsync at once
// with a *CloneError (ReasonInvalidConfiguration) wrapping a
// *PropertyError that unwraps to stacks.ErrNotApplicable, as SetProperty
// of them on QUIC does.
func CloneWithProperties(tp *TransportProperties) CloneOption {
	return func(o *cloneOpts) { o.props = tp.Clone() }
}

// Clone makes a new Connection in this connection's group and returns it
// when it is Ready (RFC 9622 §7.4). On a multistreaming stack (QUIC) the
// clone is a new stream of the same session (the peer learns of it with its
// first message, as a ConnectionReceived in the same group on its side:
// through the Listener on the side that accepted the session, through
// OnConnectionReceived on the side that initiated it, which refuses it
// without a handler: the clone then ends with a ConnectionError),
// unless activeReadBeforeSend is Prefer (Require rules QUIC out): the clone then expects
// the peer to send first, which it cannot do on a stream it has not seen,
// so the clone is a new QUIC connection (its own UDP socket and
// handshake), which the peer's QUIC stack knows of when Clone returns.
// A gotaps Listener still hands it on as ConnectionReceived only with the
// first stream data (its QUIC listener waits for the first stream), in a
// group of its own. Otherwise (TCP, TLS) it is a new transport connection to the same remote
// address with the same stack and properties, falling back to the other
// endpoints of the connection's remote set and binding as its local set
// says (AddRemote, RemoveRemote, AddLocal, RemoveLocal). Connection
// properties of group members are entangled: SetProperty on one sets it on
// all, except connPriority. A failure is a *CloneError; a connection that
// left its group after a CloneError cannot be cloned (ReasonNotCloneable),
// nor can one a Listener accepted over any stack but QUIC (its remote
// endpoint is the port the peer connected from: ReasonNotCloneable,
// ErrNotAllowed, before any packet), nor one that is Closing or Closed,
// or whose group CloseGroup or AbortGroup ends (ReasonNotCloneable,
// unwrapping to ErrClosed), whether the close came before the Clone or
// as it started its clone.
// A Clone that the System's Shutdown ended, or one made after it, fails
// with a CloneError unwrapping to ErrSystemShutdown.
func (c *Connection) Clone(ctx context.Context, opts ...CloneOption) (*Connection, error) {
	clone, err := c.clone(ctx, opts...)
	return clone, c.shutdownCause(err)
}

// shutdownCause names the System's Shutdown in a CloneError it caused (or
// that came after it), as an Initiate's EstablishmentError does.
func (c *Connection) shutdownCause(err error) error {
	ce, ok := err.(*CloneError)
	if !ok || !c.sys.s.IsShutdown() || errors.Is(ce, ErrSystemShutdown) {
		return err
	}
	if ce.Err == nil {
		ce.Err = ErrSystemShutdown
	} else {
		ce.Err = fmt.Errorf("%w: %w", ErrSystemShutdown, ce.Err)
	}
	return ce
}

// CloneAsync is the RFC 9622 §7.4 form of Clone: it returns the new
// Connection at once, in Establishing, and its Ready or EstablishmentError
// follows as an event (set OnReady / OnEstablishmentError on it: a handler
// set after its event still gets it, once), as InitiateAsync does for
// Initiate. Sends made meanwhile wait for Ready. What Clone checks first
// (a connection that cannot be cloned, invalid options, the System shut
// down) fails here at once with a *CloneError. On a multistreaming stack
// the clone's stream is opened before it returns, which waits while the
// peer's stream limit is reached (bounded by ctx: when it ends first, a
// *CloneError with ReasonTimeout, as Clone returns). ctx bounds the
// establishment only: when it ends first, the clone's EstablishmentError
// has ReasonTimeout.
func (c *Connection) CloneAsync(ctx context.Context, opts ...CloneOption) (*Connection, error) {
	clone, err := c.cloneAsync(ctx, opts...)
	return clone, c.shutdownCause(err)
}

func (c *Connection) cloneAsync(ctx context.Context, opts ...CloneOption) (*Connection, error) {
	clone, link, err := c.cloneStart(ctx, opts...)
	if err != nil {
		return nil, err
	}
	abortUnlessReady(ctx, c.sys, clone.pid, link)
	return clone, nil
}

func (c *Connection) clone(ctx context.Context, opts ...CloneOption) (*Connection, error) {
	clone, link, err := c.cloneStart(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return c.awaitClone(ctx, clone, link)
}

// cloneStart prepares the clone and starts its actors.
func (c *Connection) cloneStart(ctx context.Context, opts ...CloneOption) (*Connection, *actors.Link, error) {
	req, cfg, err := c.prepareClone(ctx, opts...)
	if err != nil {
		return nil, nil, err
	}
	return c.startClone(ctx, req, cfg)
}

// prepareClone checks that c can be cloned and derives the clone's
// configuration (and, on a multistreaming stack, opens its stream).
func (c *Connection) prepareClone(ctx context.Context, opts ...CloneOption) (*actors.CloneConnection, *messages.ConnectionConfig, error) {
	var o cloneOpts
	for _, f := range opts {
		if f != nil { // a nil option is ignored
			f(&o)
		}
	}
	if err := checkFramers("CloneWithFramer", o.framers); err != nil {
		return nil, nil, &CloneError{Reason: ReasonInvalidConfiguration, Err: err}
	}
	if st := c.link.State(); !st.Allows(actors.OpClone) {
		return nil, nil, &CloneError{Reason: ReasonNotCloneable, Err: &actors.StateError{Op: actors.OpClone, State: st}}
	}
	if isMulticastConfig(c.cfg) { // multicast.go
		return nil, nil, &CloneError{Reason: ReasonNotCloneable, Err: errMulticastNotCloneable}
	}
	if c.link.LeftGroup() {
		// its group is itself alone, and a clone cannot join it: it would
		// join the group it left
		return nil, nil, &CloneError{Reason: ReasonNotCloneable, Err: errLeftGroup}
	}
	sets, err := c.endpointSets(ctx) // the ConnectionInfo and the endpoint sets (conn_endpoints.go)
	if err != nil {
		return nil, nil, &CloneError{Err: err}
	}
	info := sets.Info
	st, err := stackNamed(info.Stack)
	if err != nil || info.Remote == nil {
		return nil, nil, &CloneError{Reason: ReasonNotCloneable, Err: fmt.Errorf("no established stack to clone: %w", ErrNotAllowed)}
	}
	if c.accepted.Load() && !st.Capabilities().Multistreaming {
		// a new connection to the peer's address would go to the port the
		// peer connected from, where nothing listens (and would bind the
		// Listener's own port)
		return nil, nil, &CloneError{Reason: ReasonNotCloneable, Err: fmt.Errorf("%w over %s", errAcceptedNotCloneable, st.Name())}
	}
	cfg := *c.cfg // the snapshot is immutable: copy and change the copy
	cfg.Remotes, cfg.Locals = cloneEndpoints(info.Remote, sets)
	cfg.Stacks = []stacks.Stack{st}
	cfg.Properties = info.Properties // the entangled values as they are now
	if c.cfg.Stacks != nil {
		for _, s := range c.cfg.Stacks {
			if s.Name() == st.Name() {
				cfg.Stacks = []stacks.Stack{s} // keep the exact stack value (tests wrap stacks)
			}
		}
	}
	if o.framers != nil {
		cfg.Framers = append([]framers.Framer(nil), o.framers...)
	}
	stream := st.Capabilities().Multistreaming && !readFirstClone(cfg.Properties)
	if o.props != nil {
		merged, err := propsFromMessage(info.Properties)
		if err != nil {
			return nil, nil, &CloneError{Err: err}
		}
		for _, p := range o.props.Properties() {
			if p.Kind() == KindConnection && o.props.IsSet(p) {
				v, _ := o.props.Get(p)
				if err := merged.Set(p, v); err != nil {
					return nil, nil, &CloneError{Err: err}
				}
			}
		}
		if stream {
			if err := checkSessionWide(info.Properties, merged); err != nil {
				return nil, nil, &CloneError{Reason: ReasonInvalidConfiguration, Err: err}
			}
		}
		cfg.Properties = propsToMessageRole(merged, roleInitiate)
	}
	// the clone dials with the socket options of the properties as they
	// are now (SetProperty since Initiate, CloneWithProperties), keeping
	// the original's TLS configuration
	cfg.StackOptions = c.cloneStackOptions(cfg.Properties, cfg.StackOptions)
	req := &actors.CloneConnection{Config: &cfg}
	if stream {
		// a multistreaming stack (QUIC): the clone is a new stream of the
		// same session
		// the open waits for the peer's stream limit as long as this
		// call does, and no longer (ended as it returns: also when c
		// stopped meanwhile)
		octx, cancel := context.WithCancel(ctx)
		stream, err := callConn[*actors.StreamOpened](octx, c, &actors.OpenStream{Ctx: octx})
		cancel()
		if err != nil {
			reason := ReasonNotCloneable
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				reason = ReasonTimeout // ctx ended while the peer's stream limit was reached
			}
			return nil, nil, &CloneError{Reason: reason, Err: err}
		}
		req.Stream = stream
	}
	return req, &cfg, nil
}

// startClone starts the clone's actors in the group (the clone's
// establishment runs on from there). Its errors are CloneErrors.
func (c *Connection) startClone(ctx context.Context, req *actors.CloneConnection, cfg *messages.ConnectionConfig) (*Connection, *actors.Link, error) {
	link := actors.NewLink(c.sys.s.NewID(), cfg.RecvBufferLimit, cfg.SendBufferLimit, len(cfg.Framers) == 0)
	req.Link = link
	clone := newConnection(c.sys, link, cfg)
	if d := c.msgDefaults(); d != nil {
		clone.rareFields().msgDef.Store(d) // the Message Properties set on c (immutable)
	}
	clone.installHandlers(connHandlers{})
	// the group ends once its last member has: waiting on this member's
	// end too, a request the group took as it stopped (dropped unanswered)
	// fails at once instead of waiting for ctx
	started, err := callUnless[*actors.ConnectionStarted](ctx, c.sys, c.group, req, c.link.Gone())
	if err != nil {
		s, existed := startedUnanswered(ctx, c.sys, link, err) // (see Preconnection.start)
		if s != nil {
			clone.pid, clone.group = s.Conn, s.Group
			return clone, link, nil
		}
		if !existed && req.Stream != nil {
			// no member took the stream (the group refused it or had
			// ended): it would hold its session open (Abort is idempotent,
			// a member that starts late aborts it too)
			_ = req.Stream.T.Abort()
		}
		reason := ReasonUnknown
		var se *actors.StateError
		if errors.As(err, &se) || (errors.Is(err, ErrClosed) && ctx.Err() == nil) {
			// the group refused the clone (it is closing) or has ended
			// (c with it) since prepareClone checked c's state: as that
			// check says, c cannot be cloned
			reason = ReasonNotCloneable
		}
		return nil, nil, &CloneError{Reason: reason, Err: err}
	}
	clone.pid, clone.group = started.Conn, started.Group
	return clone, link, nil
}

// awaitClone waits for a started clone to be Ready (Clone).
func (c *Connection) awaitClone(ctx context.Context, clone *Connection, link *actors.Link) (*Connection, error) {
	if !link.AwaitReady(ctx) && !abortEstablishing(ctx, c.sys, clone.pid, link) {
		return nil, &CloneError{Reason: ReasonTimeout, Err: ctx.Err()}
	}
	if err := link.EstablishmentErr(); err != nil {
		return nil, &CloneError{Reason: ReasonEstablishmentFailed, Err: establishmentError(err)}
	}
	if link.State() == actors.Closed && !link.WasReady() {
		return nil, &CloneError{Err: ErrClosed}
	}
	return clone, nil
}

// errLeftGroup: Clone of a connection that left its group (CloneError).
var errLeftGroup = errors.New("the connection left its group after a CloneError: it cannot be cloned")

// errAcceptedNotCloneable: Clone of a Connection a Listener accepted over a
// stack that makes a new transport connection per Clone (TCP, TLS, UDP,
// UDP-Lite, Unix): its remote endpoint is the port the peer connected
// from. On QUIC such a Clone is a new stream of the session.
var errAcceptedNotCloneable = fmt.Errorf("a Connection a Listener accepted cannot be cloned but on a multistreaming stack (QUIC): its remote endpoint is the port the peer connected from, where nothing listens: %w", ErrNotAllowed)

// OnCloneError sets the CloneError handler: called when this connection
// could not follow an entangled property change of its group.
func (c *Connection) OnCloneError(fn func(*Connection, error)) {
	c.updateHandlers(func(h *actors.Handlers) {
		h.CloneError = nil
		if fn != nil {
			h.CloneError = func(err error) { fn(c, &CloneError{Err: err}) }
		}
	})
}

// OnConnectionReceived sets the handler of the connections the peer opens
// in this connection's group (RFC 9622 §7.4 ConnectionReceived; Apple
// Network.framework's NWConnectionGroup newConnectionHandler): on a
// multistreaming stack (QUIC), each stream the peer opens on a session of
// the group, a Clone of the peer's for instance, is a new Connection of
// the group, passed to fn as received. It is Established at once (there is
// no Ready event for it), a member of the group (GroupedConnections lists
// it, entangled properties apply to it, CloseGroup closes it), with a new
// instance of the group's framers, and its direction follows the stream:
// a unidirectional stream the peer opened only receives. Its handlers are
// unset: set them in fn.
//
// Set on any member, the handler is the whole group's (the last one set
// wins); nil removes it. By default (no handler) the side that initiated
// the session refuses the peer's streams at once: they are reset (QUIC
// STOP_SENDING and RESET_STREAM), so the peer's Connection ends with a
// ConnectionError (its cause unwraps to stacks.ErrStreamRefused) rather
// than wait for a reader that never comes, as the accepting side aborts
// the peer's streams that arrive after its Listener stopped. On the side
// that accepted the session they go to that Listener's ConnectionReceived
// (Accept, Listener.OnConnectionReceived) when the group has no handler,
// and to the handler instead when it has one. A connection that became
// Established after the handler was removed is aborted; while the group
// is closing (CloseGroup) new streams are refused.
//
// fn runs on a goroutine of the group's, not on a connection's event
// goroutine: one call at a time, in the order the connections were
// received; a call that blocks delays the next ones. group is the
// connection the handler was set on. A panic in fn ends only the received
// Connection (a *ConnectionError wrapping a *PanicError), and is reported
// (WithHandlerPanic).
func (c *Connection) OnConnectionReceived(fn func(group, received *Connection)) {
	var h func(*actors.ConnectionStarted)
	if fn != nil {
		h = func(st *actors.ConnectionStarted) {
			rc := connectionOf(c.sys, st, c.cfg)
			if err := supervision.Contain("ConnectionReceived handler", func() { fn(c, rc) }); err != nil {
				pe := err.(*PanicError)
				pe.ConnectionID = rc.ID()
				tell(c.sys, rc.pid, &messages.AbortConnection{Err: pe})
				c.sys.s.ReportPanicOf(pe, st.Link)
			}
		}
	}
	if c.group == nil {
		return // not started: no group yet
	}
	// the group's mailbox: a stream the peer opens after this call finds
	// the handler set
	tell(c.sys, c.group, &actors.SetReceivedHandler{Fn: h})
}

// readFirstClone reports whether props ask the clone to read before it
// sends (activeReadBeforeSend Require or Prefer): on a multistreaming
// stack it then gets a connection of its own, not a stream the peer would
// only see with the clone's first message.
// sessionWide are the Connection Properties a QUIC session applies to all
// its streams: connTimeout is its idle timeout, keepAliveTimeout its PING
// period, both fixed at its handshake, and connCapacityProfile the DSCP
// of its UDP socket, which every stream's packets carry (SetProperty of
// any of them is stacks.ErrNotApplicable on QUIC: a stream has no socket
// of its own).
var sessionWide = [...]Property{ConnTimeout, KeepAliveTimeout, ConnCapacityProfile}

// checkSessionWide is a *PropertyError (stacks.ErrNotApplicable) when the
// properties a Clone asked for (merged) give a property of sessionWide
// another value than the session has (now): a clone that is a stream of
// the session cannot have its own.
func checkSessionWide(now *messages.Properties, merged *TransportProperties) error {
	cur, err := propsFromMessage(now)
	if err != nil {
		return err
	}
	for _, p := range sessionWide {
		was, _ := cur.Get(p)
		if v, _ := merged.Get(p); v != was {
			return &PropertyError{Property: p, Value: v, Err: fmt.Errorf(
				"%w: a Clone over QUIC is a stream of the session, whose %s (%v) is the whole session's", stacks.ErrNotApplicable, p, was)}
		}
	}
	return nil
}

func readFirstClone(props *messages.Properties) bool {
	p := props.GetValues()[string(ActiveReadBeforeSend)].GetPreference()
	return p == int32(Require) || p == int32(Prefer)
}

// cloneOptions remembers the stack options a Clone derived from a
// properties snapshot.
type cloneOptions struct {
	props *messages.Properties
	opts  stacks.Options
}

// cloneStackOptions is stackOptionsFromMessage(props, base) for a Clone,
// remembered for the last snapshot: deriving them converts and validates
// every property (most of a Clone's own CPU time), and a connection's
// properties are replaced on a change (SetProperty), never changed in
// place, so the same snapshot gives the same options. base is always the
// connection's own (c.cfg is immutable).
func (c *Connection) cloneStackOptions(props *messages.Properties, base stacks.Options) stacks.Options {
	rare := c.rareFields()
	if co := rare.cloneOpt.Load(); co != nil && co.props == props {
		return co.opts
	}
	opts := stackOptionsFromMessage(props, base)
	rare.cloneOpt.Store(&cloneOptions{props: props, opts: opts})
	return opts
}
