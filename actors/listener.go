package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

type (
	// accepted is a transport an accept goroutine took; the listener
	// claims it from the Handoff (Stopping abandons those not claimed).
	accepted struct {
		h Handoff // one object with the message
		// the listener's request to its parent, one object with this
		// message (and with the connection's spec); the accept goroutine
		// sets its stack
		adopt adoptConnection
	}
	acceptEnded struct{ err error }
	// connectionReceived: a connection the listener made is Ready; the
	// listener delivers it (a pointer to started, one object with it)
	connectionReceived struct {
		started ConnectionStarted
		// slot: the connection was accepted by the listener's accept
		// goroutine, which counted it held (acceptGate.held) then; the
		// listener counts the others (a peer's stream) when it receives
		// them
		slot bool
	}
)

// ListenerStarted is the reply to StartListening.
type ListenerStarted struct {
	Addrs []net.Addr
	// Ifaces names, for each of Addrs, the interface its socket is bound
	// to (SO_BINDTODEVICE), or "" when it is not bound to one
	Ifaces []string
	Stacks []string
	Queue  *ListenQueue
	PID    *actor.PID
	// Sockets is where the listener listens now. Addrs and Ifaces are
	// where it listened when it started; Sockets changes after that when
	// the listener follows its interfaces (listen_follow.go).
	Sockets *ListenAddrs
}

// listenerActor owns a listening socket and its accept goroutine. Each
// accepted transport becomes a connection (in a new group, through the
// root); once Ready it is delivered as ConnectionReceived, within the
// decrementing new-connection budget of RFC 9622 §7.2.
//
// It runs on controlDispatcher, usually on an accept goroutine: that
// goroutine posts what it accepted and, the listener being idle, runs the
// listener, the root, the new group and the new connection up to its Ready
// before it accepts again. So the accept goroutines are counted in
// accepting only while they are blocked in the gate or in Accept, never
// while they post (Stopped waits for them and may run on one of them),
// and what they accepted travels in a Handoff that Stopping abandons when
// the listener never claimed it.
type listenerActor struct {
	sys       *System
	id        uint64
	cfg       *messages.ConnectionConfig
	lns       []stacks.Listener
	queue     *ListenQueue
	gate      *acceptGate
	accepting ioCount
	stacks    []string       // the stack of each listener
	ifaces    []string       // the interface each listener is bound to, or ""
	socks     []listenSocket // the site of each listener (listen_follow.go)
	follow    listenFollow   // following the interfaces (listen_follow.go)
	view      *ListenAddrs   // lns, ifaces as the application sees them
	limit     int64          // -1: unlimited
	held      []*ConnectionStarted
	stopped   bool
	remotes   *remoteFilter // nil: no remote endpoint, every peer is accepted
	// group: a listener of multicast groups makes every connection in
	// this group, which it holds (multicast.go); nil otherwise
	group *actor.PID
}

// DefaultAcceptBacklog is the default bound on the connections a
// listener holds for the application (acceptGate.backlog): 128, the
// classic listen backlog (Linux's net.core.somaxconn before 5.4, and Go's
// syscall.SOMAXCONN, which net falls back to), enough to absorb a burst without the accept
// goroutine stalling while the application keeps up.
const DefaultAcceptBacklog = 128

func newListenerActor(s *System, id uint64, cfg *messages.ConnectionConfig) actor.Actor {
	gate := newAcceptGate()
	gate.backlog = cfg.AcceptBacklog
	if gate.backlog <= 0 {
		gate.backlog = DefaultAcceptBacklog
	}
	q := newListenQueue()
	q.gate = gate
	return &listenerActor{sys: s, id: id, cfg: cfg, limit: -1, queue: q, gate: gate, view: &ListenAddrs{}}
}

func (l *listenerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
	case *messages.StartListening:
		if c, ok := m.Claim.(*StartClaim); ok {
			if err := c.Claim(ctx.Self()); err != nil {
				ctx.Respond(err) // the caller has gone: bind nothing
				ctx.Stop(ctx.Self())
				return
			}
		}
		err := l.filterRemotes()
		if err == nil {
			err = l.listen(ctx)
		}
		if err != nil {
			ctx.Respond(err)
			ctx.Stop(ctx.Self())
			return
		}
		l.followStart(ctx) // before the answer: the first re-plan closes the gap since the plan
		addrs, ifaces := l.view.Get()
		ctx.Respond(&ListenerStarted{Addrs: addrs, Ifaces: ifaces, Stacks: l.stackNames(), Queue: l.queue, PID: ctx.Self(),
			Sockets: l.view})
	case *accepted:
		t, ok := m.h.Claim()
		l.gate.taken(&m.h)
		if !ok {
			return // abandoned when the listener stopped
		}
		if l.stopped {
			_ = t.Abort()
			return
		}
		a := &m.adopt
		a.cfg, a.t, a.listener, a.listenID = l.cfg, t, ctx.Self(), l.id
		// the root keeps them in the connection's spec: the connection
		// holds the slot the accept goroutine took until it reports Ready
		// (the slot then travels with connectionReceived) or ends
		a.spec.listenGate, a.spec.acceptSlot = l.gate, true
		if l.group != nil {
			ctx.Send(l.group, a) // a sender joins the multicast group (multicast.go)
			return
		}
		ctx.Send(ctx.Parent(), a)
	case *acceptEnded:
		if !l.stopped {
			l.queue.stop(m.err)
			l.stopped = true
			ctx.Stop(ctx.Self())
		}
	case *connectionReceived:
		l.gate.received(m)
		if !m.slot {
			// a peer's stream of a session accepted before (QUIC): held
			// from now on, as the connections accepted are from accept
			l.gate.hold()
		}
		started := &m.started
		if l.stopped {
			ctx.Send(started.Conn, &messages.AbortConnection{Err: errors.New("listener stopped")})
			return
		}
		if len(l.held) == 0 && l.limit != 0 {
			l.deliver(started) // nothing waits before it: no queue
			return
		}
		l.held = append(l.held, started)
		l.deliverHeld()
	case *messages.SetConnectionLimit:
		l.limit = m.Limit
		l.deliverHeld() // and lets the gate know what the limit allows
		ctx.Respond(true)
	case *messages.StopListener, *messages.CloseGroup, *messages.ShutdownSystem:
		l.stop(ctx)
		if ctx.Sender() != nil {
			ctx.Respond(true)
		}
	case *pathCheck, *setListenPlanner:
		l.followReceive(ctx, m)
	case *actor.Stopping:
		l.stopped = true
		l.followStop()
		// first: abandons the accepted transports not claimed yet, and
		// aborts the connections Ready whose connectionReceived is still
		// on its way (queued in this mailbox, which the stop discards)
		ready, setup := l.gate.close()
		for r := range ready {
			ctx.Send(r.started.Conn, &messages.AbortConnection{Err: errListenerStopped})
		}
		for conn := range setup {
			ctx.Send(conn, &messages.AbortConnection{Err: errListenerStopped})
		}
		var quiet, closed []<-chan struct{}
		for _, ln := range l.lns {
			_ = ln.Close()
			if r, ok := ln.(socketReleaser); ok {
				quiet, closed = append(quiet, r.Quiet()), append(closed, r.Closed())
			}
		}
		// the sockets closed earlier, following the interfaces
		for _, r := range l.follow.retired {
			quiet, closed = append(quiet, r.Quiet()), append(closed, r.Closed())
		}
		l.follow.retired = nil
		l.queue.stop(nil)
		l.queue.settle(quiet, closed)
		for _, s := range l.held {
			ctx.Send(s.Conn, &messages.AbortConnection{Err: errors.New("listener stopped")})
		}
		l.held = nil
		if l.group != nil {
			ctx.Send(l.group, &releaseGroup{}) // after every sender it sent there
		}
	case *actor.Stopped:
		l.accepting.Wait() // the accept goroutines left Accept (the listeners are closed)
	}
}

// listen binds one listener per eligible stack and transport protocol
// (RFC 9623 §4.7: accept every eligible protocol) on every listening site
// (planListen: each local endpoint, bound to the interfaces the interface
// Selection Property and the endpoint name), all feeding this one
// Listener: the first of the TCP-based stacks (tcp, tls) and the first of
// the UDP-based ones (quic, udp), in preference order. Every site must bind
// at least one stack.
func (l *listenerActor) listen(ctx actor.Context) error {
	if len(l.cfg.Stacks) == 0 {
		return errors.New("no protocol stack")
	}
	plan, err := pathPlanOf(l.cfg.Properties)
	if err != nil {
		return err
	}
	locals, _, err := resolveLocals(context.Background(), l.cfg, true)
	if err != nil {
		return err
	}
	if len(locals) == 0 {
		locals = []localAddrs{{}} // the wildcard address, an ephemeral port
	}
	sites, err := planListen(locals, plan, hostLookup{}.temporary)
	if err != nil {
		return err
	}
	l.follow.locals, l.follow.dynamic = locals, len(plan.Required) == 0
	// with an ephemeral port, the first socket picks it and the others take
	// the same number; when that number is taken for another transport or
	// site, start over with a fresh port rather than serve less. The last
	// tries share a port only within each local endpoint (two endpoints
	// may overlap, as 0.0.0.0 and 127.0.0.1 do).
	ephemeral := false
	for _, s := range sites {
		ephemeral = ephemeral || (s.local.Port() == 0 && s.path == "")
	}
	const tries = 8
	var fatal error
	for try := 0; try < tries; try++ {
		var partial []error
		partial, fatal = l.bindAll(sites, try < tries-2)
		if (fatal == nil && len(partial) == 0) || !ephemeral {
			break
		}
		if fatal == nil && try == tries-1 {
			break
		}
		for _, ln := range l.lns {
			_ = ln.Close()
		}
		l.lns, l.stacks, l.ifaces, l.socks = nil, nil, nil, nil
	}
	if fatal != nil {
		for _, ln := range l.lns {
			_ = ln.Close()
		}
		l.lns, l.stacks, l.ifaces, l.socks = nil, nil, nil, nil
		return fatal
	}
	for i := range l.lns {
		l.traceListening(i)
		l.startAccept(ctx, i)
	}
	l.followPorts()
	l.publish()
	return nil
}

// traceListening traces the listening socket i: Local is its address,
// with "%" and its interface when it is bound to one.
func (l *listenerActor) traceListening(i int) {
	if l.sys.Tracing() {
		local := l.lns[i].Addr().String()
		if l.ifaces[i] != "" {
			local += "%" + l.ifaces[i]
		}
		l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "Listening", Local: local, Stack: l.stacks[i]})
	}
}

// startAccept starts the accept goroutine of the listening socket i. It
// ends when the listener stops, or when the socket was retired (closed
// because its site is gone: listen_follow.go) without stopping the
// listener; any other accept error stops the listener, but for those
// acceptOne retries (timeouts, and the want of a resource such as EMFILE).
func (l *listenerActor) startAccept(ctx actor.Context, i int) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	ln, name, retired := l.lns[i], l.stacks[i], l.socks[i].retired
	l.accepting.Add(1)
	go func() {
		for {
			t, err := l.acceptOne(ln, name) // counted in accepting
			if err == nil && !l.gate.claim() {
				// the listener stopped while t waited for a place
				_ = t.Abort()
				err = errGateClosed
			}
			l.accepting.Done()
			switch {
			case err == errGateClosed:
				return // the listener stopped
			case err != nil:
				// not the listener's own Close (at Stop, or of a site gone)
				if !l.gate.isClosed() && !retired.Load() {
					root.Send(self, &acceptEnded{err: err})
				}
				return
			}
			a := &accepted{h: Handoff{t: t}}
			a.adopt.stack = name
			// held for the application from now on (claim counted it)
			if !l.gate.offer(&a.h) {
				a.h.Abandon() // stopped meanwhile
				return
			}
			root.Send(self, a)
			l.accepting.Add(1)
		}
	}()
}

// errGateClosed: the listener stopped while its accept goroutine waited.
var errGateClosed = errors.New("listener stopped")

// The wait before accepting again after an accept failed for want of a
// resource (stacks.AcceptRetryable): from acceptRetryMin, doubling up to
// acceptRetryMax, and from acceptRetryMin again after an accept (as
// net/http's Server.Serve).
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// isTimeout tells whether err is a net.Error that timed out. Apart from
// acceptOne so that an accept that succeeds allocates nothing for the
// errors.As target.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptOne waits for the gate and accepts one transport (errGateClosed
// when the listener stopped). Timeouts are retried at once; an accept that
// failed for want of a resource (the process or the system out of file
// descriptors, buffers or memory: stacks.AcceptRetryable) is retried after
// a wait (acceptRetryMin to acceptRetryMax, traced as AcceptRetry), which
// the listener's stop ends at once. A peer that is not one of the remote
// endpoints is refused: its transport is aborted at once (a TCP peer sees
// a reset, a Unix peer the end of the stream, and a UDP peer's queued
// datagrams are dropped with it: a later one from the same address is
// refused again). QUIC and TLS refuse before their handshake
// (Options.AcceptFrom, set by filterRemotes).
func (l *listenerActor) acceptOne(ln stacks.Listener, stack string) (stacks.Transport, error) {
	var wait time.Duration // the last wait after a resource error, 0 after an accept
	for l.gate.wait() {
		t, err := ln.Accept()
		switch {
		case err == nil:
			wait = 0
		case isTimeout(err):
			continue
		case stacks.AcceptRetryable(err):
			wait = min(max(2*wait, acceptRetryMin), acceptRetryMax)
			l.traceAcceptRetry(ln.Addr(), stack, err)
			if !l.gate.sleep(wait) {
				return nil, errGateClosed
			}
			continue
		default:
			return nil, err
		}
		if l.remotes != nil && !l.remotes.admit(stack, t.RemoteAddr()) {
			_ = t.Abort()
			continue
		}
		return t, nil
	}
	return nil, errGateClosed
}

// traceAcceptRetry traces an accept on local, of stack, that failed for
// want of a resource (err) and is tried again after a wait: acceptOne's,
// and those of the Listeners that retry under their Accept
// (stacks.Options.AcceptRetry: TLS).
func (l *listenerActor) traceAcceptRetry(local net.Addr, stack string, err error) {
	if l.sys.Tracing() {
		l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "AcceptRetry", Local: local.String(),
			Stack: stack, Error: err.Error()})
	}
}

// bindAll binds one listener per transport protocol on every site. partial
// are the errors of stacks that could not bind where another stack of the
// same site did; fatal is set when a site bound nothing. Ephemeral sites
// take the port the first of them got: all of them when shareAcross, else
// those of the same local endpoint.
func (l *listenerActor) bindAll(sites []listenSite, shareAcross bool) (partial []error, fatal error) {
	ports := map[int]uint16{} // local endpoint (-1: all) -> the shared ephemeral port
	for _, site := range sites {
		opts := l.cfg.StackOptions
		opts.Local, opts.Interface, opts.Path = site.local, site.iface, site.path
		ephemeral := site.local.Port() == 0 && site.path == ""
		key := site.endpoint
		if shareAcross {
			key = -1
		}
		if p, ok := ports[key]; ephemeral && ok {
			opts.Local = netip.AddrPortFrom(opts.Local.Addr(), p)
		}
		port, bound, errs := l.bindSite(site, opts)
		if bound == 0 {
			return partial, errors.Join(errs...)
		}
		if _, ok := ports[key]; ephemeral && !ok && port != 0 { // the next sites take the same port
			ports[key] = port
		}
		partial = append(partial, errs...)
	}
	return partial, nil
}

// bindSite binds one listener per transport protocol on site (the first
// of l.cfg.Stacks for each) with opts, which carry the site's address:
// with port 0 the first stack picks the port and the next ones take it. It
// returns that port, how many listeners it bound (added to l.lns and the
// slices alongside), and the errors of the stacks that could not bind.
func (l *listenerActor) bindSite(site listenSite, opts stacks.Options) (port uint16, bound int, errs []error) {
	used := map[string]bool{}
	for _, st := range l.cfg.Stacks {
		proto := transportOf(st.Name())
		if used[proto] {
			continue
		}
		name := st.Name()
		sopts := opts
		sopts.AcceptRetry = func(local net.Addr, err error) { l.traceAcceptRetry(local, name, err) }
		if sopts.HandshakeTimeout <= 0 {
			// the TLS or QUIC handshake of an accepted connection is
			// part of its setup: the establishment timeout bounds it as it
			// bounds the framers' handshakes after it (10 s by default)
			sopts.HandshakeTimeout = AcceptSetupTimeout(l.cfg.EstablishmentTimeout)
		}
		if site.endpoint < len(l.cfg.Locals) {
			sopts.MulticastSource = multicastSource(l.cfg.Locals[site.endpoint]) // source-specific
		}
		ln, err := st.Listen(context.Background(), sopts)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen %s on %s: %w", st.Name(), site, err))
			continue
		}
		used[proto] = true
		if site.path == "" && opts.Local.Port() == 0 {
			if ap, ok := stacks.AddrPortOf(ln.Addr()); ok {
				opts.Local = netip.AddrPortFrom(opts.Local.Addr(), ap.Port())
			}
		}
		l.lns = append(l.lns, ln)
		l.stacks = append(l.stacks, st.Name())
		l.ifaces = append(l.ifaces, site.iface)
		l.socks = append(l.socks, listenSocket{site: site, retired: new(atomic.Bool)})
	}
	return opts.Local.Port(), len(used), errs
}

func (l *listenerActor) stackNames() []string { return append([]string(nil), l.stacks...) }

// transportOf names the transport protocol under a stack: stacks on the
// same transport cannot share a port.
func transportOf(stack string) string {
	switch stack {
	case "quic", "udp", "udplite":
		return "udp"
	case "unix":
		return "unix"
	}
	return "tcp"
}

func (l *listenerActor) deliverHeld() {
	for len(l.held) > 0 && l.limit != 0 {
		s := l.held[0]
		l.held[0] = nil
		l.held = l.held[1:]
		l.deliver(s)
	}
	if len(l.held) == 0 {
		l.held = nil
	}
	l.gate.allow(l.limit != 0)
}

// deliver hands one received connection to the application, within the
// connection limit (the caller checked it is not 0).
func (l *listenerActor) deliver(s *ConnectionStarted) {
	// delivered even if it has closed since: the application sees
	// ConnectionReceived, then its data and Closed
	l.queue.push(s)
	if l.sys.Tracing() {
		l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "ConnectionReceived", ConnectionId: s.Link.ID(), GroupId: linkGroup(s.Link)})
	}
	if l.limit > 0 {
		l.limit--
		if l.limit == 0 {
			l.gate.allow(false)
		}
	}
}

func (l *listenerActor) stop(ctx actor.Context) {
	if !l.stopped && l.sys.Tracing() {
		l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "Stopped"})
	}
	l.stopped = true
	ctx.Stop(ctx.Self())
}

// acceptGate pauses the accept goroutines (further connections wait in the
// kernel's backlog) while the connection budget is 0 (allowed false:
// SetNewConnectionLimit) or while the listener holds backlog connections
// for the application (held: accepted, being set up or Ready, and not yet
// taken: returned by Accept, or their ConnectionReceived handler call
// begun); openLocked decides from both.
//
// With several listening sockets (one accept goroutine each) a goroutine
// that passed the gate may be blocked in Accept when the others fill the
// backlog, and an Accept cannot be taken back: so the transport it
// accepts is counted held only if a place is still free (claim), else the
// goroutine keeps it aside (parked: not set up, not counted in held) and
// waits for the next place, which it has before the goroutines that have
// not accepted yet (openLocked counts parked). So held never exceeds
// backlog; at most one transport per other socket waits parked, as it
// would in the kernel's queue. (Reserving a place before Accept instead
// would keep it from the other sockets for as long as its own socket is
// idle, which cannot be interrupted: with a backlog below the number of
// sockets a socket could wait for ever behind an idle one.) It also holds the
// accepted transports on their way to the listener, so that closing the
// gate closes those the listener will never claim, and likewise the
// connectionReceived of the connections Ready (reported) that the listener
// has not received yet: a Stop discards the messages queued in the
// listener's mailbox without a dead letter, so the listener aborts those
// connections when it stops, and a connection Ready after that is told
// the listener has stopped instead of reporting.
type acceptGate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	allowed bool // the new-connection limit is not 0
	held    int  // connections held for the application
	parked  int  // accepted transports waiting for a place (claim)
	backlog int  // the bound on held (0: none, a rendezvous's gate)
	closed  bool
	pending map[*Handoff]struct{}
	ready   map[*connectionReceived]struct{}
	// setup are the accepted connections whose framers' handshakes run
	// (armSetupDeadline): a Stop aborts them, since none of them can be
	// delivered any more
	setup map[*actor.PID]struct{}
	done  chan struct{} // closed with the gate: ends sleep
}

func newAcceptGate() *acceptGate {
	g := &acceptGate{allowed: true, done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// openLocked decides whether the accept goroutines may accept: the
// new-connection limit allows it and the listener holds fewer than backlog
// connections for the application, the parked transports (claim) counted
// (they have the next places). The caller holds mu.
func (g *acceptGate) openLocked() bool {
	return g.allowed && (g.backlog == 0 || g.held+g.parked < g.backlog)
}

// roomLocked tells whether a transport accepted may be counted held now:
// fewer than backlog are. The caller holds mu.
func (g *acceptGate) roomLocked() bool {
	return g.backlog == 0 || g.held < g.backlog
}

// claim counts a transport an accept goroutine accepted as held for the
// application, after waiting (parked) while the listener holds backlog
// connections: another socket's goroutine filled the backlog while this
// one was blocked in Accept. It waits for a place only, not for the
// new-connection limit (a transport accepted when the limit reached 0 is
// held, as one accepted just before). false: the gate closed meanwhile
// (the caller aborts the transport).
func (g *acceptGate) claim() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.roomLocked() && !g.closed {
		g.parked++
		for !g.roomLocked() && !g.closed {
			g.cond.Wait()
		}
		g.parked--
	}
	if g.closed {
		return false
	}
	g.held++
	return true
}

// wait waits until the gate is open; false when it closed for good.
func (g *acceptGate) wait() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.openLocked() && !g.closed {
		g.cond.Wait()
	}
	return !g.closed
}

// sleep waits d, or less when the gate closes meanwhile: it reports
// whether the gate is still not closed.
func (g *acceptGate) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !g.isClosed()
	case <-g.done:
		return false
	}
}

// allow records whether the new-connection limit lets connections in.
func (g *acceptGate) allow(ok bool) {
	g.mu.Lock()
	g.allowed = ok
	if g.openLocked() {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// hold counts one more connection held for the application.
func (g *acceptGate) hold() {
	g.mu.Lock()
	g.held++
	g.mu.Unlock()
}

// release counts one connection fewer held for the application (taken,
// or ended before Ready), and wakes the accept goroutines when that opens
// the gate.
func (g *acceptGate) release() {
	g.mu.Lock()
	g.held--
	if g.openLocked() || g.parked > 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// state returns how many connections the gate counts as held for the
// application, and whether it lets the accept goroutines accept.
func (g *acceptGate) state() (held int, open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.openLocked() && !g.closed
}

// close stops the gate for good and abandons the pending transports. It
// returns the connections reported Ready whose connectionReceived the
// listener has not received, and those still in their framers' setup: the
// caller aborts them.
func (g *acceptGate) close() (ready map[*connectionReceived]struct{}, setup map[*actor.PID]struct{}) {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.done)
	}
	g.cond.Broadcast()
	pending := g.pending
	ready, setup = g.ready, g.setup
	g.pending, g.ready, g.setup = nil, nil, nil
	g.mu.Unlock()
	for h := range pending {
		h.Abandon()
	}
	return ready, setup
}

// inSetup records the connection conn, accepted, as waiting for its
// framers' handshakes; false when the listener has stopped (the
// connection, which can no longer be delivered, aborts itself).
func (g *acceptGate) inSetup(conn *actor.PID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.setup == nil {
		g.setup = make(map[*actor.PID]struct{})
	}
	g.setup[conn] = struct{}{}
	return true
}

// setupEnded forgets conn's setup: it ended before Ready.
func (g *acceptGate) setupEnded(conn *actor.PID) {
	g.mu.Lock()
	delete(g.setup, conn)
	g.mu.Unlock()
}

// report records r (its started set) as on its way to the listener, before
// its connection sends it; false when the listener has stopped (the
// connection is then not delivered, and aborts itself). A nil gate (a
// rendezvous: not a listener's) always reports.
func (g *acceptGate) report(r *connectionReceived) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.setup, r.started.Conn) // its setup is over (a nil map: nothing)
	if g.closed {
		return false
	}
	if g.ready == nil {
		g.ready = make(map[*connectionReceived]struct{})
	}
	g.ready[r] = struct{}{}
	return true
}

// received forgets r: the listener has it.
func (g *acceptGate) received(r *connectionReceived) {
	g.mu.Lock()
	delete(g.ready, r)
	g.mu.Unlock()
}

// isClosed reports whether the listener has stopped.
func (g *acceptGate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// offer records h as on its way to the listener; false when the gate is
// closed (h is then the caller's to abandon).
func (g *acceptGate) offer(h *Handoff) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.pending == nil {
		g.pending = make(map[*Handoff]struct{})
	}
	g.pending[h] = struct{}{}
	return true
}

// taken forgets h: the listener has claimed it (or it was abandoned).
func (g *acceptGate) taken(h *Handoff) {
	g.mu.Lock()
	delete(g.pending, h)
	g.mu.Unlock()
}

// ListenQueue holds received connections until the application accepts
// them, and calls the ConnectionReceived handler when one is set. It is
// safe for concurrent use.
type ListenQueue struct {
	refused atomic.Uint64 // peers refused: not one of the remote endpoints
	// gate counts the connections held for the application: each one
	// Accept returns, and each handler call begun, releases one
	gate    *acceptGate
	mu      sync.Mutex
	q       []*ConnectionStarted
	wake    chan struct{}
	stopped bool
	err     error
	handler func(*ConnectionStarted)
	onStop  func(error)
	done    chan struct{}
	// released, closed: Released, SocketsClosed (settle)
	released, closed chan struct{}
	// the handlers' calls, one at a time and in order, on a goroutine that
	// runs while any is due (dq[dhead:])
	dq         []delivery
	dhead      int
	delivering bool
}

// delivery is one call of a ConnectionReceived handler (conn) or of the
// Stopped handler (stop).
type delivery struct {
	conn func(*ConnectionStarted)
	s    *ConnectionStarted
	stop func(error)
	err  error
}

func newListenQueue() *ListenQueue {
	return &ListenQueue{wake: make(chan struct{}), done: make(chan struct{}),
		released: make(chan struct{}), closed: make(chan struct{})}
}

// socketReleaser is implemented by the stack listeners whose socket may
// outlive their Close (QUIC: the UDP socket is shared with the sessions
// accepted on it and closed after the last one).
type socketReleaser interface {
	// Quiet is closed once the listener is closed and the sessions it
	// accepted that had no stream Transport left then have ended: the
	// socket is closed unless a session with stream Transports still
	// uses it.
	Quiet() <-chan struct{}
	// Closed is closed once the socket is closed.
	Closed() <-chan struct{}
}

// settle closes Released once every quiet channel is closed, and
// SocketsClosed once every closed one is, on a goroutine of its own
// while any is open (called once, when the listener stops, after its
// stack listeners were closed).
func (q *ListenQueue) settle(quiet, closed []<-chan struct{}) {
	after := func(chs []<-chan struct{}, then chan struct{}) {
		open := chs[:0:0]
		for _, ch := range chs {
			select {
			case <-ch:
			default:
				open = append(open, ch)
			}
		}
		if len(open) == 0 {
			close(then)
			return
		}
		go func() {
			for _, ch := range open {
				<-ch
			}
			close(then)
		}()
	}
	after(quiet, q.released)
	after(closed, q.closed)
}

// SetStopHandler sets the Stopped handler (nil: none): it gets the error
// that stopped the listener, nil after a Stop. On a listener that has
// stopped already it is called at once. Handler calls run one at a time,
// in order with the ConnectionReceived ones.
func (q *ListenQueue) SetStopHandler(onStop func(error)) {
	q.mu.Lock()
	q.onStop = onStop
	start := false
	if q.stopped && onStop != nil {
		start = q.dueLocked(delivery{stop: onStop, err: q.err})
	}
	q.mu.Unlock()
	if start {
		go q.deliver()
	}
}

// Err returns the error that stopped the listener: nil while it listens
// and after a Stop.
func (q *ListenQueue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// SetConnHandler sets the ConnectionReceived handler (nil: connections go
// to Accept); queued connections go to the handler at once.
func (q *ListenQueue) SetConnHandler(onConn func(*ConnectionStarted)) {
	q.mu.Lock()
	q.handler = onConn
	start := false
	if onConn != nil {
		for _, s := range q.q {
			start = q.dueLocked(delivery{conn: onConn, s: s}) || start
		}
		q.q = nil
	}
	q.mu.Unlock()
	if start {
		go q.deliver()
	}
}

func (q *ListenQueue) push(s *ConnectionStarted) {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	if h := q.handler; h != nil {
		start := q.dueLocked(delivery{conn: h, s: s})
		q.mu.Unlock()
		if start {
			go q.deliver()
		}
		return
	}
	q.q = append(q.q, s)
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
}

func (q *ListenQueue) stop(err error) {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	q.stopped = true
	if err != nil && !errors.Is(err, net.ErrClosed) {
		q.err = err
	}
	close(q.wake)
	close(q.done)
	start := false
	if h := q.onStop; h != nil {
		start = q.dueLocked(delivery{stop: h, err: q.err})
	}
	q.mu.Unlock()
	if start {
		go q.deliver()
	}
}

// dueLocked queues a handler call; it reports whether the caller must
// start the goroutine that makes the calls (none runs).
func (q *ListenQueue) dueLocked(d delivery) bool {
	q.dq = append(q.dq, d)
	if q.delivering {
		return false
	}
	q.delivering = true
	return true
}

// deliver makes the due handler calls, in order, until none is left.
func (q *ListenQueue) deliver() {
	for {
		q.mu.Lock()
		if q.dhead == len(q.dq) {
			// the array is kept for the next calls, unless a burst grew it
			if cap(q.dq) > 64 {
				q.dq = nil
			} else {
				q.dq = q.dq[:0]
			}
			q.dhead = 0
			q.delivering = false
			q.mu.Unlock()
			return
		}
		d := q.dq[q.dhead]
		q.dq[q.dhead] = delivery{}
		q.dhead++
		if q.dhead == len(q.dq) {
			// caught up: the next calls reuse the array from its start
			// (a steady stream of connections would grow it otherwise)
			q.dq, q.dhead = q.dq[:0], 0
		}
		q.mu.Unlock()
		if d.conn != nil {
			q.taken() // the handler has it: the next one may be accepted
		}
		d.call()
	}
}

// call runs one handler. A handler that panics is the application's
// business: the listener and the next calls go on.
func (d *delivery) call() {
	defer func() { _ = recover() }()
	if d.conn != nil {
		d.conn(d.s)
		return
	}
	d.stop(d.err)
}

// Refused returns how many peers the listener refused because they were
// not one of its remote endpoints.
func (q *ListenQueue) Refused() uint64 { return q.refused.Load() }

// taken releases the slot of a connection the application took.
func (q *ListenQueue) taken() {
	if q.gate != nil {
		q.gate.release()
	}
}

// Held returns how many connections the listener holds for the
// application (accepted, or a peer's stream received, and not yet taken:
// being set up, queued for Accept, or waiting for the ConnectionReceived
// handler), and whether it accepts more now: false while that count is
// at the backlog (transports accepted and waiting for a place counted:
// acceptGate.claim), the new-connection limit is 0, or after it stopped. For
// tests and diagnostics.
func (q *ListenQueue) Held() (n int, accepting bool) {
	if q.gate == nil {
		return 0, false
	}
	return q.gate.state()
}

// Done is closed when the listener has stopped (before its Stopped
// handler runs).
func (q *ListenQueue) Done() <-chan struct{} { return q.done }

// Released is closed once the listener has stopped and its sockets are
// closed, except a QUIC listener's UDP socket while a session it accepted
// still has stream Transports (Connections) open: that one is closed once
// its last such session has ended (SocketsClosed). The sessions it
// accepted that had no Connection left when it stopped, which close
// after a linger (at most 2 s), have ended by then.
func (q *ListenQueue) Released() <-chan struct{} { return q.released }

// SocketsClosed is closed once the listener has stopped and every socket
// it listened on is closed, QUIC sessions it accepted included.
func (q *ListenQueue) SocketsClosed() <-chan struct{} { return q.closed }

// Accept waits (ctx-bounded) for the next received connection. After the
// listener stopped, queued connections are still returned, then
// net.ErrClosed (or the error that stopped it).
func (q *ListenQueue) Accept(ctx context.Context) (*ConnectionStarted, error) {
	for {
		q.mu.Lock()
		if len(q.q) > 0 {
			s := q.q[0]
			q.q[0] = nil
			q.q = q.q[1:]
			q.mu.Unlock()
			q.taken()
			return s, nil
		}
		if q.stopped {
			err := q.err
			q.mu.Unlock()
			if err == nil {
				err = net.ErrClosed
			}
			return nil, fmt.Errorf("accept: %w", err)
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// errListenerStopped aborts a connection the listener accepted but will
// not deliver: it became Ready after the listener stopped.
var errListenerStopped = errors.New("listener stopped")
