package actors

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// This file holds RFC 9622 §7.3: the rendezvous actor (Rendezvous) and the
// resolve actor (Resolve, early binding with STUN). Both are children of
// the root, run their blocking work (name resolution, STUN, accept,
// connect, TLS and QUIC handshakes, datagram reads) in goroutines that
// only post typed messages to them, and own every socket until it is
// handed over or closed.

// ErrRendezvousUnsupported: Rendezvous needs one of the stacks tcp, tls,
// quic, udp or udplite (unix cannot rendezvous).
var ErrRendezvousUnsupported = errors.New("rendezvous is implemented over TCP, TLS, QUIC, UDP and UDP-Lite only")

// StunServer is a LocalEndpoint's STUN server (RFC 9622 §6.1.1
// WithStunServer). The zero value means none.
type StunServer struct {
	Host        string // a host name or an IP literal
	Port        uint16
	Credentials *stacks.STUNCredentials
	// Client is the STUN client to use (RTO, attempts); its Credentials
	// are replaced by Credentials.
	Client stacks.STUNClient
}

// StartRendezvous asks the root for a rendezvous actor. The reply is
// *RendezvousStarted; the outcome is published on Result.
type StartRendezvous struct {
	// Config is the snapshot (initiate role): StackOptions.TLS is the
	// client role's TLS configuration when the stack is tls.
	Config *messages.ConnectionConfig
	// ServerTLS is the server role's TLS configuration (nil: this side
	// cannot be the TLS server).
	ServerTLS *tls.Config
	// Stun holds the STUN server of each local endpoint (by index).
	Stun   []StunServer
	Result *RendezvousResult
}

// RendezvousStarted is the reply to StartRendezvous.
type RendezvousStarted struct{ PID *actor.PID }

// CancelRendezvous ends a rendezvous (its ctx ended): unless a connection
// was already established, the Result gets Err once every socket is
// closed.
type CancelRendezvous struct{ Err error }

// How a rendezvous connection came about.
const (
	// RendezvousConnected: this side's connect succeeded (a TCP
	// simultaneous open, or the peer's listener accepted it).
	RendezvousConnected = "connected"
	// RendezvousAccepted: this side's listener accepted the peer's
	// connect.
	RendezvousAccepted = "accepted"
	// RendezvousChecked: a STUN connectivity check of this side succeeded
	// (UDP, UDP-Lite).
	RendezvousChecked = "checked"
)

// RendezvousResult is the outcome of one rendezvous, shared by the facade
// (which waits on Done) and the rendezvous actor, which completes it when
// it has stopped: every socket but the winner's is closed by then. It is
// safe for concurrent use.
type RendezvousResult struct {
	mu      sync.Mutex
	done    chan struct{}
	set     bool
	started *ConnectionStarted
	how     string
	err     error

	start StartClaim // the actor that took the StartRendezvous, or the caller's abandon
}

// NewRendezvousResult returns a result not completed yet.
func NewRendezvousResult() *RendezvousResult {
	return &RendezvousResult{done: make(chan struct{})}
}

// Done is closed once the outcome is known.
func (r *RendezvousResult) Done() <-chan struct{} { return r.done }

// Outcome returns the connection and how it came about, or the error.
// Valid once Done is closed.
func (r *RendezvousResult) Outcome() (*ConnectionStarted, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started, r.how, r.err
}

// attach is the rendezvous actor taking the StartRendezvous, before it
// opens anything: from now on Abandon returns pid. It fails, with the
// caller's error, when the caller has abandoned the request already: the
// actor must then open nothing.
func (r *RendezvousResult) attach(pid *actor.PID) error { return r.start.Claim(pid) }

// Abandon is for a caller that got no RendezvousStarted (its ctx ended
// while the request or the reply was on its way; the reply may then be
// lost even though the actor exists). It returns the actor that took the
// request, if one did: it is running (or has run) the rendezvous, and the
// caller cancels it (CancelRendezvous) and waits for Done, which comes
// once its sockets are closed. Otherwise it returns nil and an actor that
// takes the request later fails at once with err, without opening
// anything: the caller need not wait.
func (r *RendezvousResult) Abandon(err error) *actor.PID { return r.start.Abandon(err) }

// complete sets the outcome, once.
func (r *RendezvousResult) complete(s *ConnectionStarted, how string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set {
		return
	}
	r.set, r.started, r.how, r.err = true, s, how, err
	close(r.done)
}

// RendezvousStack is the stack a rendezvous uses: the first TCP-based one
// (tcp, tls) of cfg.Stacks, in preference order; without one, the first
// of quic, udp and udplite. Without any of them it returns an error
// wrapping ErrRendezvousUnsupported.
func RendezvousStack(cfg *messages.ConnectionConfig) (stacks.Stack, error) {
	var names []string
	var other stacks.Stack
	for _, st := range cfg.Stacks {
		switch st.Name() {
		case "tcp", "tls":
			return st, nil
		case "quic", "udp", "udplite":
			if other == nil {
				other = st
			}
		}
		names = append(names, st.Name())
	}
	if other != nil {
		return other, nil
	}
	return nil, fmt.Errorf("stacks %v: %w", names, ErrRendezvousUnsupported)
}

// rendezvousRetry is the wait before connect attempt n+1 after n were
// refused (the peer may not listen yet): 10 ms doubling up to 320 ms.
func rendezvousRetry(n int) time.Duration {
	return supervision.Backoff{Initial: 10 * time.Millisecond, Max: 320 * time.Millisecond, Multiplier: 2}.Delay(n)
}

// The rendezvous actor's own messages.
type (
	// rvResolved: the local and remote addresses (or why not).
	rvResolved struct{ r *resolved }
	// rvEstablished: a transport, fully established (TLS done), from a
	// connect or from a listener.
	rvEstablished struct {
		h   Handoff
		how string
	}
	// rvAttemptEnded: a connect attempt on pair gave up (yielded: the
	// 4-tuple is taken, the peer's connect is ours to accept).
	rvAttemptEnded struct {
		pair    rvPairKey
		err     error
		yielded bool
	}
	rvRefused struct{ pair rvPairKey }
	// rvRetry: a QUIC dial attempt got no handshake in time; the next
	// attempt follows at once.
	rvRetry struct {
		pair rvPairKey
		err  error
	}
	// rvDatagram: a datagram read from the UDP rendezvous socket sock (an
	// index into socks).
	rvDatagram struct {
		sock int
		from netip.AddrPort
		b    []byte
	}
	// rvReaderEnded: the reader of UDP socket sock stopped (its read
	// deadline, set once its pair was selected, or the socket closed);
	// every datagram it read was posted before.
	rvReaderEnded struct{ sock int }
	// rvCheckTick: the n-th wait before retransmitting the Binding request
	// (check or nomination) of pair ended; nom: armed while nominating (a
	// check's tick that comes once the pair is nominated, queued before
	// its timer was stopped, is stale).
	rvCheckTick struct {
		pair rvPairKey
		n    int
		nom  bool
	}
	rvTimeout struct{}
	// rvStunServer: the address of the first local endpoint's STUN
	// server (UDP, QUIC: asked from the rendezvous socket), or why not.
	rvStunServer struct {
		addr netip.AddrPort
		err  error
	}
	// rvStunTick: the wait after the n-th STUN Binding request ended.
	rvStunTick struct{ n int }
	// rvStunDatagram: a datagram that is not QUIC, read from the QUIC
	// rendezvous endpoint of socks[stunSock] (its STUN answer, maybe).
	rvStunDatagram struct {
		from netip.AddrPort
		b    []byte
	}
	// rvStunAnswer: the server-reflexive address learnt from a UDP socket
	// of its own (TCP, TLS, UDP-Lite), or why not.
	rvStunAnswer struct {
		addr netip.AddrPort
		err  error
	}
	// rvListenFailed: a listener ended with an error.
	rvListenFailed struct {
		local netip.AddrPort
		err   error
	}
)

// ErrRendezvousNotNominated is the attempt error of a UDP rendezvous pair
// whose connectivity check succeeded but which the controlling peer did not
// nominate (it nominated another pair, or the rendezvous ended first).
var ErrRendezvousNotNominated = errors.New("connectivity check succeeded; the controlling peer nominated no pair yet")

// rendezvousActor runs one Rendezvous (RFC 9622 §7.3) over the candidate
// pairs of its endpoints (rendezvous_pairs.go): every address of every
// local endpoint (a local candidate, one socket each) with every remote
// address of its family.
//
// Over TCP or TLS it resolves the endpoints, listens on each local
// candidate with SO_REUSEPORT and connects from the same address and port
// to every remote address of its family (retrying while refused), so that
// two peers doing the same get one TCP connection per pair that works: by
// a simultaneous open, or because one side's SYN reaches the other's
// listener first (the other's connect then fails with EADDRNOTAVAIL and it
// takes the accepted one). A listener accepts only connections from the
// remote addresses paired with it. The first established transport wins
// (for TLS, once its handshake is done; the side whose local address:port
// is lower is the TLS client); every other attempt, every listener and any
// later transport are closed. The winner becomes a connection in a new
// group through the root (adoptConnection, as a listener's accepted
// transport), and is RendezvousDone once Ready (after its framers'
// handshakes); should that connection end before, or the establishment
// timeout or cancellation come first, the rendezvous fails (and the
// connection is aborted).
//
// Over QUIC (startQUIC) one endpoint per local candidate dials the remotes
// for which this side is the client and accepts from the others; the first
// connection with its first stream wins, as above. Over UDP and UDP-Lite
// (startUDP) the actor runs STUN connectivity checks on every pair, from
// one socket per local candidate (datagram has the rule), and both sides
// select the same pair by ICE nomination (rendezvous_ice.go); the selected
// pair's socket, connected to its remote, is the winner's transport
// (handOver).
//
// It runs on protoactor's default dispatcher, not controlDispatcher, so
// that a goroutine posting to it never runs it: Stopped can wait for them.
type rendezvousActor struct {
	sys       *System
	cfg       *messages.ConnectionConfig
	serverTLS *tls.Config
	stun      []StunServer
	result    *RendezvousResult
	stack     stacks.Stack

	cancel   context.CancelFunc // the goroutines' context
	gctx     context.Context
	wg       sync.WaitGroup
	gate     *acceptGate // the handoffs on their way to the actor
	timer    *time.Timer
	attempts map[rvPairKey]*AttemptError
	order    []rvPairKey
	socks    []*rvSocket      // the local candidates, bound
	remotes  []netip.AddrPort // every remote address
	adopted  bool             // the winner went to the root
	how      string           // how the winner came about
	won      *ConnectionStarted
	ended    bool  // failed or cancelled
	err      error // why, when ended

	// The winner's connection, once adopted: the group that made it
	// answers ConnectionStarted (started), and the connection sends
	// connectionReceived once Ready (won). Until then it is watched: should
	// it end before Ready, the rendezvous fails; should the rendezvous end
	// first (ctx, establishment timeout), the connection is aborted.
	started  bool             // ConnectionStarted (or the group's error) came
	conn     *actor.PID       // the winner's connection
	link     *Link            // its Link: was it Ready when it ended?
	connGone bool             // conn stopped (Terminated), or was never made
	aborted  bool             // the AbortConnection went to conn
	handed   stacks.Transport // the winner's transport, until started

	// udp, udplite
	tie        uint64 // this side's ICE tie-breaker
	checks     map[rvPairKey]*rvCheck
	early      map[rvPairKey][][]byte // non-STUN datagrams before the handover
	nominating bool                   // a nomination is on its way (controlling)
	winner     rvPairKey              // the selected pair (Remote valid once selected)
	// the STUN Binding transaction of socks[stunSock], the first bound
	// (gather; udp and quic: sent from that socket by the actor): to
	// server, once known; done once answered or given up
	stunSock   int
	stunServer netip.AddrPort
	stunTx     [12]byte
	stunSent   int
	stunTimer  *time.Timer
	stunDone   bool
	stunStop   context.CancelFunc // ends the QUIC endpoint's STUN reader
}

// rvSocket is one local candidate of a rendezvous, bound: its listener
// (tcp, tls), QUIC endpoint (quic) or socket (udp, udplite), and the
// remote addresses it is paired with.
type rvSocket struct {
	idx     int
	local   netip.AddrPort // the candidate's address with the bound port
	iface   string
	remotes []netip.AddrPort
	ln      stacks.Listener
	qr      *stacks.QUICRendezvous
	udp     *net.UDPConn // until handed over or closed
}

// rvCheck is the connectivity check (STUN Binding transaction) of one
// pair and, on the controlling side, its nomination.
type rvCheck struct {
	sock       int
	tx         [12]byte
	sent       int
	timer      *time.Timer
	valid      bool // the check succeeded: the pair works both ways
	nominating bool // this side nominates the pair (transaction ntx)
	ntx        [12]byte
	failed     bool // its nomination went unanswered: given up
}

// rendezvousNominationMax is how many times a nomination is sent before
// its pair is given up (RFC 8489 §6.2.1's Rc): about 2.3 s at
// rendezvousCheckWait.
const rendezvousNominationMax = 7

// rendezvousEarlyMax bounds the datagrams kept per pair before the
// handover; later ones are dropped.
const rendezvousEarlyMax = 64

// rendezvousCheckWait is the wait after the n-th Binding request of a UDP
// rendezvous before the next: 50 ms doubling up to 500 ms.
func rendezvousCheckWait(n int) time.Duration {
	return supervision.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Multiplier: 2}.Delay(n)
}

// rendezvousQUICAttempt bounds the n-th QUIC dial attempt of a rendezvous
// (the peer may not listen yet, and quic-go's Initial retransmissions back
// off from about 300 ms): 100 ms doubling up to 1 s.
func rendezvousQUICAttempt(n int) time.Duration {
	return supervision.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}.Delay(n)
}

func newRendezvousProps(s *System, m *StartRendezvous) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &rendezvousActor{sys: s, cfg: m.Config, serverTLS: m.ServerTLS, stun: m.Stun, result: m.Result,
			gate: newAcceptGate(), attempts: map[rvPairKey]*AttemptError{}, tie: newTieBreaker(),
			checks: map[rvPairKey]*rvCheck{}, early: map[rvPairKey][][]byte{}}
	}, actor.WithSupervisor(supervision.Strategy(supervision.Listener)))
}

func (r *rendezvousActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.gctx, r.cancel = context.WithCancel(context.Background())
	case *StartRendezvous:
		if err := r.result.attach(ctx.Self()); err != nil {
			// the caller gave up before this actor took the request (and
			// does not wait for the Result): open nothing
			r.fail(ctx, err)
			return
		}
		ctx.Respond(&RendezvousStarted{PID: ctx.Self()})
		st, err := RendezvousStack(r.cfg)
		if err != nil {
			r.fail(ctx, err)
			return
		}
		r.stack = st
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if d := r.cfg.EstablishmentTimeout; d > 0 {
			r.timer = time.AfterFunc(d, func() { root.Send(self, &rvTimeout{}) })
		}
		cfg, gctx := r.cfg, r.gctx
		r.wg.Go(func() { root.Send(self, &rvResolved{r: resolveAll(gctx, cfg)}) })
	case *rvResolved:
		if r.ended || r.adopted {
			return
		}
		if m.r.err != nil {
			r.fail(ctx, &EstablishmentFailure{Err: m.r.err})
			return
		}
		if err := r.start(ctx, m.r); err != nil {
			r.fail(ctx, &EstablishmentFailure{Err: err, Attempts: r.attemptList()})
		}
	case *rvEstablished:
		t, ok := m.h.Claim()
		r.gate.taken(&m.h)
		if !ok {
			return
		}
		if r.ended || r.adopted {
			_ = t.Abort()
			return
		}
		r.win(ctx, t, m.how)
	case *rvRefused:
		r.record(m.pair, syscall.ECONNREFUSED)
		if r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "ConnectRefused", Local: rvAddrString(m.pair.Local), Remote: m.pair.Remote.String(), Stack: r.stack.Name()})
		}
	case *rvRetry:
		r.record(m.pair, m.err)
		if r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "ConnectRetry", Local: rvAddrString(m.pair.Local), Remote: m.pair.Remote.String(), Stack: r.stack.Name(), Error: m.err.Error()})
		}
	case *rvDatagram:
		r.datagram(ctx, m)
	case *rvCheckTick:
		c := r.checks[m.pair]
		if c == nil || m.nom != c.nominating || r.ended || r.adopted || r.winner.Remote.IsValid() || r.socks[c.sock].udp == nil {
			return
		}
		if c.valid && !c.nominating {
			return // succeeded, waiting for the peer's nomination
		}
		if c.failed && !c.nominating {
			return // given up (a pair to itself, an unanswered nomination)
		}
		if c.nominating && c.sent >= rendezvousNominationMax {
			r.nominationFailed(ctx, m.pair, c)
			return
		}
		r.sendCheck(m.pair, c)
		r.armCheck(ctx, m.pair, c, m.n+1)
	case *rvStunServer:
		if r.ended || r.adopted {
			return
		}
		if m.err != nil {
			r.stunResult(netip.AddrPort{}, m.err)
			return
		}
		r.stunServer = m.addr
		r.stunSend(ctx)
	case *rvStunDatagram:
		if !r.ended && !r.adopted {
			r.stunAnswered(m.from, m.b)
		}
	case *rvStunAnswer:
		if !r.ended && !r.adopted {
			r.stunResult(m.addr, m.err)
		}
	case *rvStunTick:
		if r.stunDone || r.ended || r.adopted {
			return
		}
		if r.stunSent >= r.stunClient().Attempts {
			r.stunResult(netip.AddrPort{}, fmt.Errorf("stun %s: %w after %d requests", r.stunServer, stacks.ErrSTUNTimeout, r.stunSent))
			return
		}
		r.stunSend(ctx)
	case *rvReaderEnded:
		r.handOver(ctx, m.sock)
	case *rvAttemptEnded:
		if !m.yielded || r.attempts[m.pair] == nil {
			// a yield says only that the peer's connect reached our
			// listener: what came of that connection (a failed
			// handshake) tells more and is kept
			r.record(m.pair, m.err)
		}
		ev := "ConnectFailed"
		if m.yielded {
			ev = "ConnectYielded" // the peer's connect reached our listener
		}
		if r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: ev, Local: rvAddrString(m.pair.Local), Remote: m.pair.Remote.String(), Stack: r.stack.Name(), Error: m.err.Error()})
		}
	case *rvListenFailed:
		if !r.ended && !r.adopted {
			r.fail(ctx, &EstablishmentFailure{Err: fmt.Errorf("listen %s: %w", rvAddrString(m.local), m.err), Attempts: r.attemptList()})
		}
	case *rvTimeout:
		if !r.ended {
			r.recordRunning(ErrEstablishmentTimeout)
			r.fail(ctx, &EstablishmentFailure{Err: ErrEstablishmentTimeout, Attempts: r.attemptList()})
		}
	case *CancelRendezvous:
		if !r.ended {
			r.recordRunning(m.Err)
			r.fail(ctx, &EstablishmentFailure{Err: m.Err, Attempts: r.attemptList()})
		}
	case *ConnectionStarted: // from the group that made the winner's connection
		r.started, r.handed = true, nil
		r.conn, r.link = m.Conn, m.Link
		ctx.Watch(m.Conn) // until its connectionReceived, or its end
		if r.ended {
			r.abortWinner(ctx)
		}
		r.maybeStop(ctx)
	case error: // from the group: the winner's connection could not be made
		if !r.adopted || r.started {
			return
		}
		r.started, r.connGone = true, true
		if r.handed != nil {
			_ = r.handed.Abort() // nobody took it
			r.handed = nil
		}
		if r.ended {
			r.maybeStop(ctx)
			return
		}
		r.fail(ctx, &EstablishmentFailure{Err: fmt.Errorf("rendezvous connection: %w", m), Attempts: r.attemptList()})
	case *actor.Terminated:
		if r.conn == nil || !m.Who.Equal(r.conn) {
			return
		}
		r.connGone = true
		if r.won == nil && !r.ended && !r.link.WasReady() {
			// the winner's connection ended before Ready (a framer's
			// handshake failed, the peer closed it): every other attempt
			// is over
			err := r.link.Err()
			if err == nil {
				err = ErrClosed
			}
			r.fail(ctx, &EstablishmentFailure{Err: fmt.Errorf("rendezvous connection ended before Ready: %w", err), Attempts: r.attemptList()})
			return
		}
		r.maybeStop(ctx) // Ready: its connectionReceived, sent before it stopped, comes next
	case *connectionReceived:
		started := m.started
		switch {
		case r.ended:
			// failed or cancelled meanwhile: nobody takes it
			r.conn = started.Conn
			r.abortWinner(ctx)
		default:
			r.won = &started
			if r.sys.Tracing() {
				r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "RendezvousDone", ConnectionId: started.Link.ID(), GroupId: linkGroup(started.Link),
					Stack: r.stack.Name(), Candidate: r.how})
			}
		}
		r.maybeStop(ctx)
	case *messages.ShutdownSystem:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		if r.timer != nil {
			r.timer.Stop()
		}
		r.teardown()
	case *actor.Stopped:
		r.wg.Wait() // every goroutine ends: ctx cancelled, listener closed
		switch {
		case r.won != nil:
			r.result.complete(r.won, r.how, nil)
		case r.err != nil:
			r.result.complete(nil, "", r.err)
		default: // stopped by the root (shutdown)
			r.result.complete(nil, "", ErrShutdown)
		}
	}
}

// start forms the candidate pairs (rendezvousPairs) once the addresses
// are known, then binds the first local candidate that can be bound and
// listens and connects (TCP, TLS, QUIC), or binds every local candidate
// and starts the connectivity checks (UDP, UDP-Lite). A local candidate
// that cannot be bound is recorded against its pairs; the rendezvous
// fails only when none can.
func (r *rendezvousActor) start(ctx actor.Context, res *resolved) error {
	var remotes []netip.AddrPort
	for _, ra := range res.remotes {
		remotes = append(remotes, ra.addrs...)
	}
	locals := res.locals
	if len(locals) == 0 {
		locals = []localAddrs{{}} // the wildcard, any port
	}
	cands, pairs, all := rendezvousPairs(locals, remotes)
	if len(pairs) == 0 {
		return fmt.Errorf("%w: no local endpoint has an address of a remote endpoint's family", ErrNoCandidates)
	}
	r.remotes = all
	for i, c := range cands {
		r.socks = append(r.socks, &rvSocket{idx: i, local: c.Addr, iface: c.Iface})
	}
	for _, p := range pairs {
		s := r.socks[p.Local]
		s.remotes = append(s.remotes, p.Remote)
	}
	var bind func(s *rvSocket) error
	switch r.stack.Name() {
	case "quic":
		bind = r.bindQUIC
	case "udp", "udplite":
		bind = r.bindUDP
	default:
		bind = r.bindTCP
	}
	// TCP, TLS and QUIC use one local candidate: the first that binds.
	// Their first connection established wins, and nothing in band can
	// nominate one: with several local candidates on each side, the two
	// sides could each keep a different connection. With one each, the
	// only pair both sides try is that of the two candidates, and both
	// end on it. UDP checks every pair and nominates one (ICE).
	oneLocal := r.stack.Name() != "udp" && r.stack.Name() != "udplite"
	var firstErr error
	bound := 0
	for i, s := range r.socks {
		if err := bind(s); err != nil {
			firstErr = cmp.Or(firstErr, err)
			for _, remote := range s.remotes {
				r.record(rvPairKey{s.local, remote}, err)
			}
			if r.sys.Tracing() {
				r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "ListenFailed", Local: rvAddrString(s.local), Stack: r.stack.Name(), Error: err.Error()})
			}
			continue
		}
		bound++
		if oneLocal {
			r.socks = r.socks[:i+1] // the later candidates are not used
			break
		}
	}
	if bound == 0 {
		return firstErr
	}
	switch r.stack.Name() {
	case "quic":
		if err := r.startQUIC(ctx); err != nil {
			return err
		}
	case "udp", "udplite":
		r.startUDP(ctx)
	default:
		r.startTCP(ctx)
	}
	r.gather(ctx)
	return nil
}

// gather asks the first local endpoint's STUN server, if it has one, for
// the server-reflexive address of the first bound local candidate (the
// rendezvous socket of TCP, TLS and QUIC), alongside the rendezvous: it is
// traced (a ServerReflexive record: what the peer would be told through
// signalling), and a failure does not stop the rendezvous. Over UDP and
// QUIC the rendezvous socket asks the server itself (a socket of its own
// on that port could not bind, and on port 0 would get a port of its own):
// the actor sends the Binding request once the server's address is known
// (rvStunServer, stunSend), and the answer comes through the socket's
// reader (datagram; a QUIC endpoint's stunReader). Over TCP, TLS and
// UDP-Lite, whose sockets cannot speak to a STUN server over UDP, a UDP
// socket of its own bound to the candidate's address and bound port asks
// (stunBinding).
func (r *rendezvousActor) gather(ctx actor.Context) {
	if len(r.stun) == 0 || r.stun[0].Host == "" {
		return
	}
	idx := slices.IndexFunc(r.socks, func(s *rvSocket) bool { return s.ln != nil || s.qr != nil || s.udp != nil })
	if idx < 0 {
		return
	}
	r.stunSock = idx
	s := r.socks[idx]
	root, self, cfg, gctx, srv, local := ctx.ActorSystem().Root, ctx.Self(), r.cfg, r.gctx, r.stun[0], s.local
	if r.stack.Name() != "udp" && s.qr == nil {
		r.wg.Go(func() {
			a, err := stunBinding(gctx, cfg, srv, local)
			root.Send(self, &rvStunAnswer{addr: a, err: err})
		})
		return
	}
	if s.qr != nil {
		rctx, stop := context.WithCancel(gctx)
		r.stunStop = stop
		qr := s.qr
		qr.ListenNonQUIC() // before the request: its answer is kept
		r.wg.Go(func() { stunReader(rctx, root, self, qr) })
	}
	r.wg.Go(func() {
		server, err := stunServerAddr(gctx, cfg, srv, local)
		root.Send(self, &rvStunServer{addr: server, err: err})
	})
}

// stunReader posts every datagram of qr that is not QUIC to the actor
// until ctx ends (the STUN transaction, or the rendezvous, ended) or qr's
// socket is closed.
func stunReader(ctx context.Context, root *actor.RootContext, self *actor.PID, qr *stacks.QUICRendezvous) {
	buf := make([]byte, 1500)
	for {
		n, from, err := qr.ReadNonQUIC(ctx, buf)
		if err != nil {
			return
		}
		root.Send(self, &rvStunDatagram{from: unmapAddrPort(from), b: bytes.Clone(buf[:n])})
	}
}

// boundLocal is the candidate's address with the port sock is bound to.
func boundLocal(cand netip.AddrPort, sock net.Addr) netip.AddrPort {
	b, _ := stacks.AddrPortOf(sock)
	return netip.AddrPortFrom(cand.Addr(), b.Port())
}

// bindTCP listens on s's address and port with SO_REUSEPORT.
func (r *rendezvousActor) bindTCP(s *rvSocket) error {
	opts := r.cfg.StackOptions
	opts.TLS = nil // TCP first; TLS once the roles are known
	opts.ReusePort = true
	opts.Local, opts.Interface = s.local, s.iface
	ln, err := stacks.TCP().Listen(context.Background(), opts)
	if err != nil {
		return fmt.Errorf("listen %s %s: %w", r.stack.Name(), rvAddrString(s.local), err)
	}
	s.ln = ln
	s.local = boundLocal(s.local, ln.Addr())
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Listening", Local: ln.Addr().String(), Stack: r.stack.Name()})
	}
	return nil
}

// startTCP accepts on every listener and connects from each to every
// remote paired with it.
func (r *rendezvousActor) startTCP(ctx actor.Context) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	for _, s := range r.socks {
		if s.ln == nil {
			continue
		}
		r.wg.Go(func() { r.acceptLoop(root, self, s) })
		opts := r.cfg.StackOptions
		opts.TLS = nil
		opts.ReusePort = true
		opts.Interface = s.iface
		for _, remote := range s.remotes {
			dopts := opts
			dopts.Local = s.local
			if !s.local.Addr().IsValid() && remote.Addr().Is6() {
				dopts.Local = netip.AddrPortFrom(netip.IPv6Unspecified(), s.local.Port())
			} else if !s.local.Addr().IsValid() {
				dopts.Local = netip.AddrPortFrom(netip.IPv4Unspecified(), s.local.Port())
			}
			r.wg.Go(func() { r.connectLoop(root, self, rvPairKey{s.local, remote}, dopts) })
		}
	}
}

// acceptLoop accepts on s's listener the connections from the remote
// addresses paired with s; others are reset. Each accepted one is secured
// (TLS) in its own goroutine. An accept that failed for want of a
// resource (stacks.AcceptRetryable: EMFILE, ENFILE, ENOBUFS, ENOMEM) is
// tried again after a wait, as a Listener's (acceptRetryMin doubling up to
// acceptRetryMax, from acceptRetryMin again after an accept; traced as
// AcceptRetry), which the end of the rendezvous ends at once; any other
// error fails the rendezvous (rvListenFailed).
func (r *rendezvousActor) acceptLoop(root *actor.RootContext, self *actor.PID, s *rvSocket) {
	var wait time.Duration // the last wait after a resource error, 0 after an accept
	for {
		t, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				continue
			case r.gctx.Err() != nil || errors.Is(err, net.ErrClosed):
				return
			case stacks.AcceptRetryable(err):
				wait = min(max(2*wait, acceptRetryMin), acceptRetryMax)
				if r.sys.Tracing() {
					r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "AcceptRetry", Local: s.ln.Addr().String(),
						Stack: r.stack.Name(), Error: err.Error()})
				}
				tm := time.NewTimer(wait)
				select {
				case <-tm.C:
					continue
				case <-r.gctx.Done():
					tm.Stop()
					return
				}
			}
			root.Send(self, &rvListenFailed{local: s.local, err: err})
			return
		}
		wait = 0
		ra, _ := stacks.AddrPortOf(t.RemoteAddr())
		ra = unmapAddrPort(ra)
		if !slices.Contains(s.remotes, ra) {
			_ = t.Abort() // not a peer of this rendezvous
			continue
		}
		r.wg.Go(func() { r.offer(root, self, t, rvPairKey{s.local, ra}, RendezvousAccepted) })
	}
}

// connectLoop connects pair's remote from opts.Local until it succeeds,
// fails for good, or the rendezvous ends; a refused connect (the peer does
// not listen yet) is tried again after rendezvousRetry.
func (r *rendezvousActor) connectLoop(root *actor.RootContext, self *actor.PID, pair rvPairKey, opts stacks.Options) {
	for n := 1; ; n++ {
		t, err := stacks.TCP().Dial(r.gctx, pair.Remote, opts)
		if err == nil {
			la, _ := stacks.AddrPortOf(t.LocalAddr())
			ra, _ := stacks.AddrPortOf(t.RemoteAddr())
			if unmapAddrPort(la) == unmapAddrPort(ra) {
				// a TCP simultaneous open with itself: this side's own
				// address is among the remotes
				_ = t.Abort()
				root.Send(self, &rvAttemptEnded{pair: pair, err: fmt.Errorf("%w (%s)", errRendezvousItself, unmapAddrPort(la))})
				return
			}
			r.offer(root, self, t, pair, RendezvousConnected)
			return
		}
		if r.gctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			root.Send(self, &rvRefused{pair: pair})
			tm := time.NewTimer(rendezvousRetry(n))
			select {
			case <-tm.C:
				continue
			case <-r.gctx.Done():
				tm.Stop()
				return
			}
		case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
			// the 4-tuple exists: the peer's connect reached our listener
			root.Send(self, &rvAttemptEnded{pair: pair, err: err, yielded: true})
		default:
			root.Send(self, &rvAttemptEnded{pair: pair, err: err})
		}
		return
	}
}

// offer secures t (TLS), established on pair, and hands it to the actor.
func (r *rendezvousActor) offer(root *actor.RootContext, self *actor.PID, t stacks.Transport, pair rvPairKey, how string) {
	if r.stack.Name() == "tls" {
		local, _ := stacks.AddrPortOf(t.LocalAddr())
		remote, _ := stacks.AddrPortOf(t.RemoteAddr())
		client, err := tlsClientRole(local, remote)
		var st stacks.Transport
		if err == nil {
			opts := r.cfg.StackOptions
			if !client {
				opts.TLS = r.serverTLS
				if opts.TLS == nil {
					err = errors.New("the TLS server role needs a local identity")
				}
			}
			if err == nil {
				st, err = stacks.SecureTransport(r.gctx, t, opts, client)
			}
		}
		if err != nil {
			_ = t.Abort()
			if r.gctx.Err() == nil {
				root.Send(self, &rvAttemptEnded{pair: pair, err: err})
			}
			return
		}
		t = st
	}
	e := &rvEstablished{h: Handoff{t: t}, how: how}
	if !r.gate.offer(&e.h) {
		e.h.Abandon()
		return
	}
	root.Send(self, e)
}

// bindQUIC opens s's QUIC endpoint on its address and port; it refuses
// Initials from other addresses than the remotes paired with s.
func (r *rendezvousActor) bindQUIC(s *rvSocket) error {
	opts := r.cfg.StackOptions
	opts.Local, opts.Interface = s.local, s.iface
	remotes := slices.Clone(s.remotes)
	sys := r.sys
	accept := func(from netip.AddrPort) bool {
		if slices.Contains(remotes, unmapAddrPort(from)) {
			return true
		}
		if sys.Tracing() {
			sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Ignored", Remote: from.String(), Stack: "quic",
				Error: "QUIC Initial from an address that is not a remote endpoint: refused"})
		}
		return false
	}
	qr, err := stacks.ListenQUICRendezvous(context.Background(), opts, r.serverTLS, accept)
	if err != nil {
		return fmt.Errorf("listen quic %s: %w", rvAddrString(s.local), err)
	}
	s.qr = qr
	s.local = boundLocal(s.local, qr.Addr())
	return nil
}

// startQUIC: for each pair the roles are those of TLS (tlsClientRole):
// where this side is the client it dials from the pair's endpoint (quic-go
// retransmits the Initial; an attempt without handshake after
// rendezvousQUICAttempt is replaced by a new one, until the rendezvous
// ends); where it is the server the endpoint accepts, and offers a
// connection once its first stream arrives.
func (r *rendezvousActor) startQUIC(ctx actor.Context) error {
	type dial struct {
		s      *rvSocket
		remote netip.AddrPort
	}
	var clients []dial
	var servers []*rvSocket
	var firstErr error
	for _, s := range r.socks {
		if s.qr == nil {
			continue
		}
		serves := false
		for _, remote := range s.remotes {
			client, err := tlsClientRole(rendezvousLocalFor(s.local, remote), remote)
			switch {
			case err != nil:
			case client:
				clients = append(clients, dial{s, remote})
			case r.serverTLS == nil:
				err = errors.New("the QUIC server role (this side's address:port is the higher) needs a local identity")
			default:
				serves = true
			}
			if err != nil {
				r.record(rvPairKey{s.local, remote}, err)
				firstErr = cmp.Or(firstErr, err)
			}
		}
		if serves {
			servers = append(servers, s)
		}
	}
	if len(clients) == 0 && len(servers) == 0 {
		return fmt.Errorf("quic: no usable role with any remote: %w", firstErr)
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	for _, s := range r.socks {
		if s.qr != nil && r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Listening", Local: s.qr.Addr().String(), Stack: r.stack.Name()})
		}
	}
	for _, s := range servers {
		r.wg.Go(func() { r.quicAcceptLoop(root, self, s) })
	}
	for _, d := range clients {
		r.wg.Go(func() { r.quicDialLoop(root, self, d.s, d.remote) })
	}
	return nil
}

// quicDialLoop dials remote from s's endpoint until a handshake completes,
// fails for good, or the rendezvous ends.
func (r *rendezvousActor) quicDialLoop(root *actor.RootContext, self *actor.PID, s *rvSocket, remote netip.AddrPort) {
	pair := rvPairKey{s.local, remote}
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(r.gctx, rendezvousQUICAttempt(n))
		t, err := s.qr.Dial(actx, remote)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			r.offer(root, self, t, pair, RendezvousConnected)
			return
		}
		if r.gctx.Err() != nil {
			return
		}
		if timedOut {
			root.Send(self, &rvRetry{pair: pair, err: err})
			continue
		}
		root.Send(self, &rvAttemptEnded{pair: pair, err: err})
		return
	}
}

// quicAcceptLoop accepts the connections from the remotes on s's endpoint
// (it refused the others); each is offered once its first stream arrives.
func (r *rendezvousActor) quicAcceptLoop(root *actor.RootContext, self *actor.PID, s *rvSocket) {
	for {
		c, err := s.qr.AcceptConn(r.gctx)
		if err != nil {
			if r.gctx.Err() == nil {
				root.Send(self, &rvListenFailed{local: s.local, err: err})
			}
			return
		}
		r.wg.Go(func() {
			t, err := c.FirstStream(r.gctx)
			if err == nil {
				ra, _ := stacks.AddrPortOf(t.RemoteAddr())
				r.offer(root, self, t, rvPairKey{s.local, unmapAddrPort(ra)}, RendezvousAccepted)
			}
		})
	}
}

// rendezvousLocalFor is the local address a packet to remote leaves from:
// local's, or, when that is unspecified, the one the routing table picks
// (a connected UDP socket's, no packet sent), with local's port.
func rendezvousLocalFor(local, remote netip.AddrPort) netip.AddrPort {
	a := local.Addr()
	if !a.IsValid() || a.IsUnspecified() {
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote)); err == nil {
			if ap, ok := stacks.AddrPortOf(c.LocalAddr()); ok {
				a = ap.Addr()
			}
			_ = c.Close()
		}
	}
	return netip.AddrPortFrom(a.Unmap(), local.Port())
}

// bindUDP binds s's socket on its address and port.
func (r *rendezvousActor) bindUDP(s *rvSocket) error {
	opts := r.cfg.StackOptions
	opts.Local, opts.Interface = s.local, s.iface
	sock, err := stacks.BindRendezvousSocket(context.Background(), r.stack.Name(), opts)
	if err != nil {
		return fmt.Errorf("bind %s %s: %w", r.stack.Name(), rvAddrString(s.local), err)
	}
	s.udp = sock
	s.local = boundLocal(s.local, sock.LocalAddr())
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Listening", Local: sock.LocalAddr().String(), Stack: r.stack.Name()})
	}
	return nil
}

// startUDP starts a connectivity check (RFC 9622 §7.3, in the manner of
// ICE, RFC 8445 §7.2) on every pair: a STUN Binding request from the
// pair's socket to its remote, sent again after rendezvousCheckWait until
// the rendezvous ends. A reader goroutine per socket posts every datagram
// to the actor (datagram).
func (r *rendezvousActor) startUDP(ctx actor.Context) {
	root, self := ctx.ActorSystem().Root, ctx.Self()
	for _, s := range r.socks {
		if s.udp == nil {
			continue
		}
		sock, idx := s.udp, s.idx
		r.wg.Go(func() { udpRendezvousReader(root, self, idx, sock) })
	}
	for _, s := range r.socks {
		if s.udp == nil {
			continue
		}
		for _, remote := range s.remotes {
			pair := rvPairKey{s.local, remote}
			c := &rvCheck{sock: s.idx, tx: stacks.NewSTUNTransactionID()}
			r.checks[pair] = c
			r.sendCheck(pair, c)
			r.armCheck(ctx, pair, c, 1)
		}
	}
}

// udpRendezvousReader posts every datagram of sock (socks[idx]) to the
// actor, and rvReaderEnded once its read deadline passed or sock was
// closed.
func udpRendezvousReader(root *actor.RootContext, self *actor.PID, idx int, sock *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				root.Send(self, &rvReaderEnded{sock: idx})
				return
			}
			continue // an ICMP error reported on the socket: nothing to do
		}
		root.Send(self, &rvDatagram{sock: idx, from: unmapAddrPort(from), b: bytes.Clone(buf[:n])})
	}
}

// sendCheck sends the Binding request of c on pair: its connectivity
// check, or its nomination (USE-CANDIDATE) once c is nominating.
func (r *rendezvousActor) sendCheck(pair rvPairKey, c *rvCheck) {
	c.sent++
	tx, what, ev := c.tx, "connectivity check", "CheckSent"
	if c.nominating {
		tx, what, ev = c.ntx, "nomination", "Nominated"
	}
	_, err := r.socks[c.sock].udp.WriteToUDPAddrPort(encodeCheck(tx, r.tie, c.nominating), pair.Remote)
	if err == nil {
		err = fmt.Errorf("%s, %d Binding requests: %w", what, c.sent, stacks.ErrSTUNTimeout)
	}
	r.record(pair, err)
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: ev, Local: rvAddrString(pair.Local), Remote: pair.Remote.String(), Stack: r.stack.Name()})
	}
}

// armCheck schedules the retransmission after the n-th wait.
func (r *rendezvousActor) armCheck(ctx actor.Context, pair rvPairKey, c *rvCheck, n int) {
	root, self, nom := ctx.ActorSystem().Root, ctx.Self(), c.nominating
	c.timer = time.AfterFunc(rendezvousCheckWait(n), func() { root.Send(self, &rvCheckTick{pair: pair, n: n, nom: nom}) })
}

// datagram handles a datagram of a UDP rendezvous socket, on the pair
// (that socket's local candidate, the sender):
//
//   - from an address that is not a remote paired with the socket:
//     ignored (traced);
//   - a Binding request: answered with a Binding success response
//     (XOR-MAPPED-ADDRESS: the sender's address and port) and, before the
//     pair's check succeeded, answered with this side's own request at
//     once (a triggered check), so that the peer's answer comes within a
//     round trip. A nomination (USE-CANDIDATE) from a controlling peer
//     (its tie-breaker is the larger) selects the pair;
//   - a valid Binding success response to this side's check on the pair:
//     the check succeeded, the pair works both ways (checkSucceeded);
//   - a valid Binding success response to this side's nomination: the
//     pair is selected;
//   - other STUN messages: dropped;
//   - anything else from a remote: kept (at most rendezvousEarlyMax per
//     pair) and, if that pair is selected, read first by the connection.
//
// Once a pair is selected the socket's reader is stopped and the socket
// handed over (handOver). A request alone does not complete the
// rendezvous: it proves only the path from the peer.
func (r *rendezvousActor) datagram(ctx actor.Context, m *rvDatagram) {
	s := r.socks[m.sock]
	if r.ended || r.adopted || s.udp == nil {
		return
	}
	if m.sock == r.stunSock && r.stunAnswered(m.from, m.b) {
		return
	}
	pair := rvPairKey{s.local, m.from}
	c, known := r.checks[pair]
	if !known {
		if r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Ignored", Local: rvAddrString(s.local), Remote: m.from.String(), Stack: r.stack.Name(),
				Error: "datagram from an address that is not a remote endpoint"})
		}
		return
	}
	if !stacks.IsSTUN(m.b) {
		if len(r.early[pair]) < rendezvousEarlyMax {
			r.early[pair] = append(r.early[pair], m.b)
		}
		return
	}
	if tie, ok, _ := iceAttrs(m.b); ok && tie == r.tie {
		// this side's own check (or answer), come back to its socket: the
		// pair's remote is the local candidate itself
		r.selfPair(pair, c)
		return
	}
	if tx, err := stacks.DecodeSTUNBindingRequest(m.b); err == nil {
		_, _ = s.udp.WriteToUDPAddrPort(encodeCheckAnswer(tx, m.from, r.tie), m.from)
		if r.sys.Tracing() {
			r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "CheckAnswered", Local: rvAddrString(s.local), Remote: m.from.String(), Stack: r.stack.Name()})
		}
		if r.winner.Remote.IsValid() {
			return
		}
		if tie, ok, nominate := iceAttrs(m.b); nominate && ok && tie > r.tie {
			r.selectPair(pair, c, "NominationReceived")
			return
		}
		if !c.valid {
			r.sendCheck(pair, c)
		}
		return
	}
	if r.winner.Remote.IsValid() {
		return
	}
	if c.nominating {
		if _, err := stacks.DecodeSTUNBindingResponse(m.b, c.ntx, nil); err == nil {
			r.selectPair(pair, c, "NominationSucceeded")
			return
		}
	}
	mapped, err := stacks.DecodeSTUNBindingResponse(m.b, c.tx, nil)
	if err != nil {
		return // another transaction, an error response or malformed
	}
	r.checkSucceeded(ctx, pair, c, mapped, m.b)
}

// errRendezvousItself is the attempt error of a pair whose remote is the
// local candidate itself (a TCP connection, or a UDP check, that reached
// its own socket): such a pair is given up.
var errRendezvousItself = errors.New("connection to itself: the remote is this side's own local candidate")

// selfPair gives up pair, whose check came back to its own socket (the
// request carried this side's tie-breaker): it is not answered, and its
// check stops.
func (r *rendezvousActor) selfPair(pair rvPairKey, c *rvCheck) {
	if c.failed {
		return
	}
	c.failed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	r.record(pair, fmt.Errorf("%w (%s)", errRendezvousItself, rvAddrString(pair.Remote)))
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "Ignored", Local: rvAddrString(pair.Local), Remote: pair.Remote.String(), Stack: r.stack.Name(),
			Error: errRendezvousItself.Error()})
	}
}

// checkSucceeded: this side's check on pair got a valid success response
// (b), the pair works both ways. The response's ICE-CONTROLLING says the
// peer's tie-breaker: with the larger one, this side is controlling and
// nominates the pair, unless it nominated another already; with the
// smaller one, it waits for the peer's nomination. A response without
// tie-breaker comes from a peer that does not nominate (or from the peer's
// connection, the pair being selected there already): the pair is
// selected, as the peer selects the first pair whose check succeeded. (A
// response with this side's own tie-breaker is its own, from a pair to
// itself: datagram gives that pair up before.)
func (r *rendezvousActor) checkSucceeded(ctx actor.Context, pair rvPairKey, c *rvCheck, mapped netip.AddrPort, b []byte) {
	if c.valid {
		return
	}
	c.valid = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "CheckSucceeded", Remote: pair.Remote.String(), Local: mapped.String(), Stack: r.stack.Name()})
	}
	tie, ok, _ := iceAttrs(b)
	switch {
	case !ok || tie == r.tie:
		r.selectPair(pair, c, "")
	case tie < r.tie: // controlling
		if r.nominating {
			r.record(pair, fmt.Errorf("connectivity check succeeded; another pair was nominated first: %w", ErrRendezvousNotNominated))
			return
		}
		r.nominate(ctx, pair, c)
	default: // controlled
		r.record(pair, ErrRendezvousNotNominated)
	}
}

// nominate starts nominating pair, whose check succeeded (this side
// controls): its nomination is sent and retransmitted as a check is.
func (r *rendezvousActor) nominate(ctx actor.Context, pair rvPairKey, c *rvCheck) {
	r.nominating, c.nominating, c.sent = true, true, 0
	c.ntx = stacks.NewSTUNTransactionID()
	r.sendCheck(pair, c) // the nomination
	r.armCheck(ctx, pair, c, 1)
}

// nominationFailed: the nomination of pair went unanswered
// rendezvousNominationMax times (the pair broke after its check
// succeeded). The pair is given up, and the next pair whose check
// succeeded, in priority order, is nominated; without one, the next check
// to succeed is (RFC 8445 §8.1.1 leaves the choice to the controlling
// agent).
func (r *rendezvousActor) nominationFailed(ctx actor.Context, pair rvPairKey, c *rvCheck) {
	c.nominating, c.valid, c.failed = false, false, true
	r.nominating = false
	r.record(pair, fmt.Errorf("nomination, %d Binding requests unanswered: %w", c.sent, stacks.ErrSTUNTimeout))
	for _, s := range r.socks {
		for _, remote := range s.remotes {
			next := rvPairKey{s.local, remote}
			if nc := r.checks[next]; nc != nil && nc.valid && !nc.failed {
				r.nominate(ctx, next, nc)
				return
			}
		}
	}
}

// selectPair makes pair the winner: every check stops, and so does the
// reader of the pair's socket (its rvReaderEnded hands the socket over).
func (r *rendezvousActor) selectPair(pair rvPairKey, c *rvCheck, ev string) {
	r.winner = pair
	if ev != "" && r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: ev, Local: rvAddrString(pair.Local), Remote: pair.Remote.String(), Stack: r.stack.Name()})
	}
	r.stopChecks()
	_ = r.socks[c.sock].udp.SetReadDeadline(time.Unix(1, 0)) // the reader stops: rvReaderEnded follows its last datagram
}

// handOver makes the selected pair's socket (socks[idx], whose reader
// ended), connected to the pair's remote, the rendezvous connection's
// Transport, with the pair's early datagrams.
func (r *rendezvousActor) handOver(ctx actor.Context, idx int) {
	if r.ended || r.adopted || !r.winner.Remote.IsValid() {
		return
	}
	c := r.checks[r.winner]
	s := r.socks[idx]
	if c == nil || c.sock != idx || s.udp == nil {
		return // another socket's reader
	}
	sock := s.udp
	s.udp = nil
	opts := r.cfg.StackOptions
	opts.Local, opts.Interface = s.local, s.iface
	t, err := stacks.ConnectRendezvousSocket(sock, r.stack.Name(), r.winner.Remote, opts, r.early[r.winner])
	if err != nil {
		r.fail(ctx, &EstablishmentFailure{Err: err, Attempts: r.attemptList()})
		return
	}
	r.win(ctx, t, RendezvousChecked)
}

func (r *rendezvousActor) stopChecks() {
	for _, c := range r.checks {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// tlsClientRole decides the TLS roles of a rendezvous connection: the side
// whose local address:port is lower (netip.AddrPort.Compare, addresses
// unmapped) is the client. Both ends see the same pair mirrored, so
// exactly one is the client; a connection to itself has no roles.
func tlsClientRole(local, remote netip.AddrPort) (bool, error) {
	l := netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	p := netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	switch l.Compare(p) {
	case -1:
		return true, nil
	case 1:
		return false, nil
	}
	return false, fmt.Errorf("connection to itself (%s): no TLS roles", l)
}

// win makes t the rendezvous connection: every other attempt ends, and the
// root makes a connection of it: its group answers ConnectionStarted (the
// connection is watched from then on) and its Ready comes back as
// connectionReceived. The establishment timer goes on until then.
func (r *rendezvousActor) win(ctx actor.Context, t stacks.Transport, how string) {
	r.adopted, r.how, r.handed = true, how, t
	r.teardown()
	a := &adoptConnection{cfg: r.cfg, t: t, stack: r.stack.Name(), listener: ctx.Self(), rendezvous: true}
	ctx.Send(ctx.Parent(), a)
}

// teardown stops every attempt and closes every listener and socket; the handoffs not claimed
// yet are closed. The establishment timer goes on (win: it bounds the
// winner's connection until Ready); stop stops it.
func (r *rendezvousActor) teardown() {
	if r.cancel != nil {
		r.cancel()
	}
	r.gate.close()
	r.stopChecks()
	if r.stunTimer != nil {
		r.stunTimer.Stop()
	}
	for _, s := range r.socks {
		if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.udp != nil {
			_ = s.udp.Close()
			s.udp = nil
		}
		if s.qr != nil {
			_ = s.qr.Close() // the winner's connection keeps its endpoint open
		}
	}
}

// fail ends the rendezvous with err (the Result gets it once the actor has
// stopped). A winner handed to the root whose connection is not Ready yet
// is aborted (at once when its connection is known, else when the group's
// ConnectionStarted comes), and the actor stops once that connection has.
// Once the connection was Ready (connectionReceived) nothing fails any
// more.
func (r *rendezvousActor) fail(ctx actor.Context, err error) {
	if r.won != nil {
		return
	}
	r.ended, r.err = true, err
	if r.sys.Tracing() {
		r.sys.trace(&messages.TraceRecord{Kind: "rendezvous", Event: "EstablishmentError", Error: err.Error()})
	}
	r.teardown()
	if r.started {
		// were the connection Ready meanwhile, its connectionReceived comes
		// to nothing, and the abort follows it in its mailbox
		r.abortWinner(ctx)
	}
	r.maybeStop(ctx)
}

// abortWinner aborts the winner's connection (once).
func (r *rendezvousActor) abortWinner(ctx actor.Context) {
	if r.aborted || r.connGone || r.conn == nil {
		return
	}
	r.aborted = true
	ctx.Send(r.conn, &messages.AbortConnection{Err: fmt.Errorf("rendezvous ended: %w", r.err)})
}

// maybeStop stops the actor once the outcome is known and nothing is on
// its way: without a winner, once it failed; with one, once its group
// answered and either its connection was Ready (connectionReceived) or,
// the rendezvous having failed, it has stopped (its socket closed).
func (r *rendezvousActor) maybeStop(ctx actor.Context) {
	switch {
	case !r.adopted:
		if r.ended {
			ctx.Stop(ctx.Self())
		}
	case !r.started: // the group's answer is on its way
	case r.won != nil:
		if !r.connGone {
			ctx.Unwatch(r.conn) // the connection lives on: no Terminated to a stopped actor
		}
		ctx.Stop(ctx.Self())
	case r.ended && r.connGone:
		ctx.Stop(ctx.Self())
	}
}

// record sets the error of pair's attempt, named by the pair.
func (r *rendezvousActor) record(pair rvPairKey, err error) {
	if a, ok := r.attempts[pair]; ok {
		a.Err = err
		return
	}
	r.attempts[pair] = &AttemptError{Endpoint: pair.String(), Stack: r.stack.Name(), Err: err}
	r.order = append(r.order, pair)
}

// recordRunning records err against every pair of a bound local
// candidate that has no outcome yet (a connect or QUIC dial still
// running, a QUIC server side that saw no connection): the attempts list
// names every pair tried.
func (r *rendezvousActor) recordRunning(err error) {
	for _, s := range r.socks {
		for _, remote := range s.remotes {
			if pair := (rvPairKey{s.local, remote}); r.attempts[pair] == nil {
				r.record(pair, err)
			}
		}
	}
}

func (r *rendezvousActor) attemptList() []AttemptError {
	out := make([]AttemptError, 0, len(r.order))
	for _, k := range r.order {
		out = append(out, *r.attempts[k])
	}
	return out
}

// stunBinding learns the server-reflexive address of local from srv: from
// the server's first address of local's family when local has an address
// (0.0.0.0 and :: included: the socket binds there), else from its first
// address.
func stunBinding(ctx context.Context, cfg *messages.ConnectionConfig, srv StunServer, local netip.AddrPort) (netip.AddrPort, error) {
	server, err := stunServerAddr(ctx, cfg, srv, local)
	if err != nil {
		return netip.AddrPort{}, err
	}
	c := srv.Client
	c.Credentials = srv.Credentials
	return c.BindingFrom(ctx, local, server)
}

// stunServerAddr resolves srv's address for local (stunBinding).
func stunServerAddr(ctx context.Context, cfg *messages.ConnectionConfig, srv StunServer, local netip.AddrPort) (netip.AddrPort, error) {
	addrs, err := cfg.Resolver.Resolve(ctx, srv.Host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	server := netip.AddrPortFrom(addrs[0], srv.Port)
	if local.Addr().IsValid() { // an unspecified address (0.0.0.0, ::) has its family too
		for _, a := range addrs { // the first server address of the local family
			if a.Unmap().Is4() == local.Addr().Unmap().Is4() {
				server = netip.AddrPortFrom(a, srv.Port)
				break
			}
		}
	}
	return server, nil
}

// stunClient is the first local endpoint's STUN client, with its
// credentials and the defaults filled in.
func (r *rendezvousActor) stunClient() stacks.STUNClient {
	c := r.stun[0].Client
	c.Credentials = r.stun[0].Credentials
	return c.Normalized()
}

// stunSend sends (again) the STUN Binding request of a UDP or QUIC
// rendezvous from its socket (socks[stunSock]; a QUIC endpoint's through
// its quic.Transport), once the server's address is known, and arms its
// retransmission as STUNClient.Binding does (STUNClient.Wait).
func (r *rendezvousActor) stunSend(ctx actor.Context) {
	if r.stunDone || !r.stunServer.IsValid() || r.ended || r.adopted {
		return
	}
	c := r.stunClient()
	if r.stunSent == 0 {
		r.stunTx = stacks.NewSTUNTransactionID()
	}
	req, server := stacks.EncodeSTUNBindingRequest(r.stunTx, c.Credentials), unmapAddrPort(r.stunServer)
	var err error
	switch s := r.socks[r.stunSock]; {
	case s.udp != nil:
		_, err = s.udp.WriteToUDPAddrPort(req, server)
	case s.qr != nil:
		err = s.qr.WriteTo(req, server)
	default:
		return // handed over
	}
	if err != nil {
		r.stunResult(netip.AddrPort{}, fmt.Errorf("stun request to %s: %w", r.stunServer, err))
		return
	}
	r.stunSent++
	root, self, n := ctx.ActorSystem().Root, ctx.Self(), r.stunSent
	r.stunTimer = time.AfterFunc(c.Wait(n), func() { root.Send(self, &rvStunTick{n: n}) })
}

// stunAnswered reports whether b, from from on the STUN socket, answers
// the STUN Binding transaction (a success or an error response); it ends
// the transaction then (stunResult).
func (r *rendezvousActor) stunAnswered(from netip.AddrPort, b []byte) bool {
	if r.stunSent == 0 || r.stunDone || from != unmapAddrPort(r.stunServer) || !stacks.IsSTUN(b) {
		return false
	}
	a, err := stacks.DecodeSTUNBindingResponse(b, r.stunTx, r.stunClient().Credentials)
	var se *stacks.STUNError
	if err != nil && !errors.As(err, &se) {
		return false // malformed, or another transaction: not the answer
	}
	r.stunResult(a, err)
	return true
}

// stunResult ends the STUN transaction of a rendezvous: the
// server-reflexive address, or why not, is traced.
func (r *rendezvousActor) stunResult(a netip.AddrPort, err error) {
	if r.stunDone {
		return
	}
	r.stunDone = true
	if r.stunTimer != nil {
		r.stunTimer.Stop()
	}
	if r.stunStop != nil {
		r.stunStop()
	}
	if !r.sys.Tracing() {
		return
	}
	rec := &messages.TraceRecord{Kind: "rendezvous", Event: "ServerReflexive", Local: a.String()}
	if err != nil {
		rec.Local, rec.Error = "", err.Error()
	}
	r.sys.trace(rec)
}

// ResolveEndpoints asks the root for a resolve actor (Resolve, RFC 9622
// §7.3). The reply is *ResolveStarted; AwaitResolve to it answers
// *ResolvedEndpoints or the error.
type ResolveEndpoints struct {
	Config *messages.ConnectionConfig // Locals, Remotes and Resolver
	Stun   []StunServer               // by local endpoint index
	// Ctx is the caller's (nil: none): when it ends, the gathering stops
	// and so does the actor, so that a caller that gave up (and may not
	// even have learnt of the actor) leaves nothing behind
	Ctx context.Context
}

// ResolveStarted is the reply to ResolveEndpoints.
type ResolveStarted struct{ PID *actor.PID }

// AwaitResolve asks a resolve actor for its outcome; it stops once it has
// answered (or on CancelResolve).
type AwaitResolve struct{}

// CancelResolve stops a resolve actor; those awaiting it get Err (nil:
// ErrShutdown).
type CancelResolve struct{ Err error }

// LocalCandidate is one concrete local endpoint.
type LocalCandidate struct {
	Addr      netip.AddrPort
	Interface string
	// ServerReflexive: learned from a STUN server (Addr is what the server
	// saw); Base is the local address it was learned from.
	ServerReflexive bool
	Base            netip.AddrPort
}

// RemoteCandidate is one resolved remote endpoint.
type RemoteCandidate struct {
	Addr      netip.AddrPort
	Interface string
	// Protocols names the stacks it is for, when not every stack of the
	// configuration (an SRV target, when the stacks selected look up SRV
	// records under both "_tcp" and "_udp": those of its record's label);
	// nil: every stack
	Protocols []string
}

// ResolvedEndpoints is the outcome of ResolveEndpoints.
type ResolvedEndpoints struct {
	Locals  []LocalCandidate
	Remotes []RemoteCandidate
}

type resolveDone struct {
	res *ResolvedEndpoints
	err error
}

// resolveActor gathers the concrete endpoints in a goroutine it owns and
// answers whoever awaits them; it runs on the default dispatcher (see
// rendezvousActor).
type resolveActor struct {
	m       *ResolveEndpoints
	cancel  context.CancelFunc
	unwatch func() bool // stops the watch of the caller's ctx
	stopErr error       // what the waiters get when stopped before done (CancelResolve)
	wg      sync.WaitGroup
	done    *resolveDone
	waiters []*actor.PID
}

func newResolveProps(m *ResolveEndpoints) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &resolveActor{m: m} },
		actor.WithSupervisor(supervision.Strategy(supervision.Listener)))
}

func (r *resolveActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *ResolveEndpoints:
		ctx.Respond(&ResolveStarted{PID: ctx.Self()})
		base := m.Ctx
		if base == nil {
			base = context.Background()
		}
		gctx, cancel := context.WithCancel(base)
		r.cancel = cancel
		root, self := ctx.ActorSystem().Root, ctx.Self()
		r.unwatch = context.AfterFunc(base, func() { root.Send(self, &CancelResolve{Err: base.Err()}) })
		r.wg.Go(func() {
			res, err := gatherEndpoints(gctx, m.Config, m.Stun, net.Interfaces, interfaceAddrs)
			root.Send(self, &resolveDone{res: res, err: err})
		})
	case *AwaitResolve:
		if r.done == nil {
			r.waiters = append(r.waiters, ctx.Sender())
			return
		}
		r.answer(ctx, ctx.Sender())
		ctx.Stop(ctx.Self())
	case *resolveDone:
		r.done = m
		for _, w := range r.waiters {
			r.answer(ctx, w)
		}
		if len(r.waiters) > 0 {
			ctx.Stop(ctx.Self())
		}
	case *CancelResolve:
		r.stopErr = m.Err
		ctx.Stop(ctx.Self())
	case *messages.ShutdownSystem:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		if r.cancel != nil {
			r.cancel()
		}
		if r.unwatch != nil {
			r.unwatch()
		}
		err := r.stopErr
		if err == nil {
			err = ErrShutdown
		}
		for _, w := range r.waiters {
			if r.done == nil {
				ctx.Send(w, err)
			}
		}
	case *actor.Stopped:
		r.wg.Wait()
	}
}

func (r *resolveActor) answer(ctx actor.Context, to *actor.PID) {
	if r.done.err != nil {
		ctx.Send(to, r.done.err)
		return
	}
	ctx.Send(to, r.done.res)
}

// parseAddr parses an address the facade validated (an invalid one,
// which cannot come from it, is the unspecified IPv6 address).
func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return a
}

// interfaceAddrs returns the addresses of an interface.
func interfaceAddrs(ifi net.Interface) ([]net.Addr, error) { return ifi.Addrs() }

// gatherEndpoints makes the endpoints concrete (RFC 9622 §7.3 Resolve):
// a local endpoint with an IP address stays as it is; a host name becomes
// its addresses; a wildcard, an unspecified address or an interface name
// alone becomes the addresses of the interfaces that are up (of that
// interface, of that family), with the endpoint's port. A local endpoint
// with a STUN server adds a server-reflexive candidate, learned with a
// Binding request from a UDP socket bound to the endpoint's address and
// port (which must not be 0). Remote host names are resolved with the
// configuration's resolver; every address becomes one remote endpoint. A
// host name with a service whose SRV records are looked up (srvProtos,
// for cfg.Stacks) becomes the endpoints derived from them, as for a race
// (srvCandidates).
func gatherEndpoints(ctx context.Context, cfg *messages.ConnectionConfig, stun []StunServer,
	ifaces func() ([]net.Interface, error), addrsOf func(net.Interface) ([]net.Addr, error)) (*ResolvedEndpoints, error) {
	out := &ResolvedEndpoints{}
	for i, l := range cfg.Locals {
		port := uint16(l.Port)
		var bind netip.AddrPort // where the STUN socket binds
		switch {
		case l.IpAddress != "" && !parseAddr(l.IpAddress).IsUnspecified():
			a := parseAddr(l.IpAddress).Unmap()
			if l.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(l.Interface)
			}
			bind = netip.AddrPortFrom(a, port)
			out.Locals = append(out.Locals, LocalCandidate{Addr: bind, Interface: l.Interface})
		case l.HostName != "":
			as, err := cfg.Resolver.Resolve(ctx, l.HostName)
			if err != nil {
				return nil, fmt.Errorf("local endpoint %s: %w", l.HostName, err)
			}
			for _, a := range as {
				out.Locals = append(out.Locals, LocalCandidate{Addr: netip.AddrPortFrom(a, port), Interface: l.Interface})
			}
			bind = netip.AddrPortFrom(as[0], port)
		default:
			only4, only6 := false, false
			if l.IpAddress != "" {
				u := parseAddr(l.IpAddress)
				only4, only6 = u.Is4(), u.Is6() && !u.Is4In6()
				bind = netip.AddrPortFrom(u, port)
			} else {
				bind = netip.AddrPortFrom(netip.Addr{}, port)
			}
			list, err := ifaces()
			if err != nil {
				return nil, fmt.Errorf("local interfaces: %w", err)
			}
			found := false
			for _, ifi := range list {
				if l.Interface != "" && ifi.Name != l.Interface {
					continue
				}
				if ifi.Flags&net.FlagUp == 0 {
					continue
				}
				as, err := addrsOf(ifi)
				if err != nil {
					continue
				}
				for _, na := range as {
					ipn, ok := na.(*net.IPNet)
					if !ok {
						continue
					}
					a, ok := netip.AddrFromSlice(ipn.IP)
					if !ok {
						continue
					}
					a = a.Unmap()
					if (only4 && !a.Is4()) || (only6 && a.Is4()) {
						continue
					}
					name := l.Interface
					if a.Is6() && a.IsLinkLocalUnicast() {
						a, name = a.WithZone(ifi.Name), ifi.Name
					}
					found = true
					out.Locals = append(out.Locals, LocalCandidate{Addr: netip.AddrPortFrom(a, port), Interface: name})
				}
			}
			if !found {
				what := "any interface"
				if l.Interface != "" {
					what = "interface " + l.Interface
				}
				return nil, fmt.Errorf("local endpoint: no address on %s", what)
			}
		}
		if i < len(stun) && stun[i].Host != "" {
			if port == 0 {
				return nil, errors.New("local endpoint with a STUN server: the server-reflexive port is only meaningful for a fixed local port, not 0")
			}
			a, err := stunBinding(ctx, cfg, stun[i], bind)
			if err != nil {
				return nil, fmt.Errorf("stun %s: %w", net.JoinHostPort(stun[i].Host, fmt.Sprint(stun[i].Port)), err)
			}
			out.Locals = append(out.Locals, LocalCandidate{Addr: a, ServerReflexive: true, Base: bind, Interface: l.Interface})
		}
	}
	for _, r := range cfg.Remotes {
		switch {
		case r.Path != "":
			continue // a Unix socket has nothing to resolve
		case r.IpAddress != "":
			a := parseAddr(r.IpAddress).Unmap()
			if r.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(r.Interface)
			}
			out.Remotes = append(out.Remotes, RemoteCandidate{Addr: netip.AddrPortFrom(a, uint16(r.Port)), Interface: r.Interface})
		case r.HostName != "":
			if protos := srvProtos(r, cfg.Stacks); len(protos) > 0 {
				cands, err := srvCandidates(ctx, cfg, r, protos)
				if err != nil {
					return nil, err
				}
				out.Remotes = append(out.Remotes, cands...)
				continue
			}
			as, err := cfg.Resolver.Resolve(ctx, r.HostName)
			if err != nil {
				return nil, err
			}
			for _, a := range as {
				if r.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
					a = a.WithZone(r.Interface)
				}
				out.Remotes = append(out.Remotes, RemoteCandidate{Addr: netip.AddrPortFrom(a, uint16(r.Port)), Interface: r.Interface})
			}
		}
	}
	return out, nil
}
