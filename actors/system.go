package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
	cmap "github.com/orcaman/concurrent-map"
)

// Config configures a System.
type Config struct {
	// Logger receives gotaps' and protoactor's logs. Nil discards them.
	Logger *slog.Logger
	// Tracer, when set, gets every trace record (state changes, racing and
	// message events). It is called from actor goroutines and must not
	// block.
	Tracer func(*messages.TraceRecord)
	// HandlerPanic, when set, gets every panic recovered from an
	// application handler (see ReportPanic). Nil: such panics are logged
	// at Error through Logger.
	HandlerPanic func(*supervision.PanicError)
}

// System is one protoactor ActorSystem with gotaps' root actor. It is safe
// for concurrent use.
type System struct {
	AS     *actor.ActorSystem
	Root   *actor.PID
	Logger *slog.Logger
	tracer func(*messages.TraceRecord)
	nextID atomic.Uint64
	down   atomic.Bool
	// ended is closed when the first Shutdown has returned: later calls
	// wait for it
	ended chan struct{}
	// handlers counts the goroutines running the connections' event
	// handlers (serialExec), which Shutdown waits for
	handlers goCount
	// sockets counts the goroutines that close a connection's Done once
	// its transport's socket is released (Link.closeDone), which
	// Shutdown waits for
	sockets goCount
	// raceCache remembers racing winners per remote set (racecache.go).
	raceCache raceCache
	// onPanic is Config.HandlerPanic
	onPanic func(*supervision.PanicError)
	// untraced counts the trace records built with no tracer to take
	// them: none, when every builder checks Tracing first (tests check)
	untraced atomic.Int64
}

// NewSystem starts an actor system and its root actor.
func NewSystem(cfg Config) *System {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protoLogger := logger.With("component", "protoactor")
	as := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoLogger }),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
		actor.WithDeadLetterRequestLogging(false),
	)
	shrinkRegistry(as)
	s := &System{AS: as, Logger: logger, tracer: cfg.Tracer, onPanic: cfg.HandlerPanic, ended: make(chan struct{})}
	as.EventStream.Subscribe(s.deadLetter)
	props := controlProps(func() actor.Actor { return newRootActor(s) },
		actor.WithGuardian(supervision.Guardian()),
		actor.WithSupervisor(supervision.Strategy(supervision.Group)))
	s.Root = as.Root.SpawnPrefix(props, "taps")
	return s
}

// deadLetter releases what a message that reached no actor holds: one
// subscriber for every such message.
func (s *System) deadLetter(evt any) {
	dl, ok := evt.(*actor.DeadLetterEvent)
	if !ok {
		return
	}
	switch m := dl.Message.(type) {
	case *StreamOpened:
		// a stream opened for a requester that is gone (a Clone whose
		// caller gave up, a member re-establishing that ended meanwhile)
		// would keep its QUIC session open
		if m.T != nil {
			_ = m.T.Abort()
		}
	case *peerStream:
		// a peer's stream accepted as its group ended (acceptStreams):
		// on a session this side dialed, nobody takes it
		if m.spec.passive != nil && m.spec.listener == nil {
			refuseStream(m.spec.passive)
		} else if m.spec.passive != nil {
			s.AS.Root.Send(s.Root, &strayStream{spec: m.spec}) // quic_stray.go
		}
	case *strayStream:
		_ = m.spec.passive.Abort() // the root has ended
	case *CloneConnection:
		// a Clone's stream for a group that has ended: no member takes it
		if m.Stream != nil && m.Stream.T != nil {
			_ = m.Stream.T.Abort()
		}
	case *connectionReceived:
		// a connection Ready after its listener stopped (listener.go)
		if m.started.Conn != nil {
			s.AS.Root.Send(m.started.Conn, &messages.AbortConnection{Err: errListenerStopped})
		}
	}
}

// controlDispatcher runs the control-plane actors (root, groups,
// listeners, preconnections, racers, candidates) as connection actors run
// (datapath.go): on the goroutine that posts to an idle actor, which
// drains its mailbox in order while later posts only queue. Establishing a
// connection therefore wakes no goroutine between the Initiate call and
// the dial, nor between the dial's end and Ready: each hop is a function
// call, not a goroutine start (about 2 µs each with protoactor's default
// dispatcher, most of it growing the new goroutine's stack).
//
// What this asks of these actors: no handler blocks, and none waits for
// a goroutine that may be the one running it. Their goroutines (dialing,
// resolving, accepting) hand their results over through a Handoff or an
// atomic slot, so that the actor never waits for them (or, for accept
// loops, waits only while they are blocked in Accept); see racer.go,
// preconnection.go and listener.go.
var controlDispatcher = actor.NewSynchronizedDispatcher(300)

// growStack grows the calling goroutine's stack to 16 KiB while it is
// still shallow, and returns. A goroutine that runs a chain of inline
// actors (a dial goroutine runs the candidate, the racer, the
// preconnection, the connection and its framer up to Ready) starts with a
// small stack; grown in the middle of that chain, every frame is copied
// and adjusted, twice (measured: 10 µs of the establishment). Grown first,
// it costs one copy of one frame (about 1 µs); on a stack already that
// large it costs the clearing of the frame (about 0.2 µs). Only for
// short-lived goroutines, or right before one ends: an idle one would keep
// the 16 KiB.
//
// The frame must be one the compiler cannot fold away (an array it can see
// the whole use of is removed, and the function returns a constant): its
// address goes to a function the compiler does not look into.
//
//go:noinline
func growStack() {
	var b stackFrame // the frame: with the goroutine's start, 16 KiB
	touchFrame(&b)
}

type stackFrame [12 << 10]byte

// GrowStack is growStack for the facade's calls that run a cascade of
// inline actors on the application's goroutine (Close, Abort: the
// connection, its framers and the close up to the FIN).
func GrowStack() { growStack() }

//go:noinline
func touchFrame(b *stackFrame) { b[len(b)-1] = 1 }

// controlProps are the Props of a control-plane actor: controlDispatcher
// and the inline mailbox (mailbox.go).
func controlProps(producer actor.Producer, opts ...actor.PropsOption) *actor.Props {
	opts = append(opts, actor.WithDispatcher(controlDispatcher), actor.WithMailbox(inlineMailboxProducer))
	return actor.PropsFromProducer(producer, opts...)
}

// registryBuckets is how many concurrent maps (of 32 shards each) the
// process registry of a System has. protoactor makes 1024, that is 32768
// Go maps: each keeps the slots of its first entries once it has held any
// (Go maps never shrink), so a System that has spawned a few hundred
// thousand actors over its life held about 9 MiB for entries long gone,
// and every new System paid 2.5 MB for the empty maps. 32 buckets (1024
// shards) are plenty for a process with two cores or two hundred: a shard
// is locked only for one map operation.
const registryBuckets = 32

// shrinkRegistry replaces the process registry's maps by registryBuckets
// of them, keeping what is registered already (the event stream and the
// dead-letter process). It runs before anything else uses the system.
func shrinkRegistry(as *actor.ActorSystem) {
	old := as.ProcessRegistry.LocalPIDs.LocalPIDs
	maps := make([]cmap.ConcurrentMap, registryBuckets)
	for i := range maps {
		maps[i] = cmap.New()
	}
	small := &actor.SliceMap{LocalPIDs: maps}
	for _, m := range old {
		m.IterCb(func(id string, p any) { small.GetBucket(id).Set(id, p) })
	}
	as.ProcessRegistry.LocalPIDs = small
}

// NewID returns a fresh connection/group/listener id.
func (s *System) NewID() uint64 { return s.nextID.Add(1) }

// Tracing reports whether a tracer is set.
func (s *System) Tracing() bool { return s.tracer != nil }

// trace gives r to the tracer. Its callers build r only when Tracing():
// a record built for nobody is counted (untraced), for the tests.
func (s *System) trace(r *messages.TraceRecord) {
	if s.tracer == nil {
		s.untraced.Add(1)
		return
	}
	if r.TimeUnixNano == 0 {
		r.TimeUnixNano = time.Now().UnixNano()
	}
	s.tracer(r)
}

// ReportPanic reports a panic recovered from an application handler: a
// trace record of kind "panic", then Config.HandlerPanic (or an Error log
// when none is set). It is called on the goroutine that ran the handler,
// whether or not the panic also ends its connection.
func (s *System) ReportPanic(pe *supervision.PanicError) { s.reportPanic(pe, 0) }

// ReportPanicOf is ReportPanic for a handler of the connection of link
// (pe.ConnectionID): its trace record names the connection's group too.
func (s *System) ReportPanicOf(pe *supervision.PanicError, link *Link) {
	var group uint64
	if link != nil {
		group = linkGroup(link)
	}
	s.reportPanic(pe, group)
}

// linkGroup is the id of the group of link's connection, for its trace
// records (0 before its actor has started).
func linkGroup(l *Link) uint64 {
	if spec := l.panicTo.Load(); spec != nil {
		return spec.groupID
	}
	return 0
}

func (s *System) reportPanic(pe *supervision.PanicError, group uint64) {
	if s.Tracing() {
		s.trace(&messages.TraceRecord{Kind: "panic", ConnectionId: pe.ConnectionID, GroupId: group, Event: pe.Where, Error: pe.Error()})
	}
	if s.onPanic != nil {
		s.onPanic(pe)
		return
	}
	pe.Log(s.Logger, "panic in a handler")
}

// ErrShutdown is returned for requests made after Shutdown began.
var ErrShutdown = errors.New("taps system is shut down")

// Shutdown closes every listener and connection the system owns (gracefully
// while ctx allows, then by abort), stops the root actor and waits for it.
// A call made while another is in progress waits (ctx-bounded) for it to
// end, then returns nil.
func (s *System) Shutdown(ctx context.Context) error {
	if !s.down.CompareAndSwap(false, true) {
		select {
		case <-s.ended:
			return nil
		case <-ctx.Done():
		}
		select {
		case <-s.ended: // ended as ctx did
			return nil
		default:
			return ctx.Err()
		}
	}
	defer close(s.ended)
	_, err := Ask(ctx, s, s.Root, &messages.ShutdownSystem{})
	if err != nil {
		// out of time: abort whatever is left
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = Ask(actx, s, s.Root, &messages.ShutdownSystem{Abort: true})
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := StopAndWait(sctx, s, s.Root)
	// the handlers of the connections' last events run on goroutines of
	// their own: wait for them too (but for the one calling Shutdown)
	self := 0
	if inHandler() {
		self = 1
	}
	if herr := s.handlers.wait(sctx, self); herr != nil {
		serr = errors.Join(serr, fmt.Errorf("event handlers still running: %w", herr))
	}
	// the connections' sockets still held (a QUIC session's linger, at
	// most 2 s): every Connection's Done is closed when Shutdown returns
	if werr := s.sockets.wait(sctx, 0); werr != nil {
		serr = errors.Join(serr, fmt.Errorf("connection sockets still open: %w", werr))
	}
	s.AS.Shutdown()
	return errors.Join(err, serr)
}

// goCount counts goroutines that come and go; wait returns once no more
// than a given number run.
type goCount struct {
	mu   sync.Mutex
	n    int
	less chan struct{} // closed at the next done
}

func (g *goCount) add() {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
}

func (g *goCount) done() {
	g.mu.Lock()
	g.n--
	if g.less != nil {
		close(g.less)
		g.less = nil
	}
	g.mu.Unlock()
}

// wait returns nil once at most max goroutines run, or ctx's error.
func (g *goCount) wait(ctx context.Context, max int) error {
	for {
		g.mu.Lock()
		if g.n <= max {
			g.mu.Unlock()
			return nil
		}
		if g.less == nil {
			g.less = make(chan struct{})
		}
		less := g.less
		g.mu.Unlock()
		select {
		case <-less:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// inHandler reports whether the caller runs on a handler goroutine
// (serialExec.loop): a handler that shuts its System down must not wait
// for itself.
func inHandler() bool {
	var pcs [64]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, ".(*serialExec).loop") {
			return true
		}
		if !more {
			return false
		}
	}
}

// IsShutdown reports whether Shutdown was called.
func (s *System) IsShutdown() bool { return s.down.Load() }

// ActorCount is the number of processes registered in the actor system
// (actors, and reply processes of calls in progress). Tests use it to
// check that nothing is left behind.
func (s *System) ActorCount() int {
	n := 0
	for _, m := range s.AS.ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}
