package taps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
	"google.golang.org/protobuf/proto"
)

// A Preconnection is the template a Connection or Listener is made from
// (RFC 9622 §6): endpoints, transport properties, security parameters and
// framers. Initiate, InitiateWithSend and Listen copy it (call-by-value):
// changing it afterwards never affects what was made from it, and it can be
// used again. Its methods are safe for concurrent use.
type Preconnection struct {
	mu sync.Mutex
	preconnState
}

// preconnState is everything a Preconnection holds besides its lock, so
// that copying one (clone) cannot miss a field.
type preconnState struct {
	sys          *System
	locals       []*LocalEndpoint
	remotes      []*RemoteEndpoint
	tp           *TransportProperties
	sec          *SecurityParameters
	unfulfilled  func(error)
	framers      []framers.Framer
	attemptDelay time.Duration
	estTimeout   time.Duration
	linger       time.Duration
	recvLimit    int
	sendLimit    int
	backlog      int  // WithAcceptBacklog (0: the default)
	backlogSet   bool // WithAcceptBacklog was given: Listen checks backlog
	resolver     stacks.Resolver
	handlers     connHandlers
	stackList    []stacks.Stack // tests: the stacks to select from instead of stacks.All()
	reestablish  *supervision.Backoff
	protocols    []string // WithProtocols
	encoded      map[role]*encodedProps
}

// encodedProps is the shared encoding of a Preconnection's properties.
type encodedProps struct {
	props    *messages.Properties
	defaults *messages.MessageProps
	opts     stacks.Options // stackOptions of the properties (a copy per config)
	// last is the last config made for this role without TLS: an
	// Initiate or Listen with the same endpoints and framers shares it
	// (configs are immutable once made).
	last *messages.ConnectionConfig
	// chosen is the last stack selection made from these properties,
	// and what it was made from: the properties never change, so an
	// Initiate with the same security, framing, stack list and protocol
	// names selects the same stacks (selection is pure).
	chosen *stackChoice
}

// stackChoice is one result of selectStacks and its other inputs.
type stackChoice struct {
	secure int8
	quic   bool // the security parameters allow QUIC (TLS 1.3)
	framed bool
	from   []stacks.Stack // compared by identity
	names  []string
	sel    []stacks.Stack // shared by every config made from it: read-only
	err    error
}

// choose returns selectStacks' result, from the last choice when its
// inputs are the same. The caller holds the Preconnection's lock.
func (e *encodedProps) choose(tp *TransportProperties, r role, sec *SecurityParameters, framed bool, from []stacks.Stack, names []string) ([]stacks.Stack, error) {
	secure, quic := securePref(sec), sec.allowsQUIC()
	if c := e.chosen; c != nil && c.secure == secure && c.quic == quic && c.framed == framed &&
		sameStackList(c.from, from) && slices.Equal(c.names, names) {
		return c.sel, c.err
	}
	sel, err := selectStacks(tp, r, sec, framed, from)
	e.chosen = &stackChoice{secure: secure, quic: quic, framed: framed, from: from,
		names: slices.Clone(names), sel: sel, err: err}
	return sel, err
}

// sameStackList reports whether a and b are the same slice (not merely
// equal: stacks need not be comparable).
func sameStackList(a, b []stacks.Stack) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// connHandlers are handlers a Preconnection gives each of its connections.
type connHandlers struct {
	ready              func(*Connection)
	establishmentError func(*Connection, error)
	closed             func(*Connection)
	connectionError    func(*Connection, error)
	firstSent          func(*Connection, error) // InitiateWithSend's first message
	reestablishing     func(*Connection, error, int)
	reestablished      func(*Connection, int)
}

// PreconnectionOption configures NewPreconnection. A nil PreconnectionOption
// is ignored.
type PreconnectionOption func(*Preconnection)

// WithRemoteEndpoint adds a remote endpoint; several are alternatives that
// are raced, in the order given among those whose addresses are known
// when the race starts: a host name not resolved within the 50 ms
// resolution delay after another endpoint's addresses are known (an IP
// address at once) joins the race when its answer comes. Repeatable. A nil endpoint is an invalid one: using the
// Preconnection fails with an *EndpointError (as Connection.AddRemote
// does).
func WithRemoteEndpoint(r ...*RemoteEndpoint) PreconnectionOption {
	return func(p *Preconnection) { p.remotes = appendRemotes(p.remotes, r) }
}

// appendRemotes appends rs to to, a nil endpoint as an invalid one.
func appendRemotes(to, rs []*RemoteEndpoint) []*RemoteEndpoint {
	return appendEndpoints(to, rs, func() *RemoteEndpoint {
		return &RemoteEndpoint{e: endpoint{err: errors.New("nil RemoteEndpoint")}}
	})
}

// appendLocals appends ls to to, a nil endpoint as an invalid one.
func appendLocals(to, ls []*LocalEndpoint) []*LocalEndpoint {
	return appendEndpoints(to, ls, func() *LocalEndpoint {
		return &LocalEndpoint{e: endpoint{err: errors.New("nil LocalEndpoint")}}
	})
}

func appendEndpoints[E any](to, eps []*E, invalid func() *E) []*E {
	for _, e := range eps {
		if e == nil {
			e = invalid()
		}
		to = append(to, e)
	}
	return to
}

// WithLocalEndpoint adds a local endpoint (needed by Listen). Repeatable:
// Initiate races over every local endpoint (each a branch of the candidate
// tree, paired with the remote addresses of its family) and Listen
// listens on every one, all feeding the one Listener. For Initiate, a
// local endpoint whose host name does not resolve is pruned while another
// is left (RFC 9623 §4.1), and the EstablishmentError, should every
// attempt fail, names it; when none is left the Initiate fails before any
// packet with an EstablishmentError of ReasonResolutionFailed wrapping
// each failure ("local endpoint: ", around its *stacks.ResolveError).
// Listen fails on any.
func WithLocalEndpoint(l ...*LocalEndpoint) PreconnectionOption {
	return func(p *Preconnection) { p.locals = appendLocals(p.locals, l) }
}

// WithTransportProperties sets the transport properties (default:
// NewTransportProperties(), the RFC 9622 defaults). They are copied.
func WithTransportProperties(tp *TransportProperties) PreconnectionOption {
	return func(p *Preconnection) { p.tp = tp.Clone() }
}

// WithSecurityParameters sets the security parameters (default: none, as
// the seed's security_needed=False). They are copied: later changes to s
// do not reach the Preconnection.
func WithSecurityParameters(s *SecurityParameters) PreconnectionOption {
	return func(p *Preconnection) { p.sec = s.clone() }
}

// WithSecurityNeeded is the seed's security_needed flag: true is
// NewSecurityParameters(), false no security.
func WithSecurityNeeded(needed bool) PreconnectionOption {
	return func(p *Preconnection) {
		if needed {
			p.sec = NewSecurityParameters()
		} else {
			p.sec = nil
		}
	}
}

// WithUnfulfilledHandler sets the seed's unfulfilled_handler: called when no
// protocol stack satisfies the properties, before Initiate or Listen
// returns the same error.
func WithUnfulfilledHandler(fn func(err error)) PreconnectionOption {
	return func(p *Preconnection) { p.unfulfilled = fn }
}

// WithSystem makes connections in sys instead of the default System.
func WithSystem(sys *System) PreconnectionOption { return func(p *Preconnection) { p.sys = sys } }

// WithAttemptDelay sets the racing stagger, the Connection Attempt Delay of
// RFC 8305 (default 250 ms, also for 0; other values are clamped to
// [10 ms, 2 s]).
func WithAttemptDelay(d time.Duration) PreconnectionOption {
	return func(p *Preconnection) { p.attemptDelay = d }
}

// WithEstablishmentTimeout bounds the whole establishment (the seed's
// initiate timeout): resolution, racing, and the framers' handshakes up to
// Ready. The default 0 (as any d <= 0) means only ctx bounds it. On a
// Listener it bounds the setup of each accepted connection instead: its
// TLS or QUIC handshake, and its framers' handshakes from accept up to
// ConnectionReceived (each of the two by d); there the default (d <= 0)
// is 10 s ([DefaultAcceptSetupTimeout]), and a connection not Ready by
// then is closed or aborted without being delivered (see [Listener]).
func WithEstablishmentTimeout(d time.Duration) PreconnectionOption {
	return func(p *Preconnection) { p.estTimeout = d }
}

// WithLingerTimeout bounds how long a graceful Close waits for the peer's
// end of stream after sending its own (default 5 s, also for d <= 0), when
// it waits: a quiescent TCP connection closes at once (see
// Connection.Close).
func WithLingerTimeout(d time.Duration) PreconnectionOption {
	return func(p *Preconnection) { p.linger = d }
}

// WithReceiveBuffer bounds the received bytes a connection holds for the
// application (default 4 MiB, also for n <= 0): beyond it gotaps stops
// reading from the socket until Receive consumes. Each message queued
// counts its bytes, 256 for its queue entry, and its framer's
// framers.Instance.DeliveryOverhead (its metadata, the bytes skipped
// before it); a single message larger than the bound is still received.
func WithReceiveBuffer(n int) PreconnectionOption { return func(p *Preconnection) { p.recvLimit = n } }

// WithSendBuffer bounds the bytes queued for sending (default 4 MiB, also
// for n <= 0): beyond it Send waits (at most the message's msgLifetime:
// Expired) and SendAsync reports ErrSendQueueFull. A single Message larger than the bound is taken when
// nothing is queued.
func WithSendBuffer(n int) PreconnectionOption { return func(p *Preconnection) { p.sendLimit = n } }

// WithAcceptBacklog bounds the connections a Listener holds for the
// application: those it accepted and the application has not taken yet
// (still being set up, queued for Accept, or waiting for the
// ConnectionReceived handler, not counting the call running). At the
// bound the Listener stops accepting until the application takes one
// (Accept returns one, or a handler call returns); new peers wait
// meanwhile in the kernel's listen backlog (TCP, Unix; TLS after the 128
// peers whose handshakes the TLS listener completes ahead of the bound,
// each holding a socket: see [Listener]), in the UDP listener's accept
// queue (stacks.UDPAcceptQueue peers whose datagrams total at most
// stacks.UDPAcceptQueueBytes, beyond which their datagrams are dropped),
// or in quic-go's (which refuses handshakes beyond its own bound). A UDP
// peer's datagrams not yet read are bounded by stacks.UDPPeerQueue and
// stacks.UDPPeerQueueBytes too, beside the connection's receive buffer.
//
// The default, 128, is the classic listen backlog (Linux's somaxconn
// before 5.4, Go's syscall.SOMAXCONN): a burst of that size is absorbed
// without waiting on the application, while a slow application cannot
// make the Listener hold file descriptors and memory without bound. n
// must be at least 1, else Listen fails (an [EstablishmentError], before
// anything is bound); Initiate ignores it.
//
// The bound covers all of the Listener's sockets (addresses, transport
// protocols) and is fixed at Listen; a QUIC peer's new streams on a
// session already accepted are received regardless (and count). With
// several sockets, a socket's peer accepted just as the others filled the
// backlog waits, not set up, for the next place. Accept may be
// called from any number of goroutines, each connection it returns
// freeing a place at once; the handler's calls run one at a time, so a
// handler that serves a connection at length should do so in a goroutine
// of its own.
func WithAcceptBacklog(n int) PreconnectionOption {
	return func(p *Preconnection) { p.backlog, p.backlogSet = n, true }
}

// WithResolver replaces host name resolution, the A and AAAA lookups
// (default: the WithDNSResolver resolver's LookupNetIP, else
// net.DefaultResolver's). lookup is called with network "ip6" and "ip4"
// for each host name, both at once (RFC 8305 §3), and from several
// Initiates at once: it must be safe for concurrent use, and return once
// its ctx ends. Initiate starts connecting on the first answers (a
// positive AAAA answer at once, a positive A answer after the AAAA answer
// or the 50 ms resolution delay) and a later answer joins the race; a
// lookup still running when the race ends is cancelled, and waited for.
// It does not replace the SRV lookups of a RemoteEndpoint's service
// (WithService), made with WithDNSResolver's resolver; lookup resolves
// their targets. A panic in lookup is contained: that lookup fails with
// the *PanicError (Where "WithResolver lookup"), which the
// establishment's error wraps when no address was found, as a failed
// lookup's error; it is not a handler panic (WithHandlerPanic).
func WithResolver(lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)) PreconnectionOption {
	if lookup != nil {
		user := lookup
		lookup = func(ctx context.Context, network, host string) (addrs []netip.Addr, err error) {
			// it runs on a goroutine of the resolver's: a panic there
			// would end the process
			if perr := supervision.Contain("WithResolver lookup", func() { addrs, err = user(ctx, network, host) }); perr != nil {
				return nil, perr
			}
			return addrs, err
		}
	}
	return func(p *Preconnection) { p.resolver.LookupNetIP = lookup }
}

// WithDNSResolver sets the DNS resolver of the Preconnection's
// connections and listeners (default: net.DefaultResolver): it looks up
// the SRV records of a RemoteEndpoint with a host name and a service
// ([RemoteEndpoint.WithService]) and, unless WithResolver replaces them,
// the A and AAAA records of every host name (remote and local endpoints,
// SRV targets, STUN servers). A resolver with PreferGo and a Dial
// function sends every query to the server Dial chooses (a private or
// test DNS server). It is called from several goroutines at once
// (*net.Resolver is safe for that), and its lookups are cancelled when
// what they serve ends. A nil r restores the default.
func WithDNSResolver(r *net.Resolver) PreconnectionOption {
	return func(p *Preconnection) { p.resolver.DNS = r }
}

// ReestablishPolicy is the opt-in supervision policy for long-lived
// connections: see WithReestablishment. Zero fields take their defaults
// (100 ms initial wait, doubling, at most 10 s, 10 attempts in a row, a
// row ended by a transport up StableAfter = Max).
type ReestablishPolicy = supervision.Backoff

// WithReestablishment makes the connections this Preconnection initiates
// long-lived: when a connection's transport fails or the peer goes away,
// it is established again through the racer (resolution and every
// candidate, as at Initiate) after an exponential backoff, instead of
// ending. It keeps its identity and its place in its group; each loss and
// each re-establishment is an event (OnReestablishing, OnReestablished) and
// a trace record. Messages not yet sent when the transport was lost fail
// with a SendError: the application decides whether to send them again.
// Messages sent while the connection re-establishes (Establishing, until
// OnReestablished) wait for the new transport, as sends before Ready do:
// their msgLifetime runs meanwhile (Expired), and they fail with a
// SendError when the connection ends instead (Close, Abort, the attempts
// spent). When MaxAttempts consecutive attempts fail, the connection ends with a
// ConnectionError. A successful attempt ends the row only once its
// transport has stayed up StableAfter (default: Max): a peer that accepts
// and drops the connection at once makes the waits grow and, after
// MaxAttempts, ends the connection (with the peer's reset a
// ConnectionError; after its clean end of stream the connection is
// half-closed, as without the policy), instead of cycling for ever. Close
// and Abort are never undone.
//
// The members of a group that share a multistreaming session (QUIC: a
// connection and its Clones) are re-established together: the first due
// dials a new session and the others open their streams on it, so the
// peer sees one new session and one group again, not a session per
// member. A member whose stream alone is lost (the peer reset it) while
// the others' session lives on opens a new stream on that session, as a
// Clone does (the peer receives it as a Clone of the group), and dials
// a session only when none is left. The attempts to dial the new session
// are the group's: when the member that dials has spent MaxAttempts, the
// members waiting for its session end with it (a ConnectionError with
// its last attempt's failure), rather than each dialing MaxAttempts more
// in turn, and so do the members that had lost their transports by then
// but whose backoff was due only later (unless, when it is, a member is
// Established, on whose session they open their streams, or another
// member's new row dials, which they wait for, or has its session); a member
// whose transport was still up as the group gave up, and fails only
// later, starts a row of its own.
//
// On Linux the System's route monitor (a netlink socket, one goroutine per
// System while some connection needs it) also guards each such
// connection's path: when its local address is removed or that address's
// link goes down, or the interface its socket is bound to has no route to
// the peer left, the transport is replaced at once (Reestablishing with
// ErrPathLost), so an idle connection does not wait for traffic or
// keep-alive to find its path dead. The attempts then follow the policy as
// for any loss: an outage of every path that outlasts them ends the
// connection (ConnectionError), where an idle TCP connection left alone
// might have lived through it. A failure the host cannot see (a
// remote link) is still found by traffic: connTimeout (TCP_USER_TIMEOUT)
// bounds how long that takes.
func WithReestablishment(p ReestablishPolicy) PreconnectionOption {
	return func(pre *Preconnection) { pol := p.Normalized(); pre.reestablish = &pol }
}

// WithProtocols restricts the protocol stacks that may be selected to the
// named ones ("tcp", "tls", "quic", "udp", "udplite", "unix"); the transport
// properties still rank and filter them. An unknown name makes Initiate and
// Listen fail before any packet is sent.
func WithProtocols(names ...string) PreconnectionOption {
	return func(p *Preconnection) { p.protocols = append([]string(nil), names...) }
}

// NewPreconnection returns a Preconnection.
func NewPreconnection(opts ...PreconnectionOption) *Preconnection {
	p := &Preconnection{}
	p.encoded = map[role]*encodedProps{}
	for _, o := range opts {
		if o != nil { // a nil option is ignored
			o(p)
		}
	}
	if p.tp == nil {
		p.tp = NewTransportProperties()
	}
	if p.sys == nil {
		p.sys = DefaultSystem()
	}
	return p
}

// clone returns an independent copy of p (slices copied; endpoints,
// properties and framers are shared values, as snapshot copies them again).
func (p *Preconnection) clone() *Preconnection {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := &Preconnection{preconnState: p.preconnState}
	q.encoded = map[role]*encodedProps{}
	q.locals = append([]*LocalEndpoint(nil), p.locals...)
	q.remotes = append([]*RemoteEndpoint(nil), p.remotes...)
	q.framers = append([]framers.Framer(nil), p.framers...)
	return q
}

// AddFramer adds a message framer (seed: add_framer). Framers added later
// run first on send and last on receive. It affects connections and
// listeners made afterwards only. A nil framer makes Initiate,
// InitiateAsync, InitiateWithSend, Listen and Rendezvous fail before any
// packet is sent, with an *EstablishmentError (ReasonInvalidConfiguration)
// unwrapping to os.ErrInvalid.
func (p *Preconnection) AddFramer(f framers.Framer) {
	p.mu.Lock()
	p.framers = append(p.framers, f)
	p.mu.Unlock()
}

// AddRemote adds remote endpoints (RFC 9622 §7.3).
func (p *Preconnection) AddRemote(r ...*RemoteEndpoint) {
	p.mu.Lock()
	p.remotes = appendRemotes(p.remotes, r)
	p.mu.Unlock()
}

// OnReady sets the Ready handler of every connection this Preconnection
// initiates (Initiate, InitiateWithSend, InitiateAsync). A Rendezvous's
// Connection has no Ready event (its RendezvousDone is Rendezvous
// returning it), so the handler is not called for it. A handler set on the
// Connection replaces it for that connection; a Clone starts with no
// handlers. Handlers run one at a time per connection, in event order.
func (p *Preconnection) OnReady(fn func(*Connection)) {
	p.mu.Lock()
	p.handlers.ready = fn
	p.mu.Unlock()
}

// OnEstablishmentError sets the EstablishmentError handler of every
// connection this Preconnection initiates: for Initiate and
// InitiateWithSend, which also return the error, and for InitiateAsync,
// whose failed establishment it reports. A failed Rendezvous only returns
// its *EstablishmentError: it has no Connection to hand the handler.
func (p *Preconnection) OnEstablishmentError(fn func(*Connection, error)) {
	p.mu.Lock()
	p.handlers.establishmentError = fn
	p.mu.Unlock()
}

// OnClosed sets the Closed handler of every connection made from this
// Preconnection (including those a Listener receives; a Clone starts with
// no handlers: set them on it).
func (p *Preconnection) OnClosed(fn func(*Connection)) {
	p.mu.Lock()
	p.handlers.closed = fn
	p.mu.Unlock()
}

// OnFirstMessageSent sets the handler of the first Message's event of
// every InitiateWithSend from this Preconnection (RFC 9622 §9.2.5; the
// seed's sent_handler of initiate_with_send): err is nil for Sent, a
// *SendError otherwise (unwrapping to ErrExpired for Expired), as a
// SendAsync handler gets it. It is called once, in order with the
// connection's other events, for the connection that became Ready (a
// message that rode 0-RTT is Sent after Ready: its attempt won once its
// handshake completed; one sent on an attempt that lost is not reported).
// When establishment fails, the EstablishmentError is the only event: the
// handler is not called. A first message found invalid
// before anything is sent (a property value, a framer's CheckMessage) fails
// InitiateWithSend itself; one the selected stack cannot send (a message
// property it cannot honour) is a SendError here, and the connection stays
// Ready.
func (p *Preconnection) OnFirstMessageSent(fn func(c *Connection, err error)) {
	p.mu.Lock()
	p.handlers.firstSent = fn
	p.mu.Unlock()
}

// OnConnectionError sets the ConnectionError handler of every connection
// made from this Preconnection (including those a Listener receives; a
// Clone starts with no handlers: set them on it).
func (p *Preconnection) OnConnectionError(fn func(*Connection, error)) {
	p.mu.Lock()
	p.handlers.connectionError = fn
	p.mu.Unlock()
}

// OnReestablishing sets the Reestablishing handler (see
// Connection.OnReestablishing) of every connection this Preconnection
// initiates under WithReestablishment, in place from its first event on:
// a transport lost right after Initiate returns is reported too, which a
// handler set on the Connection afterwards may miss. A handler set on the
// Connection replaces it for that connection.
func (p *Preconnection) OnReestablishing(fn func(c *Connection, err error, attempt int)) {
	p.mu.Lock()
	p.handlers.reestablishing = fn
	p.mu.Unlock()
}

// OnReestablished sets the Reestablished handler (see
// Connection.OnReestablished) of every connection this Preconnection
// initiates under WithReestablishment, in place from its first event on.
// A handler set on the Connection replaces it for that connection.
func (p *Preconnection) OnReestablished(fn func(c *Connection, attempts int)) {
	p.mu.Lock()
	p.handlers.reestablished = fn
	p.mu.Unlock()
}

// checkFramers refuses a nil framer (given to what, by its index), which
// would panic in the first framer call, after the transport was set up:
// an Initiate failed then with the framer's panic, and a Listener aborted
// every connection it accepted, without a word.
func checkFramers(what string, fs []framers.Framer) error {
	for i, f := range fs {
		if f == nil {
			return fmt.Errorf("%s: framer %d of %d is nil: %w", what, i, len(fs), os.ErrInvalid)
		}
	}
	return nil
}

// snapshot validates the Preconnection and copies it into an immutable
// config for the role r (roleInitiate, roleListen or roleRendezvous: its
// property defaults, RFC 9622 §6.2). Every error here happens before any
// packet is sent.
func (p *Preconnection) snapshot(r role) (*messages.ConnectionConfig, connHandlers, error) {
	listen := r == roleListen
	initiating := r == roleInitiate
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg := &messages.ConnectionConfig{
		AttemptDelay: p.attemptDelay, EstablishmentTimeout: p.estTimeout, LingerTimeout: p.linger,
		RecvBufferLimit: p.recvLimit, SendBufferLimit: p.sendLimit, Resolver: p.resolver, AcceptBacklog: p.backlog,
		Framers:     append([]framers.Framer(nil), p.framers...),
		Reestablish: p.reestablish,
	}
	if err := checkFramers("AddFramer", cfg.Framers); err != nil {
		return nil, p.handlers, &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: err}
	}
	if listen && p.backlogSet && p.backlog < 1 {
		return nil, p.handlers, &EstablishmentError{Reason: ReasonInvalidConfiguration,
			Err: fmt.Errorf("WithAcceptBacklog(%d): the backlog must be at least 1", p.backlog)}
	}
	if listen && len(p.locals) == 0 {
		return nil, p.handlers, &EndpointError{Endpoint: "", Err: errors.New("Listen needs a local endpoint")}
	}
	if !listen && len(p.remotes) == 0 {
		return nil, p.handlers, &EndpointError{Endpoint: "", Err: errors.New("Initiate needs a remote endpoint")}
	}
	for _, l := range p.locals {
		m, err := l.e.toMessage(false, false)
		if err != nil {
			return nil, p.handlers, err
		}
		cfg.Locals = append(cfg.Locals, m)
	}
	for _, r := range p.remotes {
		r.e.mu.Lock()
		isPath := r.e.path != ""
		r.e.mu.Unlock()
		// a Listener's remote endpoints restrict who may connect: a port
		// there is optional (without one, any port of the address)
		var m *messages.Endpoint
		var err error
		if !isPath && initiating {
			// a service may have no IANA port: SRV gives it (Initiate
			// and Resolve only; Rendezvous takes the IANA port)
			m, err = r.e.toInitiateMessage()
		} else {
			m, err = r.e.toMessage(!isPath && !listen, !isPath)
		}
		if err != nil {
			return nil, p.handlers, err
		}
		cfg.Remotes = append(cfg.Remotes, m)
	}
	mcast, err := multicastUse(cfg, listen) // multicast.go
	if err != nil {
		return nil, p.handlers, err
	}
	// the properties never change after NewPreconnection (they are copied
	// in), so they are validated and encoded once per role and the
	// encoding is shared: connections treat it as immutable (SetProperty
	// copies on write)
	if p.encoded[r] == nil {
		if err := p.tp.validate(r); err != nil {
			return nil, p.handlers, err
		}
		defaults, err := messageDefaults(p.tp)
		if err != nil {
			return nil, p.handlers, err
		}
		p.encoded[r] = &encodedProps{props: propsToMessageRole(p.tp, r), defaults: defaults, opts: stackOptions(p.tp, r)}
	}
	enc := p.encoded[r]
	if last := enc.last; last != nil && len(last.Framers) == len(p.framers) &&
		sameEndpoints(last.Locals, cfg.Locals) && sameEndpoints(last.Remotes, cfg.Remotes) {
		return last, p.handlers, nil // nothing changed since: share it
	}
	cfg.Properties = enc.props
	cfg.MessageDefaults = enc.defaults
	isolate, _ := p.tp.Get(IsolateSession)
	tlsCfg, err := tlsConfig(p.sec, listen, isolate == true, p.sys)
	if err != nil {
		return nil, p.handlers, &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: err}
	}
	sec := p.sec
	if tlsCfg == nil && sec != nil && sec.Mode() == SecurityOpportunistic {
		sec = nil // nothing to be secure with: plain stacks only
	}
	stackList := p.stackList
	if stackList == nil {
		switch unixPaths(cfg) {
		case unixOnly:
			stackList = unixStack
		case unixMixed:
			// a socket path among addresses: each remote is tried with the
			// stacks that can reach it (planCandidates pairs them)
			stackList = allWithUnix
		}
	}
	if mcast {
		stackList = multicastStacks(stackList) // UDP and UDP-Lite only
	}
	names := p.protocols
	if len(names) > 0 {
		restricted, err := restrictStacks(stackList, names)
		if err != nil {
			return nil, p.handlers, &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: err}
		}
		stackList = restricted
	}
	// RemoteEndpoint.WithProtocol: each such endpoint is attempted over its
	// stack only (the candidate planner pairs them); when every remote
	// names one, no other stack can be used at all
	var epNames []string
	for _, r := range cfg.Remotes {
		if r.Protocol != "" {
			epNames = append(epNames, r.Protocol)
		}
	}
	if len(epNames) > 0 {
		restricted, err := restrictStacks(stackList, epNames)
		if err != nil {
			return nil, p.handlers, &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: err}
		}
		if len(epNames) == len(cfg.Remotes) {
			if len(restricted) == 0 { // (an empty list would mean every stack)
				return nil, p.handlers, fmt.Errorf("%w: the remote endpoints' protocols (%v) are not among the stacks allowed", ErrUnfulfilled, epNames)
			}
			stackList = restricted
		}
		names = append(slices.Clone(names), epNames...)
	}
	if mcast && len(stackList) == 0 { // (an empty list would mean every stack)
		return nil, p.handlers, multicastSelectionError(fmt.Errorf("%w: no stack named (%v) carries multicast", ErrUnfulfilled, names))
	}
	sel, err := p.encoded[r].choose(p.tp, r, sec, len(p.framers) > 0, stackList, names)
	if err != nil {
		if mcast {
			err = multicastSelectionError(err)
		}
		return nil, p.handlers, err
	}
	if err := checkSelection(cfg, sel); err != nil { // path and multipath properties (stackopts.go)
		return nil, p.handlers, err
	}
	cfg.Stacks = sel
	// opportunistic: plain TCP to a TLS server must not win the race
	// because its TLS handshake is slower than the attempt delay
	cfg.SecureFallback = sec != nil && sec.Mode() == SecurityOpportunistic
	cfg.StackOptions = p.encoded[r].opts
	cfg.DeriveStackOptions = stackOptionsFromMessage // SetProperty, re-establishment, Clone
	cfg.StackOptions.TLS = tlsCfg
	cfg.StackOptions.TLSAllowTruncation = p.sec.truncationAllowed()
	if len(p.remotes) > 0 && cfg.Remotes[0].HostName != "" {
		cfg.StackOptions.ServerName = cfg.Remotes[0].HostName
	}
	if mcast {
		if err := multicastConfig(cfg, listen); err != nil {
			return nil, p.handlers, err
		}
	}
	// only the framers and the endpoints can change afterwards (AddFramer,
	// AddRemote, an endpoint's own setters): the properties and the
	// security parameters are copies taken by NewPreconnection, and the
	// TLS configuration is never changed once made (the stacks clone it)
	enc.last = cfg
	return cfg, p.handlers, nil
}

// sameEndpoints reports whether a and b hold equal endpoints, in order.
func sameEndpoints(a, b []*messages.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y *messages.Endpoint) bool { return proto.Equal(x, y) })
}

// restrictStacks keeps the stacks named in names, in preference order.
func restrictStacks(from []stacks.Stack, names []string) ([]stacks.Stack, error) {
	if from == nil {
		from = append(stacks.All(), stacks.Unix())
	}
	want := map[string]bool{}
	for _, n := range names {
		if _, err := stacks.ByName(n); err != nil && n != "unix" {
			return nil, fmt.Errorf("protocol %q: %w", n, err)
		}
		want[n] = true
	}
	var out []stacks.Stack
	for _, st := range from {
		if want[st.Name()] {
			out = append(out, st)
		}
	}
	return out, nil
}

// The stack lists of Unix socket paths, made once (the selection is cached
// per list: see choose).
var (
	unixStack   = []stacks.Stack{stacks.Unix()}
	allWithUnix = append(stacks.All(), stacks.Unix())
)

// unixUse is how a configuration's endpoints use Unix socket paths.
type unixUse int

const (
	unixNone  unixUse = iota
	unixOnly          // every remote is a socket path (or, to Listen, a local one is)
	unixMixed         // some remotes are socket paths, others addresses or names
)

// unixPaths tells how cfg's endpoints use Unix socket paths.
func unixPaths(cfg *messages.ConnectionConfig) unixUse {
	paths := 0
	for _, r := range cfg.Remotes {
		if r.Path != "" {
			paths++
		}
	}
	switch {
	case paths > 0 && paths < len(cfg.Remotes):
		return unixMixed
	case paths > 0:
		return unixOnly
	}
	for _, l := range cfg.Locals {
		if l.Path != "" {
			return unixOnly
		}
	}
	return unixNone
}

// selectStacks runs the pure selection over every stack gotaps has. With a
// framer, every stack preserves message boundaries (RFC 9622 §9.1.2), so
// that property no longer tells stacks apart; a Rendezvous ignores
// activeReadBeforeSend. Security parameters that do
// not allow TLS 1.3 rule QUIC out.
func selectStacks(tp *TransportProperties, r role, sec *SecurityParameters, framed bool, all []stacks.Stack) ([]stacks.Stack, error) {
	prefs := map[string]int8{}
	for _, prop := range tp.Properties() {
		if prop.Kind() != KindSelection {
			continue
		}
		if v, ok := tp.effective(descOf(prop), r); ok {
			if pref, ok := v.(Preference); ok {
				prefs[string(prop)] = int8(pref)
			}
		}
	}
	if framed {
		delete(prefs, string(PreserveMsgBoundaries))
	}
	if r == roleRendezvous {
		// both sides of a Rendezvous are active: which one reads or
		// writes first selects nothing (RFC 9622 §6.2.18 has it ignored)
		delete(prefs, string(ActiveReadBeforeSend))
	}
	multipathPrefs(prefs, tp, r)
	prefs["secure"] = securePref(sec)
	if all == nil {
		all = stacks.All()
	}
	if sec.allowsQUIC() {
		return stacks.Select(all, prefs)
	}
	// TLS 1.3 is not allowed: no QUIC (RFC 9622 §6.3: only stacks that
	// meet the security parameters are selected); when nothing else is
	// left, the error says that this is why
	sel, err := stacks.Select(withoutTLS13Only(all), prefs)
	if err != nil {
		if _, withQUIC := stacks.Select(all, prefs); withQUIC == nil {
			err = quicRuledOut(sec, err)
		}
	}
	return sel, err
}

// securePref is the preference for the "secure" pseudo-property that sec
// gives.
func securePref(sec *SecurityParameters) int8 {
	switch {
	case sec.requiresSecurity():
		return stacks.Require
	case sec != nil && sec.Mode() == SecurityOpportunistic:
		return stacks.Prefer
	}
	return stacks.Prohibit // no security parameters, or disabled: a plain stack
}

// Initiate establishes a Connection (active open) and returns it when it is
// Ready. ctx bounds the establishment, not the connection: once Ready,
// cancelling ctx has no effect. On failure it returns an
// *EstablishmentError listing every attempt (also when ctx ended the race:
// then with ReasonTimeout, unwrapping to ctx's error); invalid endpoints or
// properties, or properties no stack satisfies, fail before any packet is
// sent (and call the unfulfilled handler for the latter). To remote
// endpoints that are multicast groups (RemoteEndpoint.WithMulticastGroupIP)
// it gives a send-only Connection (multicast.go).
func (p *Preconnection) Initiate(ctx context.Context) (*Connection, error) {
	return p.initiate(ctx, nil)
}

// InitiateWithSend initiates a Connection and sends data as its first
// Message (RFC 9622 §9.2.5). A message marked SafelyReplayable may go as
// 0-RTT data where a stack supports it (QUIC, with a session ticket
// cached) unless zeroRttMsg is Avoided or Prohibited; otherwise it is
// sent right after establishment. A 0-RTT message
// leaves at once, before anything has come back from the server, but its
// attempt wins the race only once its handshake completes: the race goes
// on meanwhile, an attempt whose handshake fails (the server gone) is a
// failed attempt like any other, and the message is sent again on the
// attempt that wins (a safely replayable message may reach more than one
// server, RFC 9622 §9.1.3.4; the winner's gets it once, and so does a
// server that rejected the 0-RTT data). It returns when the Connection is
// Ready (with 0-RTT, once the handshake has completed); the message's own
// event (Sent, Expired or SendError) goes to the OnFirstMessageSent
// handler. On a UnidirectionalReceive Preconnection it fails at once
// (ErrReceiveOnly).
func (p *Preconnection) InitiateWithSend(ctx context.Context, data []byte, mc *MessageContext) (*Connection, error) {
	return p.initiate(ctx, &firstMessage{data: data, mc: mc})
}

// InitiateAsync starts an active open and returns the Connection at once,
// in Establishing, as RFC 9622 §7.1 has Initiate: its Ready or
// EstablishmentError event follows, to the Preconnection's handlers
// (OnReady, OnEstablishmentError) and to those set on the Connection (a
// handler set after its event still gets it, once, at once). Until then
// Send queues its messages, which go out once the connection is Ready, in
// order, or fail with the EstablishmentError's cause (SendError); Receive
// waits for Ready and then for a message, or returns the
// EstablishmentError; Close and Abort end the establishment (its attempts
// are aborted, and the queued messages fail with SendErrors): Abort with
// the EstablishmentError event (unwrapping to ErrAborted), Close with the
// Closed event (the application ended it: no error; the queued messages'
// SendErrors and a Receive's ReceiveError unwrap to ErrClosed). Done is
// closed once the connection has ended, and Err is then the
// *EstablishmentError when its establishment failed or was aborted, nil
// after such a Close.
//
// ctx bounds the establishment, as for Initiate: when it ends first, the
// race stops and the EstablishmentError has ReasonTimeout. Invalid
// endpoints or properties, or properties no stack satisfies, fail here, at
// once and before any packet is sent, with the error Initiate would give
// (and no Connection). Initiate is InitiateAsync and a wait for the event.
func (p *Preconnection) InitiateAsync(ctx context.Context) (*Connection, error) {
	c, link, err := p.start(ctx, nil)
	if err != nil {
		return nil, err
	}
	abortUnlessReady(ctx, p.sys, c.pid, link)
	return c, nil
}

// abortEstablishing aborts the connection of an Initiate (or Clone) whose
// ctx ended before it was Ready, unless it becomes Ready first: the actor
// drops the abort then (AbortConnection.UnlessReady), as the Ready event
// may already have reached a handler. It reports whether the connection
// was Ready after all; otherwise it returns once the connection has ended.
func abortEstablishing(ctx context.Context, sys *System, pid *actor.PID, link *actors.Link) (ready bool) {
	tell(sys, pid, &messages.AbortConnection{Err: ctx.Err(), UnlessReady: true})
	<-link.Ready() // closed at Ready, or when the establishment ended
	if link.WasReady() {
		return true
	}
	<-link.Done()
	return false
}

// abortUnlessReady aborts the establishing connection pid when ctx ends
// before it is Ready (its EstablishmentError then unwraps to ctx's error:
// ReasonTimeout); once it is Ready, or ended, ctx has no effect. An
// InitiateAsync or CloneAsync with a ctx that can end keeps one goroutine
// until then.
func abortUnlessReady(ctx context.Context, sys *System, pid *actor.PID, link *actors.Link) {
	if ctx.Done() == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() {
		if !link.WasReady() {
			tell(sys, pid, &messages.AbortConnection{Err: ctx.Err(), UnlessReady: true})
		}
	})
	go func() {
		select {
		case <-link.Ready():
		case <-link.Done():
		}
		stop()
	}()
}

type firstMessage struct {
	data []byte
	mc   *MessageContext
}

func (p *Preconnection) initiate(ctx context.Context, first *firstMessage) (*Connection, error) {
	c, link, err := p.start(ctx, first)
	if err != nil {
		return nil, err
	}
	if !link.AwaitReady(ctx) && !abortEstablishing(ctx, p.sys, c.pid, link) {
		// the racer lost with ctx's error and lists its attempts
		if err := link.EstablishmentErr(); err != nil && errors.Is(err, ctx.Err()) {
			ee := establishmentError(err)
			ee.Reason = ReasonTimeout
			return nil, ee
		}
		return nil, &EstablishmentError{Reason: ReasonTimeout, Err: ctx.Err()}
	}
	if err := link.EstablishmentErr(); err != nil {
		return nil, p.shutdownCause(establishmentError(err))
	}
	if link.State() == actors.Closed && !link.WasReady() {
		return nil, p.shutdownCause(&EstablishmentError{Err: ErrClosed})
	}
	return c, nil // Ready, even if the peer has closed again since: its data is kept
}

// start validates the Preconnection and starts the connection's actor
// (with first, InitiateWithSend's message): the establishment runs on
// from there. Its errors are the synchronous ones (EstablishmentError).
func (p *Preconnection) start(ctx context.Context, first *firstMessage) (*Connection, *actors.Link, error) {
	cfg, h, err := p.snapshot(roleInitiate)
	if err != nil {
		return nil, nil, p.fail(err)
	}
	if err := ctx.Err(); err != nil {
		// nothing starts for a ctx that has ended: no packet, no Ready
		return nil, nil, &EstablishmentError{Reason: ReasonTimeout, Err: err}
	}
	link := actors.NewLink(p.sys.s.NewID(), cfg.RecvBufferLimit, cfg.SendBufferLimit, len(cfg.Framers) == 0)
	c := newConnection(p.sys, link, cfg)
	c.installHandlers(h)
	req := &actors.InitiateConnection{Config: cfg, Link: link}
	req.Deadline, _ = ctx.Deadline()
	if first != nil {
		if !c.dir.Sends() {
			return nil, nil, &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: ErrReceiveOnly}
		}
		m, _, err := c.prepareSend(first.data, first.mc, true)
		if err != nil {
			return nil, nil, establishmentError(err)
		}
		if m.Props.SafelyReplayable && !cfg.StackOptions.NoEarlyData {
			// only a safely replayable first message may ride 0-RTT,
			// and not with zeroRttMsg Avoid or Prohibit (a cached
			// session is needed; TLS over TCP has no client
			// early data in crypto/tls, QUIC does); the snapshot may be
			// shared: change a copy
			early := *cfg
			early.StackOptions.EarlyData = true
			cfg, c.cfg, req.Config = &early, &early, &early
		}
		if err := link.AcquireSend(ctx, len(m.Data)); err != nil {
			return nil, nil, establishmentError(err)
		}
		if fn := h.firstSent; fn != nil {
			link.ExpectSend(m.SendID, func(err error) {
				if err != nil && !link.WasReady() {
					return // establishment failed: the EstablishmentError says it all
				}
				err = sendError(err)
				link.SubmitAs("FirstMessageSent handler", func() { fn(c, err) })
			})
		}
		req.FirstMessage = m
	}
	started, err := call[*actors.ConnectionStarted](ctx, p.sys, p.sys.s.Root, req)
	if err != nil {
		// no answer: a connection actor may have started all the same
		// (ctx ended as the answer came); it must not go on for nobody
		if started, _ = startedUnanswered(ctx, p.sys, link, err); started == nil {
			return nil, nil, establishmentError(err)
		}
	}
	c.pid, c.group = started.Conn, started.Group
	return c, link, nil
}

// startedUnanswered handles a request to start link's connection that got
// no answer (err). A connection actor that started all the same is
// returned when err is ctx's end: its caller goes on with it as with an
// answer, and ctx's end then aborts it unless it is Ready by then
// (abortEstablishing, abortUnlessReady), so that a connection whose Ready
// was reported (the connection races on in the meantime) is never
// aborted and dropped. Otherwise the actor is aborted, and waited for,
// and started is nil; existed reports whether an actor had started (else
// none will: Link.Abandon).
func startedUnanswered(ctx context.Context, sys *System, link *actors.Link, err error) (started *actors.ConnectionStarted, existed bool) {
	pid := link.Abandon(err)
	if pid == nil {
		return nil, false
	}
	if ctx.Err() != nil {
		if s := link.Started(); s != nil {
			return s, true
		}
	}
	tell(sys, pid, &messages.AbortConnection{Err: err})
	<-link.Done()
	return nil, true
}

// shutdownCause names the System's Shutdown as the cause of an
// establishment it ended (its connections were closed under the attempt):
// the error then unwraps to ErrSystemShutdown as well, as a Rendezvous's
// does.
func (p *Preconnection) shutdownCause(ee *EstablishmentError) *EstablishmentError {
	if p.sys.s.IsShutdown() && !errors.Is(ee, ErrSystemShutdown) {
		if ee.Err == nil {
			ee.Err = ErrSystemShutdown
		} else {
			ee.Err = fmt.Errorf("%w: %w", ErrSystemShutdown, ee.Err)
		}
	}
	return ee
}

// fail reports a synchronous failure: it calls the unfulfilled handler when
// no stack fits, and returns the EstablishmentError.
func (p *Preconnection) fail(err error) error {
	ee := establishmentError(err)
	if errors.Is(err, ErrUnfulfilled) {
		p.mu.Lock()
		fn := p.unfulfilled
		p.mu.Unlock()
		if fn != nil {
			fn(ee)
		}
	}
	return ee
}

// Listen starts a Listener on every local endpoint (passive open): one
// listening socket per endpoint and transport protocol (per interface when
// the interface Selection Property Requires or Prohibits some), all feeding
// this Listener. It returns when the Listener is bound; LocalEndpoints
// tells where.
//
// With remote endpoints (RFC 9622 §7.2), the Listener accepts connections
// only from them: their host names are resolved when it starts (as
// Initiate resolves them; Listen fails when none resolves), and a peer
// whose address is not among them, or whose port differs from the one a
// remote endpoint gives (without a port, any port matches), is refused and
// never reported as ConnectionReceived: TCP peers are reset at once (TLS
// peers before their handshake), Unix peers closed, QUIC connections
// refused (CONNECTION_REFUSED), and the datagrams of UDP and UDP-Lite
// peers dropped. A Unix peer matches a remote endpoint's path only if it
// bound its socket to that path. Each refusal is counted (Listener.Refused)
// and traced (a "listener" record, event "ConnectionRefused", naming the
// peer); a refused UDP peer is refused again with each later datagram
// (after the ones queued with the first), a refused QUIC client with each
// Initial packet (a ClientHello may take two).
//
// Local endpoints that are multicast groups
// (LocalEndpoint.WithAnySourceMulticastGroupIP,
// WithSingleSourceMulticastGroupIP) are joined: each sender to the group
// is one receive-only Connection, all of them in one Connection Group
// (multicast.go).
func (p *Preconnection) Listen(ctx context.Context) (*Listener, error) {
	return p.listen(ctx, nil)
}

// listen is Listen with adjust (nil: none) applied to a copy of the
// snapshot's configuration (snapshots are shared and never changed).
func (p *Preconnection) listen(ctx context.Context, adjust func(*messages.ConnectionConfig)) (*Listener, error) {
	cfg, h, err := p.snapshot(roleListen)
	if err != nil {
		return nil, p.fail(err)
	}
	if adjust != nil {
		own := *cfg
		adjust(&own)
		cfg = &own
	}
	claim := &actors.StartClaim{}
	st, err := call[*actors.ListenerStarted](ctx, p.sys, p.sys.s.Root, &messages.StartListening{Config: cfg, Claim: claim})
	if err != nil {
		// no answer: a listener may be bound all the same (ctx ended as
		// the answer came); it must not listen for nobody
		if pid := claim.Abandon(err); pid != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = actors.StopAndWait(sctx, p.sys.s, pid)
			cancel()
		}
		return nil, establishmentError(err)
	}
	return newListener(p.sys, st, cfg, h), nil
}
