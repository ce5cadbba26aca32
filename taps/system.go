package taps

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
	"google.golang.org/protobuf/encoding/protojson"
)

// A System is one gotaps runtime: an actor system with one root actor under
// which every listener, connection group and connection lives. Most
// programs use the default System (created on first use); tests and
// embedders create their own and Shut them down. It is safe for concurrent
// use.
type System struct {
	s         *actors.System
	cacheOnce sync.Once
	tlsCache  tls.ClientSessionCache // see sessionCache

	// lns: the listeners whose sockets may not be closed yet (see
	// awaitSockets)
	lnMu sync.Mutex
	lns  []*actors.ListenQueue
	// sockOnce: the first Shutdown waits for the sockets; sockDone is
	// closed when it has (later calls wait for it)
	sockOnce sync.Once
	sockDone chan struct{}
	sockErr  error
}

// trackListener notes a listener for Shutdown, which waits for its
// sockets; the listeners whose sockets are closed are dropped.
func (s *System) trackListener(q *actors.ListenQueue) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	keep := s.lns[:0]
	for _, l := range s.lns {
		select {
		case <-l.SocketsClosed():
		default:
			keep = append(keep, l)
		}
	}
	clear(s.lns[len(keep):])
	s.lns = append(keep, q)
}

// awaitSockets waits until the sockets of every listener of the System
// are closed (at most 10 s: by then every connection was closed or
// aborted, so what is left is at most a QUIC session's linger, 2 s): a
// QUIC listener's UDP socket is closed after the last session it
// accepted has ended. Not bounded by ctx: a Shutdown out of time aborts
// the connections, whose sessions end at once.
func (s *System) awaitSockets() error {
	s.lnMu.Lock()
	lns := append([]*actors.ListenQueue(nil), s.lns...)
	s.lnMu.Unlock()
	limit := time.NewTimer(10 * time.Second)
	defer limit.Stop()
	for _, q := range lns {
		select {
		case <-q.SocketsClosed():
		case <-limit.C:
			return errors.New("listener sockets still open after 10 s")
		}
	}
	return nil
}

// SystemOption configures NewSystem. A nil SystemOption is ignored.
type SystemOption func(*systemConfig)

type systemConfig struct {
	logger  *slog.Logger
	trace   func(*TraceRecord)
	w       io.Writer
	onPanic func(*PanicError)
}

// WithLogger sends gotaps' logs (and the actor runtime's) to l, with
// connection, group and candidate ids as attributes. The default discards
// every log but handler panics (see WithHandlerPanic).
func WithLogger(l *slog.Logger) SystemOption { return func(c *systemConfig) { c.logger = l } }

// WithTraceWriter writes one JSON object per line to w for every state
// change, racing event and message event (the protojson form of the trace
// records; tapscat --trace uses it). Writes are serialized, on gotaps'
// goroutines: a slow w slows the connections that trace. Each line's
// time_unix_nano is taken as it is written, so that the lines are in time
// order (a WithTracer function set too sees the time of the event,
// microseconds earlier). A write error is ignored; a panic of
// w.Write is recovered (the first is logged at Error) and the record
// dropped.
func WithTraceWriter(w io.Writer) SystemOption { return func(c *systemConfig) { c.w = w } }

// WithTracer calls fn for every trace record. fn is called from gotaps'
// goroutines, several at once (unlike WithTraceWriter's writes, calls are
// not serialized: fn must be safe for concurrent use), and must not
// block. A panic of fn is recovered (the first is logged at Error) and
// does not affect the connection or listener that traced.
func WithTracer(fn func(*TraceRecord)) SystemOption { return func(c *systemConfig) { c.trace = fn } }

// WithHandlerPanic calls fn with every panic recovered from an
// application handler: a Connection's or Preconnection's event handlers,
// SendAsync, ReceiveAsync and ConnectionReceived handlers. pe.Value is the
// panic value, pe.Stack the stack, pe.Where names the handler
// ("Closed handler") and pe.ConnectionID is the Connection's ID. A panic
// in a handler that runs while its Connection is alive also ends that
// Connection (its *ConnectionError wraps the same *PanicError); for one
// that runs after the end (Closed, ConnectionError, EstablishmentError, a
// late SendAsync or ReceiveAsync handler) fn is the only report. Panics of
// framers, TLS callbacks and WithResolver lookups are not handler panics:
// they are the errors of their Connection or establishment.
//
// fn is called on the goroutine that ran the handler, after the panic was
// recovered and before that Connection's next event. Calls are serialized
// System-wide (never two at once): fn needs no lock, but one that blocks
// delays every later report and the events of the Connections reporting.
// A panic in fn is logged at Error (as below) and swallowed.
//
// Without WithHandlerPanic (or with a nil fn) each panic is logged at
// slog Error level through the WithLogger logger, or slog.Default() when
// there is none, with the attributes connection, handler, panic and stack.
// Either way it is also a trace record of Kind "panic" (WithTracer,
// WithTraceWriter).
func WithHandlerPanic(fn func(pe *PanicError)) SystemOption {
	return func(c *systemConfig) { c.onPanic = fn }
}

// handlerPanicReport is the System's report of a handler panic
// (WithHandlerPanic): fn or an Error log, serialized; a panic of fn is
// logged and swallowed.
func handlerPanicReport(fn func(*PanicError), logger *slog.Logger) func(*PanicError) {
	var mu sync.Mutex
	return func(pe *PanicError) {
		mu.Lock()
		defer mu.Unlock()
		if fn == nil {
			pe.Log(logger, "gotaps: panic in a handler")
			return
		}
		defer func() {
			if p := recover(); p != nil {
				fpe := &PanicError{Where: "WithHandlerPanic function", Value: p, Stack: debug.Stack(), ConnectionID: pe.ConnectionID}
				fpe.Log(logger, "gotaps: panic in the WithHandlerPanic function")
			}
		}()
		fn(pe)
	}
}

// TraceRecord is one trace event (see WithTracer).
type TraceRecord struct {
	TimeUnixNano int64
	// Kind names what happened (Event gives the RFC 9622 event or step):
	//   - "state": a connection's state change (FromState, ToState; Event
	//     Ready, ConnectionReceived, RendezvousDone, Reestablished (the
	//     Establishing->Established of a re-establishment, see
	//     WithReestablishment; its Established->Establishing has none),
	//     Closed, EstablishmentError, ConnectionError, or none)
	//   - "candidate": a racing attempt (AttemptStarted, AttemptFailed,
	//     AttemptWon, AttemptCancelled; FramerFailed before Ready;
	//     AttemptHeld: under opportunistic security a plain attempt
	//     waits for the secure attempt to its address; AttemptEarly: a
	//     0-RTT attempt's transport is up before its handshake completed,
	//     the first message may go on it as early data, and it wins, or
	//     fails, when its handshake does)
	//   - "sent", "received" (Received, ReceivedPartial, ReceiveError,
	//     PeerEndOfStream), "send_error" (every SendError but an
	//     expiry, also of a send refused by its call: a full send queue,
	//     a connection closing or ended, an invalid message),
	//     "receive_error" (a framer failed), "expired" (Expired, also of
	//     a send whose wait for room in the send queue outlived its
	//     msgLifetime): message events
	//   - "datagram": a QUIC datagram sent or received (besides its
	//     "sent" or "received" record)
	//   - "soft_error" (SoftError), "retransmit"
	//     (ExcessiveRetransmission), "path" (PathChange, Migrating,
	//     Migrated, MigrationFailed)
	//   - "listener": Listening, ConnectionReceived, ConnectionRefused,
	//     ListenClosed, ListenFailed, AcceptRetry (an accept failed for
	//     want of a resource, such as EMFILE: Error; the listener waits and
	//     accepts again), SetupTimeout (an accepted connection's framers
	//     were not ready within its setup bound, see Listener: it was
	//     aborted, never delivered; ConnectionID, Local, Remote), Stopped
	//   - "group": MemberJoined, MemberLeft, MemberRefused,
	//     MemberReestablishing, MemberReestablished, MemberRejoined
	//   - "rendezvous": a Rendezvous's steps (Listening, candidate checks,
	//     RendezvousDone, EstablishmentError, ...)
	//   - "panic": a handler panic (Event names the handler, Error the
	//     panic; see WithHandlerPanic)
	Kind         string
	ConnectionID uint64
	GroupID      uint64
	FromState    string
	ToState      string
	Event        string
	MessageID    uint64
	Bytes        int64
	Error        string
	Candidate    string
	Stack        string
	Local        string
	Remote       string
	OffsetNanos  int64
}

// NewSystem starts a System.
func NewSystem(opts ...SystemOption) *System {
	var c systemConfig
	for _, o := range opts {
		if o != nil { // a nil option is ignored
			o(&c)
		}
	}
	var tracer func(*messages.TraceRecord)
	if c.w != nil || c.trace != nil {
		var mu sync.Mutex
		w, fn := c.w, c.trace
		contained := traceContainer(c.logger)
		base := time.Now()
		tracer = func(r *messages.TraceRecord) {
			if fn != nil {
				contained("WithTracer function", func() { fn(traceFromMessage(r)) })
			}
			if w != nil {
				contained("WithTraceWriter writer", func() {
					mu.Lock()
					defer mu.Unlock()
					// stamped as written: records traced at once on two
					// goroutines are written in the order of their
					// times (base's monotonic clock: never backwards)
					r.TimeUnixNano = base.Add(time.Since(base)).UnixNano()
					b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
					if err != nil {
						return
					}
					_, _ = w.Write(append(b, '\n'))
				})
			}
		}
	}
	return &System{s: actors.NewSystem(actors.Config{Logger: c.logger, Tracer: tracer,
		HandlerPanic: handlerPanicReport(c.onPanic, c.logger)})}
}

var (
	defaultMu  sync.Mutex
	defaultSys *System
)

// DefaultSystem returns the System used when a Preconnection names none
// (NewPreconnection without WithSystem takes it when it is called). It is
// created on first use and lives as long as the process unless it is shut
// down: Shutdown it to release its goroutines and sockets. Once its
// Shutdown has begun, the next call returns a new System, so that
// Preconnections made afterwards work again; those made before keep the
// one that was shut down, and their Initiate, Listen and Rendezvous fail
// with an error unwrapping to ErrSystemShutdown. It is safe for concurrent
// use.
func DefaultSystem() *System {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultSys == nil || defaultSys.s.IsShutdown() {
		defaultSys = NewSystem()
	}
	return defaultSys
}

// Shutdown closes every listener and connection of the System (gracefully
// while ctx allows, then by abort), stops its actors and waits until no
// goroutine of it is left, the Connections' last event handlers (Closed,
// ConnectionError) included: when Shutdown returns they have run and every
// Connection's Done is closed. A handler that calls Shutdown is not waited
// for; handlers still running after 10 s make Shutdown return an error
// saying so. Calls after the first return nil once the first
// has returned; one made while the first is in progress waits for it (or
// returns ctx's error when ctx ends first). When Shutdown returns, every
// socket its Listeners and Connections used is closed, and its port free:
// a QUIC Listener's UDP socket too, which is closed only once the last
// session it accepted has ended (see Listener.Done), those a Listener
// following its interfaces closed while it ran, and a QUIC session's that
// lingers after the graceful close of its last stream (see
// Connection.Done). Shutdown waits for them (at most 10 s, else the first
// call returns an error saying so).
func (s *System) Shutdown(ctx context.Context) error {
	first := false
	s.sockOnce.Do(func() {
		first = true
		s.sockDone = make(chan struct{})
	})
	err := s.s.Shutdown(ctx)
	if first {
		s.sockErr = s.awaitSockets()
		close(s.sockDone)
		return errors.Join(err, s.sockErr)
	}
	if err == nil { // the first call's actor shutdown has ended
		select {
		case <-s.sockDone:
		case <-ctx.Done():
			select {
			case <-s.sockDone: // done as ctx was
			default:
				return ctx.Err()
			}
		}
	}
	return err
}

// traceContainer returns the runner of the tracer function and the trace
// writer: a panic of theirs is swallowed, so that it neither ends the
// actor that traced (a listener, a connection) nor escapes a goroutine of
// gotaps; the first one is logged at Error through logger (slog.Default
// when nil).
func traceContainer(logger *slog.Logger) func(where string, f func()) {
	var logged atomic.Bool
	return func(where string, f func()) {
		if err := supervision.Contain(where, f); err != nil && logged.CompareAndSwap(false, true) {
			err.(*PanicError).Log(logger, "gotaps: panic in tracing (later ones are not logged)")
		}
	}
}

func traceFromMessage(r *messages.TraceRecord) *TraceRecord {
	return &TraceRecord{
		TimeUnixNano: r.TimeUnixNano, Kind: r.Kind, ConnectionID: r.ConnectionId, GroupID: r.GroupId,
		FromState: r.FromState, ToState: r.ToState, Event: r.Event, MessageID: r.MessageId, Bytes: r.Bytes,
		Error: r.Error, Candidate: r.Candidate, Stack: r.Stack, Local: r.Local, Remote: r.Remote, OffsetNanos: r.OffsetNs,
	}
}
