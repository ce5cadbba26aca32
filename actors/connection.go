package actors

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// connSpec is everything a connection actor starts from: its first
// message (the connection actors share one Props, connProps).
type connSpec struct {
	sys     *System
	id      uint64
	groupID uint64
	group   *actor.PID
	cfg     *messages.ConnectionConfig
	link    *Link
	first   *messages.SendMessage
	// deadline is Initiate's ctx deadline in Unix nanoseconds (0: none;
	// 8 bytes, not a time.Time: this struct's size class holds)
	deadline int64
	passive  stacks.Transport // set for accepted connections
	// rendezvous: the passive transport came from a rendezvous (its
	// establishment is RendezvousDone, not ConnectionReceived)
	rendezvous bool
	// ready is an already established transport of an initiated
	// connection: a stream a Clone opened on a multistreaming stack.
	ready stacks.Transport
	// acceptStreams: this accepted connection is the first stream of a
	// multistreaming session; streams the peer opens join its group.
	acceptStreams bool
	// groupReceived: a peer's stream that the group's ConnectionReceived
	// handler takes (SetReceivedHandler): Ready, the connection reports
	// to its group (receivedMember) instead of a listener
	groupReceived bool
	// failed are the candidates ("stack endpoint") a framer failed before
	// Ready; framerErr is the last such failure.
	failed    map[string]bool
	framerErr error
	stack     string
	listener  *actor.PID
	// listenGate is the listener's: Ready, the connection reports there
	// before it sends received (listener.go; nil for a rendezvous)
	listenGate *acceptGate
	// acceptSlot: the listener's accept goroutine counted this connection
	// held for the application (acceptGate.held); the connection hands the
	// slot on with its connectionReceived, or releases it if it ends
	// before Ready
	acceptSlot bool
	// name is the actor's name when made with the spec (else idName);
	// received, the first message to listener, when made with it
	name     string
	received *connectionReceived
	self     *actor.PID // the connection actor (set when it starts)
}

// releaseSlot releases the listener's slot of a connection that ends
// before Ready (its listener never receives it).
func (s *connSpec) releaseSlot() {
	if s.acceptSlot {
		s.acceptSlot = false
		if s.self != nil {
			s.listenGate.setupEnded(s.self)
		}
		s.listenGate.release()
	}
}

// handlerPanicked tells the connection actor that one of its Link's event
// handlers panicked: it aborts the connection with the error.
func (s *connSpec) handlerPanicked(err error) {
	s.sys.AS.Root.Send(s.self, &messages.AbortConnection{Err: err})
}

// Errors a connection reports.
var (
	// ErrAborted is the ConnectionError cause after a local Abort.
	ErrAborted = errors.New("connection aborted locally")
	// ErrExpired is the cause of an Expired event: msgLifetime passed before
	// the message could be sent.
	ErrExpired = errors.New("message lifetime expired before sending")
	// ErrPathLost is the cause of a Reestablishing event that the route
	// monitor raised: the transport's path is gone (its local address was
	// removed or its link went down, or its bound interface has no route
	// to the peer left), so it was replaced before any traffic failed.
	ErrPathLost = errors.New("the transport's path is gone")
	// ErrFinalSent: a Send after a message marked final.
	ErrFinalSent = errors.New("a final message was already sent")
	// ErrNotReplayable: a message not marked safelyReplayable on a stack
	// that may duplicate it (UDP).
	ErrNotReplayable = errors.New("the selected stack may duplicate messages: mark them safelyReplayable")
	// ErrNotAllowed: the operation is not allowed in the current state.
	ErrNotAllowed = errors.New("operation not allowed in this connection state")
	// ErrEstablishmentTimeout: the establishment timeout fired.
	ErrEstablishmentTimeout = errors.New("establishment timed out")
)

// StateError reports an operation the current state does not allow. It
// unwraps to ErrNotAllowed and, in Closed, to net.ErrClosed.
type StateError struct {
	Op    Op
	State State
}

func (e *StateError) Error() string { return fmt.Sprintf("%s not allowed in state %s", e.Op, e.State) }
func (e *StateError) Unwrap() []error {
	if e.State == Closed || e.State == Closing {
		return []error{ErrNotAllowed, net.ErrClosed}
	}
	return []error{ErrNotAllowed}
}

// fromTransport marks a message about one transport of the connection
// (from its reader or its framers). A connection that drops its transport
// (re-establishment, a framer's FailConnection before Ready) starts a new
// generation, and what the old one still sends is ignored: its reader may
// report the close of its own socket after the new transport is in place.
type fromTransport struct{ tgen uint64 }

func (f fromTransport) transportGen() uint64 { return f.tgen }

type transportMsg interface{ transportGen() uint64 }

// connection actor internal messages
type (
	// transportOffered: the race offered a transport (to take from the
	// Link). A tentative one is a 0-RTT transport whose attempt has not
	// won yet (racer.go): the first message goes on it as early data, and
	// the connection stays Establishing until transportConfirmed (the
	// attempt won) or transportRetracted (it failed), or until another
	// offer replaces it (another attempt won).
	transportOffered struct {
		stack         string
		local, remote net.Addr
		report        *messages.EstablishmentReport
		tentative     bool
		attempt       int // a tentative one's, in its race
	}
	transportConfirmed struct{ report *messages.EstablishmentReport }
	transportRetracted struct{}
	// tentativeFailed: the tentative transport of attempt failed (a
	// write, a framer) before its attempt won; to the racer, through the
	// preconnection
	tentativeFailed struct {
		attempt int
		err     error
	}
	establishmentFailed struct{ err error }
	readData            struct {
		fromTransport
		data  []byte
		early bool // early data (0-RTT, RecvItem.Early)
	}
	readEnded struct {
		fromTransport
		err error
	}
	// peerReset: the peer ended a half-closed connection altogether
	// (watchPeerReset): it reset it (err), or closed it gracefully (nil)
	peerReset struct {
		fromTransport
		err error
	}
	writeDone struct {
		fromTransport
		batch []writeItem
		err   error
		// written: with err, the bytes of batch the transport took before
		// it failed (datagrams: the bytes of those before the failing one;
		// wroteBatch)
		written int
		// finished is done once err and written are set, before the
		// report is posted (a writer goroutine's: abortWrite waits for it)
		finished sync.WaitGroup
	}
	lingerExpired  struct{ gen uint64 }
	reestablishNow struct{ gen uint64 }
	datagramIn     struct {
		fromTransport
		item RecvItem
		quic bool // a QUIC datagram beside the stream (datagram_quic.go)
	}
	streamAccepted struct{} // the peer opened a stream on this member's session
	handshakeDone  struct{ fromTransport }
	framerReady    struct {
		fromTransport
		idx int
	}
	framerFailed struct {
		fromTransport
		idx int
		err error
	}
	framerDelivered struct {
		fromTransport
		idx   int
		items []RecvItem
		eos   bool
		err   error
		one   [1]RecvItem // items' first array: one message needs no second allocation
		// datagram: the items are one datagram's (datagram_framed.go)
		datagram bool
	}
	framerFramed struct {
		fromTransport
		idx  int
		send *outSend
		bufs [][]byte
		two  [2][]byte // bufs' first array (a header and a payload)
		// queued is the posting framer's count of its outputs not yet
		// handled (framerActor.queued): the connection lowers it
		queued *atomic.Int32
		// abort: no output but a Message's abort (framerActor.abortSend),
		// for the framer below
		abort bool
	}
	framerStopped struct {
		fromTransport
		idx int
	}
	// framerPrepended is PrependFramer: f goes above the framer at idx.
	framerPrepended struct {
		fromTransport
		idx int
		f   framers.Framer
	}
	// applyEntangled is a property change made on another group member.
	applyEntangled struct {
		set   *messages.SetConnectionProperty
		group *actor.PID
	}
)

// outSend is one Send call on its way down the framer chain to the socket.
type outSend struct {
	msg     *messages.SendMessage
	bytes   int  // bytes accounted by Link.AcquireSend
	framed  bool // a framer delimits it: it may be reordered as a whole
	batched bool // part of a Batch: written together with the rest of it
	// box is the framedSend this outSend lives in: recycled once written
	// (wroteBatch)
	box *framedSend
}

// framedSend is an outSend with the message to its top framer (or, with
// no framer, with the one buffer it is written from): one object per
// send, recycled by the connection actor once the send is written.
type framedSend struct {
	out outSend
	fs  framerSend
	one [1][]byte
	ff  framerFramed // the first framer's output for it (framerActor.flushOut)
	// reply lets a lone framer that runs within the connection's post
	// (its mailbox was idle) leave its output in ff for the connection to
	// take when the post returns, rather than post it back into the queue
	// of the connection actor, which is running (see connActor.send)
	reply atomic.Int32 // replyNone, replyWaiting, replyFilled
}

const (
	replyNone int32 = iota
	replyWaiting
	replyFilled
)

// framedSends recycles the framedSends of written sends. A pool (per P)
// rather than a list per connection: the object the last send on this
// processor used is still in its cache, whichever connection it was for.
var framedSends = sync.Pool{New: func() any { return new(framedSend) }}

// newSend returns a framedSend for m.
func newSend(m *messages.SendMessage, framed bool) *framedSend {
	e := framedSends.Get().(*framedSend)
	e.out = outSend{msg: m, bytes: len(m.Data), framed: framed, box: e}
	return e
}

// recycleSends recycles the framedSends of a written batch: nothing
// refers to them any more (the framers handed their sends on, the writer
// reported, the Sent events are out).
func recycleSends(batch []writeItem) {
	for _, w := range batch {
		if w.send == nil || w.send.box == nil {
			continue
		}
		e := w.send.box
		*e = framedSend{}
		framedSends.Put(e)
	}
}

type writeItem struct {
	send *outSend // nil for framer-generated bytes
	bufs [][]byte
	cont bool // the tail of an item cut by splitTurn: never moved or dropped
}

// connActor runs one connection: the RFC 9622 state machine (its states
// and transitions are in connection_state.go), the transport, the reader
// and writer goroutines, and its framer actors.
type connActor struct {
	// What every message touches comes first, so that it shares a few
	// cache lines (with many connections, a connection's actor is
	// usually out of the cache when its next message comes).
	sys   *System
	spec  *connSpec
	link  *Link
	t     stacks.Transport
	tgen  uint64 // transport generation: bumped when t is dropped
	state State
	ended bool

	writing        bool
	holdFlush      bool // inside a batch: write once at its end
	batching       bool // sends now belong to a batch
	finalSent      bool
	finSent        bool
	datagram       bool // one message per datagram, no framer
	connectionless bool // no handshake to close: Close releases at once
	discarding     bool
	eofSeen        bool
	halfClosed     bool // the peer ended its stream while this side may still send
	early          bool // the transport is still in 0-RTT
	left           bool // left its group after a CloneError: a group of one
	multistream    bool // the transport is a stream of a multistreaming session
	rejoinWait     bool // re-establishing through the group (rejoin.go)
	rejoinLead     bool // dialing the group's new session (rejoin.go)
	// group transmission scheduling on a shared session
	shared     bool // the transport is a stream of a session other members use
	granted    bool // the group gave this member the turn to write
	splitTurns bool // the grant's turn cuts messages at quantum (RoundRobinPerPacket)
	grantAsked bool
	tClosed    bool      // t was closed or aborted as the connection ended
	dir        Direction // what the direction property lets this side do (direction.go)
	everReady  bool      // Ready was reported once
	closeAsked bool      // the application asked to close: never re-establish
	halting    bool      // Stopping came (receiveFast)
	// sendingEarly: the held early sends go out after the handshake,
	// also once Close began (they were accepted before it)
	sendingEarly bool
	// tentative: t is a 0-RTT transport whose attempt has not won the
	// race yet (transportOffered); sendingFirst: the first message goes
	// on it now, though Establishing (sendFirstEarly)
	tentative    bool
	sendingFirst bool
	framersNamed bool // the first framers were spawned (spawnFramer)
	// (the one-byte fields above sit together: no padding between them)
	quantum int32          // the grant's turn in bytes (0: schedQuantum)
	mb      *inlineMailbox // this actor's mailbox (setMailbox)

	rejoinVia *actor.PID // the member opening this one's stream (rejoin.go)

	backoff *time.Timer // the re-establishment's backoff wait (reestablish); stopped when the actor stops
	// lostThrough: the sends with ids up to it got their SendError when a
	// transport was lost (failPendingInFlight); one still on its way to
	// the actor then is dropped when it comes (dropLost), with lostErr
	lostThrough uint64
	lostErr     error

	inFlight    int    // sends between the framers and the end of the write
	batchLeft   int32  // batched sends still in the framer chain
	attempts    int32  // consecutive re-establishment attempts
	sendMax     int    // largest message the stack sends in one piece; 0: unlimited
	openPartial uint64 // message id of a message being sent in parts (partial.go)
	framers     []*actor.PID
	top         Poster // posts to the top framer (postTopFramer)
	wq          []writeItem
	wqSpare     []writeItem // an emptied queue array, reused by the next one
	wbufs       net.Buffers // reused vector of an inline write
	smallBuf    []byte      // reused buffer of a small inline write
	rc          syscall.RawConn
	wop         writevOp  // the inline write's state
	sock        sockProps // socket-level properties: rates, soft errors, ... (sockprops.go)
	wg          ioCount   // reader and writer goroutines blocked in I/O (datapath.go)

	logv *slog.Logger // made on first use (logger)
	// inWrite: the batch a writer goroutine is writing (writeRest), whose
	// report an Abort waits for (abortWrite)
	inWrite *writeDone

	stack         string
	local, remote net.Addr
	report        *messages.EstablishmentReport
	established   time.Time

	framersReady int32
	framersStop  int32        // framers whose Stop is done, top down
	stopMarks    uint64       // bit i: framer i was sent its Stop
	stopMore     map[int]bool // the same beyond 64 framers

	// send side, less often
	pending []*messages.SendMessage // queued before Ready
	wqRest  []writeItem             // queued beyond this turn's quantum

	closeGen  uint64
	linger    *time.Timer
	life      *lifeTimer              // msgLifetime of the messages that wait (msglifetime.go); nil until needed
	ww        *writeWatch             // connTimeout on a blocked write (write_stall.go); nil until needed
	heldEarly []*messages.SendMessage // non-replayable sends waiting for the handshake
	stopEarly func()
	qd        *quicDgrams // QUIC datagrams beside the stream (datagram_quic.go); nil without
	parts     *msgParts   // messages sent in parts: held, failed, gathered (partial.go); nil until needed
	path      *pathState  // PathChange (pathwatch.go); nil until needed

	// the establishment under way (establish_deadline.go); nil once Ready
	est *establishState
	// a QUIC migration's goroutine (conn_endpoints.go), when one ran:
	// cancelled and waited for when the actor stops
	mig *migration
}

// logger is the connection's logger, made when first needed: most
// connections never log.
func (c *connActor) logger() *slog.Logger {
	if c.logv == nil {
		c.logv = c.sys.Logger.With("connection", c.spec.id, "group", c.spec.groupID)
	}
	return c.logv
}

// apply is the only place the state field changes: it runs the transition
// function, traces the change and emits the application-facing event.
// recordTransition traces and logs a state transition; the record and
// the log attributes are built only when a tracer or the log level wants
// them (a connection makes four transitions in its life).
func (c *connActor) recordTransition(from, to State, ev Event, err error) {
	lvl := slog.LevelDebug
	if ev == EvConnectionError || ev == EvEstablishmentError {
		lvl = slog.LevelInfo
	}
	logs := c.sys.Logger.Enabled(context.Background(), lvl)
	if !c.sys.Tracing() && !logs {
		return
	}
	evName := ev.String()
	if ev == EvReady && c.everReady {
		evName = "Reestablished" // the transport replaced (WithReestablishment): not a second Ready
	} else if ev == EvReady && c.spec.passive != nil {
		evName = "ConnectionReceived" // a received connection has no Ready (RFC 9622 §7.2)
		if c.spec.rendezvous {
			evName = "RendezvousDone" // nor has a rendezvous one (§7.3)
		}
	}
	if c.sys.Tracing() {
		rec := &messages.TraceRecord{Kind: "state", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
			FromState: from.String(), ToState: to.String(), Event: evName, Stack: c.stack}
		if err != nil {
			rec.Error = err.Error()
		}
		if c.remote != nil {
			rec.Remote = c.remote.String()
		}
		if c.local != nil {
			rec.Local = c.local.String()
		}
		c.sys.trace(rec)
	}
	if logs {
		attrs := []any{"from", from.String(), "to", to.String(), "event", evName, "stack", c.stack}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		c.logger().Log(context.Background(), lvl, "connection state", attrs...)
	}
}

func (c *connActor) apply(in Input, err error) bool {
	from := c.state
	to, ev, terr := transition(from, in)
	if terr != nil {
		c.logger().Debug("ignored input", "input", in.String(), "state", from.String())
		return false
	}
	c.state = to
	c.link.setState(to)
	switch ev {
	case EvEstablishmentError, EvClosed, EvConnectionError:
		// the sends still waiting fail now, before the terminal event
		// (emitTerminal) and its trace record: their SendError records
		// come before it, as their events do
		cause := err
		if cause == nil {
			cause = ErrClosed
		}
		c.link.failAllSends(cause)
	}
	if from != to || ev != EvNone {
		recEv := ev
		if c.everReady && ev == EvEstablishmentError {
			recEv = EvConnectionError // what the application gets (below)
		}
		c.recordTransition(from, to, recEv, err)
	}
	if c.everReady {
		switch ev {
		case EvReady: // the Ready of a re-establishment
			if c.sys.Tracing() { // before the event: a trace never lags what the application saw
				c.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberReestablished", ConnectionId: c.spec.id, GroupId: c.spec.groupID})
			}
			c.link.emitReestablished(int(c.attempts))
			c.rejoinReady()         // the group's waiters join its session (rejoin.go)
			c.pathEstablished(true) // PathChange after Reestablished (pathwatch.go)
			// the row of attempts ends once the transport has stayed up
			// the policy's StableAfter (attemptsMade), not here
			return true
		case EvEstablishmentError: // giving up on a connection that was Ready once
			ev = EvConnectionError
		}
	}
	switch ev {
	case EvReady:
		c.everReady = true
		c.link.emitReady()
		c.pathEstablished(false)
	case EvEstablishmentError, EvClosed, EvConnectionError:
		c.pathStop()
		c.link.emitTerminal(ev, err)
	}
	return true
}

// reestablish replaces a lost transport under the re-establishment policy:
// it returns false when the policy does not apply (or is exhausted), and
// the caller ends the connection as usual. Messages not yet sent fail with
// err: the application decides whether to send them again.
func (c *connActor) reestablish(ctx actor.Context, err error) bool {
	if !c.mayReestablish() {
		return false
	}
	b := c.spec.cfg.Reestablish.Normalized()
	made := c.attemptsMade(b)
	if c.state == Established && !c.apply(InReestablish, err) {
		return false
	}
	c.attempts = int32(made)
	c.endEstablishment() // each attempt has its own deadline: none runs through the backoff
	open := c.openPartial
	c.dropTransport(ctx)
	c.failPendingInFlight(err)
	if open != 0 && !c.gathersParts() {
		c.markFailed(open, err) // its later parts must not start a message on the next transport
	}
	c.attempts++
	if c.sys.Tracing() { // before the event: a trace never lags what the application saw
		c.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberReestablishing", ConnectionId: c.spec.id,
			GroupId: c.spec.groupID, Error: err.Error()})
	}
	c.link.emitReestablishing(err, int(c.attempts))
	c.closeGen++
	gen, root, self := c.closeGen, ctx.ActorSystem().Root, ctx.Self()
	if c.backoff != nil {
		c.backoff.Stop()
	}
	c.backoff = time.AfterFunc(b.Delay(int(c.attempts)), func() { root.Send(self, &reestablishNow{gen: gen}) })
	return true
}

// dropTransport closes the transport, stops the reader and the framers, and
// resets what belongs to one transport.
func (c *connActor) dropTransport(ctx actor.Context) {
	if c.t != nil {
		_ = c.t.Abort()
		c.noteRelease(c.t) // Done waits for its socket too (a re-establishment)
		c.t = nil
	}
	c.sock.stop() // pacer waits end at once
	c.stopQUICDatagrams()
	c.link.closeGate()
	c.takeBackWatch()
	c.wg.Wait() // the reader and writer end once the transport is closed
	// a write the writer goroutine completed before the loss, its report
	// still on its way (dropped with the transport's generation): its
	// messages are Sent, not failed with the pending ones (the peer may
	// have them, and an application told they failed sends them again)
	c.abortWrite()
	c.link.reopen()
	for _, pid := range c.framers {
		ctx.Stop(pid)
	}
	c.framers, c.framersReady, c.framersStop, c.stopMarks, c.stopMore = nil, 0, 0, 0, nil
	c.tgen++
	c.unwatchWrite()
	c.wq, c.writing, c.inFlight, c.batchLeft, c.inWrite = nil, false, 0, 0, nil
	c.rc, c.wqSpare, c.wqRest = nil, nil, nil
	c.returnTurn(ctx) // a turn of the group's, for writes that will never come
	c.eofSeen, c.finSent, c.finalSent, c.discarding, c.halfClosed = false, false, false, false, false
	c.openPartial = 0
}

// failPendingInFlight fails the sends that were accepted but not written:
// those queued here, being framed or written on the transport lost, and
// those still on their way to this actor (in its mailbox), which must then
// not go out on the next transport: their SendError came, and the
// application may send them again (dropLost).
func (c *connActor) failPendingInFlight(err error) {
	c.failPending(err)
	l := c.link
	l.mu.Lock()
	ids := l.sendWaiters.liveIDs()
	l.mu.Unlock()
	for _, id := range ids {
		c.lostThrough = max(c.lostThrough, id)
	}
	if c.sys.Tracing() {
		l.traceSendErrors(ids, err)
	}
	// exactly these: a send expected from now on is not failed here, and
	// comes after this to the actor; the send queue is empty again
	l.sendDone(ids, math.MaxInt, err)
	c.lostErr = err
}

// dropLost reports whether send m, only now at the actor, was failed with
// a transport lost before (failPendingInFlight; its id is not above the
// last failed then): it is dropped, and its SendError comes now if it was
// expected only after the loss.
func (c *connActor) dropLost(m *messages.SendMessage) bool {
	if m.SendID == 0 || m.SendID > c.lostThrough {
		return false
	}
	// traced when its SendError comes now (those expected at the loss were
	// traced then): before the event, as every SendError
	if c.sys.Tracing() && c.link.expectsSend(m.SendID) {
		c.link.traceSendErrors([]uint64{m.SendID}, c.lostErr)
	}
	c.link.sendDone([]uint64{m.SendID}, len(m.Data), c.lostErr)
	c.noteFailedPart(m, c.lostErr) // its message's later parts fail too
	return true
}

// receiveFast is receiveData for the inline mailbox (fastReceiver), which
// calls it without protoactor's per-message work: none of these messages
// is a request, and nothing it runs reads ctx.Message() (rejectAfterEnd,
// which does, runs once the connection has ended: then receiveData takes
// nothing, and the message goes protoactor's way). Once the actor is
// stopping (its group or the system stopped it) they go protoactor's way
// too, which drops them once it has stopped.
func (c *connActor) receiveFast(ctx actor.Context, msg any) bool {
	return !c.halting && c.receiveData(ctx, msg)
}

// receiveData handles the data path's messages (a send, a framer's output
// for the socket, a framer's deliveries) while the connection has not
// ended, and reports whether msg was one.
func (c *connActor) receiveData(ctx actor.Context, msg any) bool {
	if c.ended {
		return false
	}
	switch m := msg.(type) {
	case *messages.SendMessage:
		c.send(ctx, m)
	case *framerFramed:
		if m.queued != nil {
			m.queued.Add(-1)
		}
		if m.tgen == c.tgen {
			c.framed(ctx, m)
		}
	case *framerDelivered:
		if m.tgen == c.tgen {
			c.framerDelivered(ctx, m)
			m.recycle()
		}
	default:
		return false
	}
	return true
}

func (c *connActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if c.receiveData(ctx, msg) { // the data path's messages first
		return
	}
	switch m := msg.(type) {
	case *actor.Started:
		return
	case *connSpec: // the first message: the connection starts
		c.sys, c.spec, c.link = m.sys, m, m.link
		c.started(ctx)
		return
	case *actor.Stopping:
		c.halting = true // data-path messages take protoactor's path (receiveFast)
		if c.spec == nil {
			return // stopped before it started: nothing to release
		}
		c.spec.releaseSlot()
		c.stopping()
		return
	case *actor.Stopped:
		c.takeBackWatch()
		c.wg.Wait()
		if c.mig != nil {
			c.mig.wg.Wait()
		}
		if c.link != nil {
			c.link.markGone() // commands still queued were dropped: no one waits for them
		}
		return
	case *actor.Terminated:
		if c.rejoinVia != nil && m.Who.Equal(c.rejoinVia) {
			c.rejoinReceive(ctx, m) // the member asked for a stream ended (rejoin.go)
		}
		return
	}
	if c.ended {
		c.rejectAfterEnd(ctx)
		return
	}
	if tm, ok := msg.(transportMsg); ok && tm.transportGen() != c.tgen {
		return // from a transport already dropped
	}
	switch m := msg.(type) {
	case *transportOffered:
		if c.est != nil {
			if !m.tentative {
				c.est.preconn = nil
			}
			if err := c.est.abortCause; err != nil { // the race was won as Initiate's ctx ended
				if t := c.link.takeTransport(); t != nil {
					_ = t.Abort()
				}
				if m.tentative {
					return // the racer, asked to lose, reports the failure
				}
				c.abort(ctx, err)
				return
			}
		}
		c.transportOffered(ctx, m)
	case *transportConfirmed:
		if c.est != nil {
			c.est.preconn = nil
			if err := c.est.abortCause; err != nil { // won as Initiate's ctx ended
				c.dropTentative(ctx)
				c.abort(ctx, err)
				return
			}
		}
		c.confirmTentative(ctx, m)
	case *transportRetracted:
		if c.tentative {
			c.dropTentative(ctx)
		}
	case *establishDeadline:
		c.establishDeadlinePassed(ctx, m)
	case *establishmentFailed:
		if c.est != nil {
			c.est.preconn = nil
		}
		if c.tentative {
			c.dropTentative(ctx)
		}
		if f, ok := m.err.(*EstablishmentFailure); ok {
			c.est.withPrior(f) // the races before this one, when a framer failed
			if f.Report != nil {
				c.report = f.Report
			}
		}
		if c.everReady && c.reestablish(ctx, m.err) {
			return
		}
		c.apply(InEstablishmentFailed, m.err)
		c.end(ctx)
	case *reestablishNow:
		if m.gen == c.closeGen && c.state == Establishing {
			c.rejoinDue(ctx) // rejoin.go
		}
	case *rejoinDial, *rejoinRetry, *rejoinGiveUp, *rejoinVia, *StreamOpened, *actor.DeadLetterResponse:
		c.rejoinReceive(ctx, m)
	case *messages.SendBatch: // SendMessage, framerFramed, framerDelivered: above
		c.holdFlush = true
		c.batching = true
		for _, sm := range m.Messages {
			c.send(ctx, sm)
		}
		c.batching = false
		c.holdFlush = false
		c.flush(ctx)
	case *writeDone:
		c.writeDone(ctx, m)
	case *writeStallCheck:
		c.writeStallChecked(ctx, m) // write_stall.go
	case *readData:
		c.deliver([]RecvItem{{MessageID: 1, Data: m.data, Early: m.early}})
		if c.qd != nil {
			c.qd.streamOpen = true
		}
	case *readEnded:
		c.streamEnded(ctx, m.err)
	case *peerReset:
		if !c.halfClosed || c.finSent || c.closeAsked || c.state != Established {
			break // this side ended its sending side meanwhile: that goes on
		}
		if m.err != nil {
			c.fail(ctx, fmt.Errorf("peer reset the connection after its end of stream: %w", m.err))
			break
		}
		// the peer closed gracefully: nothing this side sends is read any
		// more, and both directions are done (closed as after a Final
		// message: progressClose finishes it)
		c.apply(InRemoteClose, nil)
		c.progressClose(ctx)
	case *datagramIn:
		if m.quic {
			c.quicDatagramIn(m.item)
			break
		}
		c.deliver([]RecvItem{m.item})
	case *handshakeDone:
		c.early = false
		held := c.heldEarly
		c.heldEarly = nil
		c.sendingEarly = true
		for _, hm := range held {
			c.send(ctx, hm)
		}
		c.sendingEarly = false
		c.progressClose(ctx) // a Close waited for them
	case *OpenStream:
		c.shared = true // its session now carries another member's stream
		c.openStream(ctx, m)
	case *writeGrant:
		c.granted = true
		c.quantum, c.splitTurns = int32(m.quantum), m.split
		c.flush(ctx)
	case *streamAccepted:
		c.shared = true // a peer's stream joined the group (acceptStreams)
	case *framerReady:
		c.framersReady++
		c.maybeReady(ctx)
	case *framerFailed:
		err := fmt.Errorf("framer %d: %w", m.idx, m.err)
		if c.tentative {
			c.tentativeLost(ctx, err) // the race goes on without it
			return
		}
		if c.retryNextCandidate(ctx, err) {
			return
		}
		c.fail(ctx, err)
	case *framerPrepended:
		c.prependFramer(ctx, m)
	case *framerStopped:
		c.framersStop++
		c.progressClose(ctx)
	case *messages.CloseConnection:
		c.close(ctx)
		respondIfAsked(ctx, true)
	case *messages.AbortConnection:
		if m.UnlessReady && c.everReady {
			// the establishment's ctx ended as the connection became
			// Ready: Ready was reported first, and wins
			respondIfAsked(ctx, true)
			return
		}
		if !c.abortWhileRacing(ctx, m.Err) { // establish_deadline.go
			c.abort(ctx, m.Err)
		}
		respondIfAsked(ctx, true)
	case *lingerExpired:
		if m.gen == c.closeGen && c.state == Closing {
			c.finish(ctx)
		}
	case *lifetimeTick:
		c.lifetimeTicked(ctx, m)
	case *messages.GetConnectionInfo:
		c.refreshAddrs(ctx, "QUIC session migrated") // conn_endpoints.go
		ctx.Respond(c.info())
	case *ChangeEndpoints: // conn_endpoints.go
		c.changeEndpoints(ctx, m)
	case *messages.SetConnectionProperty:
		if err := c.setProperty(m); err != nil {
			ctx.Respond(err)
			return
		}
		switch {
		case m.Name != "connPriority" && !c.left:
			ctx.Send(c.spec.group, &entangle{from: ctx.Self(), set: m})
		case m.Name == "connPriority" && c.grantAsked && !c.granted && !c.left:
			// waiting for its turn: the new priority counts for it
			ctx.Send(c.spec.group, &writePriority{from: ctx.Self(), priority: c.connPriority()})
		}
		ctx.Respond(true)
	case *applyEntangled:
		if c.left || c.spec.cfg.Properties.GetValues()[m.set.Name] == m.set.Value {
			return // gone, or its own change, the last one made (group.go)
		}
		if err := c.setProperty(m.set); err != nil {
			// this member cannot follow its group: CloneError, and it leaves
			// (RFC 9622 §7.4); it stays open, in a group of its own
			c.left = true
			c.link.leftGroup.Store(true)
			ctx.Send(c.spec.group, &leaveGroup{who: ctx.Self()})
			if c.sys.Tracing() {
				c.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberLeft", ConnectionId: c.spec.id,
					GroupId: c.spec.groupID, Error: err.Error()})
			}
			c.link.emitCloneError(fmt.Errorf("entangled property %s: %w", m.set.Name, err))
		}
	case *messages.ListGroupMembers:
		if c.left { // a group of one now
			ctx.Respond(&GroupMembers{Members: []GroupMember{{PID: ctx.Self(), Link: c.link}}})
			return
		}
		ctx.Forward(c.spec.group)
	case *pacedFlush, *sockTick, *softErrorIn, *refusedDatagrams:
		c.sockReceive(ctx, m)
	case *pathCheck, *pathHandlerChanged, *migrateDone, *sessionMigrated:
		c.pathReceive(ctx, m)
	case error: // last: an interface case (a reply to rejoin.go's OpenStream)
		c.rejoinReceive(ctx, m)
	default:
		c.logger().Warn("connection: unhandled message", "type", fmt.Sprintf("%T", m))
	}
}

// setMailbox is told the actor's mailbox (mailboxUser).
func (c *connActor) setMailbox(m *inlineMailbox) { c.mb = m }

func (c *connActor) started(ctx actor.Context) {
	c.spec.self = ctx.Self()
	c.dir = DirectionOf(c.spec.cfg.Properties)
	if err := c.link.attach(c.spec); err != nil {
		// its caller gave up before it learnt of it (Link.Abandon): the
		// transport it was handed (a clone's stream) goes too
		for _, t := range []stacks.Transport{c.spec.passive, c.spec.ready} {
			if t != nil {
				_ = t.Abort()
			}
		}
		c.abort(ctx, err)
		return
	}
	if c.spec.cfg.Reestablish != nil {
		c.link.keepReadingAhead() // a lost transport must be noticed at once
	}
	if c.spec.first != nil {
		c.pending = append(c.pending, c.spec.first)
	}
	if t := c.spec.passive; t != nil || c.spec.ready != nil {
		if t == nil {
			t = c.spec.ready
		}
		c.shared = c.spec.ready != nil || !c.spec.acceptStreams // a clone's or a peer's stream
		c.t = t
		c.stack = c.spec.stack
		c.local, c.remote = c.t.LocalAddr(), c.t.RemoteAddr()
		c.startTransport(ctx)
		if ms, ok := t.(stacks.MultiStream); ok && c.spec.acceptStreams {
			c.acceptStreams(ctx, ms)
		}
		return
	}
	c.spawnPreconnection(ctx)
}

// acceptStreams waits for the streams the peer opens on this multistreaming
// session (QUIC); each becomes a connection in this connection's group,
// delivered as ConnectionReceived (RFC 9622 §7.4) by the group's handler
// (SetReceivedHandler) when it has one, else by the listener that accepted
// the session; with neither (a session this side dialed) the group refuses
// it (stacks.Refuser). The
// session's streams are accepted for as long as the session lasts, not
// only as long as this (its first) stream: when this member ends while
// others carry on, the peer's later streams still join the group. The
// goroutine ends with the session (its last stream closed: AcceptStream
// fails), and is therefore not counted in c.wg.
func (c *connActor) acceptStreams(ctx actor.Context, ms stacks.MultiStream) {
	root, self, group := ctx.ActorSystem().Root, ctx.Self(), c.spec.group
	cfg, stack, listener, lgate := c.spec.cfg, c.stack, c.spec.listener, c.spec.listenGate
	go func() {
		for {
			t, err := ms.AcceptStream(context.Background())
			if err != nil {
				return
			}
			// the group spawns the member (a dead letter if the group has
			// ended meanwhile: the stream is aborted, system.go) and
			// tells this member, if still there, that its session is
			// shared
			root.Send(group, &peerStream{owner: self, spec: &connSpec{id: c.sys.NewID(), cfg: cfg, passive: t,
				stack: stack, listener: listener, listenGate: lgate}})
		}
	}()
}

// OpenStream asks a connection on a multistreaming stack for a new stream
// of its session (Clone); the reply is *StreamOpened. Ctx is the
// requester's: a stream that has to wait for the peer's limit waits as
// long as Ctx runs, and is not opened, or is aborted, once it has ended
// (nobody would take it); the requester must end Ctx once it stops
// waiting for the reply. Without Ctx the wait is bounded by
// openStreamBound.
type OpenStream struct {
	Ctx context.Context
	// Dir is the direction of the connection the stream is for (nil: the
	// opener's): a send-only one gets a unidirectional stream.
	Dir *Direction
}

// openStreamBound bounds the wait for the peer's stream limit of an
// OpenStream without Ctx (a member re-establishing on the group's session).
const openStreamBound = 10 * time.Second

// StreamOpened is the reply to OpenStream.
type StreamOpened struct {
	T     stacks.Transport
	Stack string
}

// openStream opens a stream at once when the peer's stream limit leaves
// room (stacks.StreamOpener), and otherwise waits for room in a goroutine
// owned by this actor that answers the requester directly, for as long as
// the requester waits (m.Ctx). The clone of a send-only connection has its
// direction: on QUIC it gets a unidirectional stream (stacks.UniStreams).
func (c *connActor) openStream(ctx actor.Context, m *OpenStream) {
	ms, ok := c.t.(stacks.MultiStream)
	if !ok || c.state != Established {
		ctx.Respond(fmt.Errorf("%w: the stack has no streams", ErrNotAllowed))
		return
	}
	open := ms.OpenStream
	dir := c.dir
	if m.Dir != nil {
		dir = *m.Dir
	}
	u, uni := c.t.(stacks.UniStreams)
	uni = uni && dir == SendOnly
	if uni {
		open = u.OpenSendStream
	}
	if so, ok := c.t.(stacks.StreamOpener); ok {
		// most opens need no wait: answered here, without a goroutine
		// and the hops back to the requester
		t, err := so.TryOpenStream(uni)
		switch {
		case err == nil:
			ctx.Respond(&StreamOpened{T: t, Stack: c.stack})
			return
		case !errors.Is(err, stacks.ErrStreamLimit):
			ctx.Respond(err)
			return
		}
	}
	sender, root, stack := ctx.Sender(), ctx.ActorSystem().Root, c.stack
	req, counted := m.Ctx, m.Ctx == nil
	var sctx context.Context
	var cancel context.CancelFunc
	if counted {
		// the group's request (a member re-establishing, rejoin.go),
		// whose waiter has no ctx: bounded here, and counted in c.wg
		req = context.Background()
		sctx, cancel = context.WithTimeout(req, openStreamBound)
	} else {
		// a Clone's: as long as the Clone waits, which ends its ctx as it
		// returns (also when this connection has stopped: not counted in
		// c.wg, whose Wait at the stop would wait for that ctx)
		sctx, cancel = context.WithCancel(req)
	}
	go func() {
		defer cancel()
		if counted {
			c.wg.Add(1) // counted only while blocked (datapath.go)
		}
		t, err := open(sctx)
		if counted {
			c.wg.Done()
		}
		if err != nil {
			root.Send(sender, err)
			return
		}
		if req.Err() != nil {
			_ = t.Abort() // the requester gave up: its reply would be a dead letter
			return
		}
		root.Send(sender, &StreamOpened{T: t, Stack: stack})
	}()
}

// retryNextCandidate handles a framer's FailConnection before Ready (RFC
// 9623 §6): the transport of that candidate is dropped and the race goes on
// with the candidates not tried yet; the framers start again on the next
// winner. It reports false when this does not apply.
func (c *connActor) retryNextCandidate(ctx actor.Context, err error) bool {
	if c.state != Establishing || c.t == nil || c.spec.passive != nil || c.spec.ready != nil {
		return false
	}
	if c.spec.failed == nil {
		c.spec.failed = map[string]bool{}
	}
	endpoint := ""
	if c.remote != nil {
		endpoint = c.remote.String()
	}
	c.spec.failed[c.stack+" "+endpoint] = true
	c.spec.framerErr = err
	if c.est == nil {
		c.est = new(establishState)
	}
	if c.report != nil {
		// the race's attempts stay in the establishment's report and
		// failure; its winner failed by its framer
		for _, a := range c.report.Attempts {
			if a.Won {
				a.Won = false
				a.Error = "framer: " + err.Error()
				c.est.priorErrs = append(c.est.priorErrs, AttemptError{Endpoint: a.Endpoint, Stack: a.Stack, Err: err})
			} else if a.Error != "" {
				c.est.priorErrs = append(c.est.priorErrs, AttemptError{Endpoint: a.Endpoint, Stack: a.Stack, Err: errors.New(a.Error)})
			}
			c.est.prior = append(c.est.prior, a)
		}
		c.report = nil
	}
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "candidate", Event: "FramerFailed", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
			Stack: c.stack, Remote: endpoint, Error: err.Error()})
	}
	c.dropTransport(ctx)
	c.spawnPreconnection(ctx)
	return true
}

// spawnPreconnection starts establishing a transport: resolution, the
// candidate tree and the racer run in a child actor.
func (c *connActor) spawnPreconnection(ctx actor.Context) {
	if c.est == nil {
		c.est = new(establishState)
	}
	if c.est.began.IsZero() {
		c.est.began = time.Now()
	}
	c.est.preconn = ctx.SpawnPrefix(preconnProps(c.sys, c.spec, c.est.began), "preconnection")
	c.armEstablishDeadline(ctx)
}

func (c *connActor) transportOffered(ctx actor.Context, m *transportOffered) {
	c.dropTentative(ctx) // the race's winner replaces a tentative transport
	t := c.link.takeTransport()
	if t == nil || c.state != Establishing {
		if t != nil {
			_ = t.Abort()
		}
		return
	}
	c.t, c.stack, c.local, c.remote, c.tentative = t, m.stack, m.local, m.remote, m.tentative
	if m.tentative {
		c.est.tentAttempt = m.attempt
	} else {
		c.setReport(m.report)
		c.applySetDuring() // (a tentative transport gets them once it wins: confirmTentative)
	}
	c.startTransport(ctx)
	if !m.tentative {
		c.acceptPeerStreams(ctx)
	}
}

// setReport keeps the race's report, after the attempts of the races
// before it in this establishment.
func (c *connActor) setReport(r *messages.EstablishmentReport) {
	c.report = r
	if c.est != nil && len(c.est.prior) > 0 && c.report != nil {
		c.report.Attempts = append(slices.Clone(c.est.prior), c.report.Attempts...)
	}
}

// acceptPeerStreams: on a session this side dialed, the peer's streams go
// to the group, whose ConnectionReceived handler takes or refuses them.
func (c *connActor) acceptPeerStreams(ctx actor.Context) {
	if ms, ok := c.t.(stacks.MultiStream); ok {
		c.acceptStreams(ctx, ms)
	}
}

// confirmTentative: the tentative 0-RTT transport's attempt won the race,
// its handshake complete. Its reading starts (nothing was read from it
// before: what the server sent waited in its stream), and the connection
// is Ready as soon as its framers are.
func (c *connActor) confirmTentative(ctx actor.Context, m *transportConfirmed) {
	if !c.tentative || c.state != Establishing {
		return
	}
	c.tentative, c.early = false, false
	c.setReport(m.report)
	c.applySetDuring()
	if err := c.est.tentLost; err != nil {
		// it failed as its attempt won (the racer had decided before it
		// learnt of the failure)
		c.est.tentLost = nil
		c.fail(ctx, err)
		return
	}
	c.startReading(ctx)
	c.acceptPeerStreams(ctx)
	c.maybeReady(ctx)
}

// dropTentative drops the tentative 0-RTT transport, whose attempt lost
// (its handshake failed, or another attempt won). The first message, if
// it went on it, is queued again, first, for the next transport (it is
// safely replayable: it may reach more than one server, RFC 9622 §9.1.3.4);
// its Sent event is the next transport's.
func (c *connActor) dropTentative(ctx actor.Context) {
	if !c.tentative {
		return
	}
	if c.stopEarly != nil {
		c.stopEarly()
		c.stopEarly = nil
	}
	c.early = false
	c.dropTransport(ctx)
	c.tentative = false
	c.stack, c.local, c.remote = "", nil, nil
	est := c.est // there while the race runs
	est.tentLost = nil
	if m := est.earlyFirst; m != nil {
		est.earlyFirst = nil
		c.link.unholdSent(len(m.Data))
		c.pending = slices.Insert(c.pending, 0, m)
	}
}

// tentativeLost: the tentative transport failed before its attempt won (a
// write, a framer): the racer counts it as the attempt's failure and
// retracts it (transportRetracted); until then it stays, unused.
func (c *connActor) tentativeLost(ctx actor.Context, err error) {
	est := c.est // there while the race runs
	if est.tentLost != nil {
		return
	}
	est.tentLost = err
	if est.preconn != nil {
		ctx.Send(est.preconn, &tentativeFailed{attempt: est.tentAttempt, err: err})
	}
}

// sendFirstEarly sends the first message (InitiateWithSend's, safely
// replayable) on the tentative 0-RTT transport, as early data, before its
// attempt has won: its Sent event waits for the win (Link.holdSent), and a
// lost attempt gives it back (dropTentative).
func (c *connActor) sendFirstEarly(ctx actor.Context) {
	est := c.est // there while the race runs
	if est.earlyFirst != nil || !c.early || est.tentLost != nil || len(c.pending) == 0 {
		return
	}
	m := c.pending[0]
	if m != c.spec.first || m.Props == nil || !m.Props.SafelyReplayable {
		return
	}
	if _, dg := c.t.(stacks.Datagrams); dg && !m.Props.Reliable {
		return // it may go as a QUIC datagram, once Ready (startQUICDatagrams)
	}
	c.pending = slices.Delete(c.pending, 0, 1)
	est.earlyFirst = m
	c.link.holdSent(m.SendID)
	c.sendingFirst = true
	c.send(ctx, m)
	c.sendingFirst = false
}

// startTransport spawns the framer actors, sends them Start, and starts the
// reader. The connection becomes Ready when every framer is ready.
func (c *connActor) startTransport(ctx actor.Context) {
	n := len(c.spec.cfg.Framers)
	var boots []framerBoot // one allocation for the framers' boots
	if n > 0 {
		boots = make([]framerBoot, n)
	}
	for i := 0; i < n; i++ {
		// the framer is instantiated by its actor (Cloner), where a panic is contained
		b := &boots[i]
		b.sys, b.idx, b.n, b.f, b.link, b.tgen = c.sys, i, n, c.spec.cfg.Framers[i], c.link, c.tgen
		c.framers = append(c.framers, c.spawnFramer(ctx, i))
	}
	c.framersNamed = true
	for i, pid := range c.framers {
		ctx.Send(pid, &boots[i])
	}
	// a framer Ready in its Start (most are: they wait for no peer) has
	// run by now, as its actor was idle: counted here, it sends no
	// framerReady, and the connection is Ready below (no setup deadline)
	for i := range boots {
		if boots[i].readyAtStart() {
			c.framersReady++
		}
	}
	c.learnStack()
	c.noteMultistream()
	c.watchHandshake(ctx)
	c.sockStart(ctx)
	if !c.tentative {
		c.startReading(ctx) // a tentative transport's reading waits for its win (confirmTentative)
	}
	c.maybeReady(ctx)
	if c.state == Establishing && c.spec.passive != nil {
		c.armSetupDeadline(ctx) // its framers wait for the peer: bounded (establish_deadline.go)
	}
}

// startReading starts the transport's reader.
func (c *connActor) startReading(ctx actor.Context) {
	switch {
	case c.datagram:
		c.startDatagramReader(ctx)
	case c.connectionless:
		c.startFramedDatagramReader(ctx) // UDP under framers (datagram_framed.go)
	default:
		c.startReader(ctx)
		c.startQUICDatagrams(ctx)
	}
}

// watchHandshake notes a transport still in 0-RTT (QUIC early data) and
// waits, in a goroutine that ends with the connection (or the transport),
// for its handshake.
func (c *connActor) watchHandshake(ctx actor.Context) {
	et, ok := c.t.(stacks.EarlyTransport)
	if !ok {
		return
	}
	done := et.HandshakeComplete()
	select {
	case <-done:
		return
	default:
	}
	c.early = true
	stop := make(chan struct{})
	c.stopEarly = func() { close(stop) }
	root, self, gen := ctx.ActorSystem().Root, ctx.Self(), fromTransport{c.tgen}
	go func() {
		select {
		case <-done:
			root.Send(self, &handshakeDone{gen})
		case <-stop:
		}
	}()
}

// learnStack reads what the selected stack is: message-oriented
// (datagrams), connectionless, and its largest message.
func (c *connActor) learnStack() {
	st, err := stacks.ByName(c.stack)
	if err != nil {
		return
	}
	caps := st.Capabilities()
	c.connectionless = !caps.Reliability
	c.datagram = caps.PreserveMsgBoundaries && len(c.framers) == 0
	if c.datagram {
		c.link.setMessageMode()
	}
	if l, ok := stacks.SendMsgMaxLen(c.t); ok && !l.Unlimited && l.Bytes > 0 { // no getsockopt
		c.sendMax = l.Bytes
	}
}

// startDatagramReader reads one datagram per Read: each is one complete
// message (RFC 9622 §9.3 on a boundary-preserving stack). On UDP and
// UDP-Lite (stacks.TOSDatagrams) each carries the TOS byte it arrived with
// (its ECN bits and DSCP). maxRecvRate is applied after each datagram.
func (c *connActor) startDatagramReader(ctx actor.Context) {
	link, gen := c.link, fromTransport{c.tgen}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	var id uint64 // the reader goroutine's alone
	c.readDatagrams(func(data []byte, tos uint8, hasTOS bool) {
		id++
		link.addInflight(recvCost(len(data)))
		root.Send(self, &datagramIn{fromTransport: gen, item: RecvItem{MessageID: id, Data: data, EndOfMessage: true, TOS: tos, HasTOS: hasTOS}})
	}, func(err error) { root.Send(self, &readEnded{fromTransport: gen, err: err}) })
}

// readDatagrams reads the transport one datagram per Read, on a goroutine
// of its own, while the Link gives read credit: each datagram (a copy,
// with the TOS byte it arrived with on UDP and UDP-Lite,
// stacks.TOSDatagrams) goes to got, after maxRecvRate's pause; the error
// that ends the reading goes to ended.
func (c *connActor) readDatagrams(got func(data []byte, tos uint8, hasTOS bool), ended func(error)) {
	t, link := c.t, c.link
	tr, hasTOS := t.(stacks.TOSDatagrams)
	recvWait := c.recvPace().wait // maxRecvRate (sockprops.go)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if !link.waitReadCredit() {
				return
			}
			var (
				n   int
				tos uint8
				err error
			)
			c.wg.Add(1) // counted only while blocked in I/O (datapath.go)
			if hasTOS {
				n, tos, err = tr.ReadMsg(buf)
			} else {
				n, err = t.Read(buf)
			}
			c.wg.Done()
			if err != nil {
				ended(err)
				return
			}
			recvWait(n)
			data := make([]byte, n)
			copy(data, buf[:n])
			got(data, tos, hasTOS)
		}
	}()
}

// flushDatagrams writes each queued message as one datagram, paced to
// maxSendRate (sockprops.go).
func (c *connActor) flushDatagrams(ctx actor.Context) {
	batch := c.dropExpired(c.wq)
	c.wq = nil
	if len(batch) == 0 {
		c.returnTurn(ctx)
		c.progressClose(ctx)
		return
	}
	orderDatagramsByPriority(batch) // msgPriority
	batch, held := c.paceBatch(ctx, batch)
	if held {
		return
	}
	c.writeDatagrams(ctx, batch)
}

// prependFramer splices a new framer actor into the stack above the one
// that asked (RFC 9623 §6: PrependFramer, as STARTTLS-like protocols need):
// data that framer delivers from now on goes through the new one. The
// framers above move up one place. The connection is Ready only when the new
// framer is ready too.
func (c *connActor) prependFramer(ctx actor.Context, m *framerPrepended) {
	if m.idx < 0 || m.idx >= len(c.framers) {
		return
	}
	at := m.idx + 1
	n := len(c.framers) + 1
	// instantiated by its actor (Cloner), where a panic is contained
	b := newFramerBoot(c.sys, at, n, m.f, c.link, c.tgen)
	b.atStart.Store(startLooked) // the connection does not look: it reports framerReady
	pid := c.spawnFramer(ctx, at)
	c.framers = append(c.framers[:at], append([]*actor.PID{pid}, c.framers[at:]...)...)
	for i, p := range c.framers {
		if p != pid {
			ctx.Send(p, &framerReindex{idx: i, n: n})
		}
	}
	ctx.Send(pid, b)
}

// framerDispatcher runs a framer on the goroutine of whoever sends to it
// (the reader, or the connection actor): parsing costs no extra hop, and a
// framer never blocks. A framer panic is still recovered by its mailbox and
// supervised by the connection.
var framerDispatcher = actor.NewSynchronizedDispatcher(300)

// framerActorProps are the Props of every framer actor: what it frames
// comes in its first message (framerBoot).
var framerActorProps = actor.PropsFromProducer(func() actor.Actor { return new(framerActor) },
	actor.WithDispatcher(framerDispatcher), actor.WithMailbox(inlineMailboxProducer))

// framerNames are the names of the first framers of a stack.
var framerNames = [...]string{"framer0", "framer1", "framer2", "framer3"}

// spawnFramer spawns the framer actor at idx. The first framers of a
// connection are named framerN; any later one (a PrependFramer, a
// re-establishment's) has a fresh suffix: a name must never be reused
// among a parent's children, whose set protoactor keys by id (a reused
// name, the earlier actor's Terminated still on its way, would drop the
// new child from the set).
func (c *connActor) spawnFramer(ctx actor.Context, idx int) *actor.PID {
	if !c.framersNamed && idx >= 0 && idx < len(framerNames) {
		if pid, err := ctx.SpawnNamed(framerActorProps, framerNames[idx]); err == nil {
			return pid
		}
	}
	return ctx.SpawnPrefix(framerActorProps, fmt.Sprintf("framer%d-", idx))
}

func (c *connActor) maybeReady(ctx actor.Context) {
	if c.state != Establishing || c.t == nil || int(c.framersReady) < len(c.framers) {
		return
	}
	if c.tentative {
		c.sendFirstEarly(ctx) // and Ready waits for the attempt's win
		return
	}
	c.established = time.Now()
	earlyFirst := c.est != nil && c.est.earlyFirst != nil
	c.endEstablishment()
	c.startDirection() // before Ready: the application meets the connection unidirectional
	c.apply(InReady, nil)
	if earlyFirst {
		// the first message went as 0-RTT data on this transport: its
		// Sent follows Ready (or comes when its write completes)
		c.link.releaseSent()
		c.closeWriteAfterFinal() // a Final one was written while Establishing
	}
	c.link.setReadAhead(false) // from now on the application's receives drive reading
	if c.spec.groupReceived {
		// the group's handler takes it (group_received.go)
		ctx.Send(c.spec.group, &receivedMember{started: ConnectionStarted{Link: c.link, Conn: ctx.Self(), Group: c.spec.group}})
	}
	if c.spec.listener != nil {
		r := c.spec.received
		if r == nil {
			r = new(connectionReceived)
		}
		c.spec.received = nil
		r.started = ConnectionStarted{Link: c.link, Conn: ctx.Self(), Group: c.spec.group}
		r.slot, c.spec.acceptSlot = c.spec.acceptSlot, false // the listener's now
		if c.spec.listenGate.report(r) {
			ctx.Send(c.spec.listener, r)
		} else { // the listener has stopped: nobody would own this connection
			ctx.Send(ctx.Self(), &messages.AbortConnection{Err: errListenerStopped})
		}
	}
	pending := c.pending
	c.pending = nil
	for _, m := range pending {
		c.send(ctx, m)
	}
}

func (c *connActor) startReader(ctx actor.Context) {
	t, link := c.t, c.link
	target := ctx.Self()
	framed := len(c.framers) > 0
	if framed {
		target = c.framers[0]
	}
	// one object: the read step, the target lender, the poster and the
	// Link's view of the reader
	cr := &connReader{link: link, framed: framed, gen: fromTransport{c.tgen}, pace: c.recvPace()}
	var tl *targetLender
	if framed {
		cr.tl = targetLender{link: link, gen: c.tgen}
		tl = &cr.tl
	}
	cr.raw.init(t, &c.wg, tl)
	if cr.raw.direct && c.stack == "tcp" && !c.spec.cfg.StackOptions.MPTCP && !c.finSent {
		// plain TCP (an MPTCP socket's TCP_INFO is a subflow's, which
		// may end before the connection does)
		cr.raw.endCheck.Store(endCheckTCP)
	}
	if p, ok := posterOf(ctx.ActorSystem(), target); ok {
		cr.poster = p
	} else { // not a live local actor: sent as usual
		cr.poster = Poster{pid: target, proc: rootSender{ctx.ActorSystem().Root}}
	}
	sr := &cr.sr
	sr.cr, sr.dl, sr.inline = cr, t, cr.raw.direct // TCP and Unix sockets read without a held buffer
	link.setReader(sr)
	link.readerEnd.open()
	go func() {
		// a job handed over while the stream ended (the peer-reset watch
		// of watchPeerReset) runs on this goroutine, which ends anyway
		defer link.readerEnd.run()
		for link.acquireRead(sr) {
			data, err := sr.read()
			if err != nil && !errors.Is(err, net.ErrClosed) {
				// the end of the stream: this goroutine runs the close
				// cascade (framers, connection, group, root) and exits;
				// grown while shallow, its stack is copied once (not when
				// the connection closed the transport itself: the cascade
				// ran there)
				growStack()
			}
			ended := sr.post(data, err)
			link.releaseRead(sr, ended)
			if ended {
				return
			}
		}
	}()
}

// goHandoff hands a job to a goroutine that is about to end (a stream
// reader whose stream ended): it runs the job instead of a new goroutine
// being started for it. Its zero value is closed. open and offer are
// called by one goroutine (the connection actor's turn); run by each
// goroutine that opened it, as it ends. A job is run by the first of them
// to end (any goroutine will do: a job only needs one to run on).
type goHandoff struct {
	state atomic.Int32 // handoffClosed, handoffOpen, handoffJob or handoffTaking
	job   func()       // written by offer while handoffOpen; read by run once handoffTaking
}

const (
	handoffClosed int32 = iota // no goroutine takes a job
	handoffOpen                // a goroutine runs and takes a job before it ends
	handoffJob                 // job is handed over
	handoffTaking              // a goroutine takes job
)

// open is called as a goroutine that will call run starts. A job still
// handed to an earlier goroutine stays its, and this one takes none.
func (h *goHandoff) open() { h.state.CompareAndSwap(handoffClosed, handoffOpen) }

// offer hands job over, or reports false when no goroutine takes it (it
// has ended, or has a job already): the caller runs job on a goroutine of
// its own.
func (h *goHandoff) offer(job func()) bool {
	if h.state.Load() != handoffOpen {
		return false
	}
	h.job = job // read only once run claimed it (handoffTaking)
	if h.state.CompareAndSwap(handoffOpen, handoffJob) {
		return true
	}
	h.job = nil // run closed it meanwhile, and does not look at job
	return false
}

// take takes back a job handed over and not yet run (nil when none), and
// closes the handoff. The connection calls it before it waits for its
// goroutines (c.wg): the goroutine the job was handed to may be the one
// waiting (the stream's end ran the connection on it, up to its stop).
func (h *goHandoff) take() func() {
	if !h.state.CompareAndSwap(handoffJob, handoffTaking) {
		return nil
	}
	job := h.job
	h.job = nil
	h.state.Store(handoffClosed)
	return job
}

// run is a goroutine's end: it closes the handoff, and runs the job it was
// handed, if any.
func (h *goHandoff) run() {
	for {
		switch h.state.Load() {
		case handoffOpen:
			if h.state.CompareAndSwap(handoffOpen, handoffClosed) {
				return
			}
		case handoffJob:
			if h.state.CompareAndSwap(handoffJob, handoffTaking) {
				job := h.job
				h.job = nil
				h.state.Store(handoffClosed)
				job()
				return
			}
		default:
			return
		}
	}
}

// connReader is the read side of one transport of a connection, made by
// startReader: the read step (rawStream, paced by maxRecvRate) and where
// what it reads goes (the first framer, or the connection actor).
type connReader struct {
	sr     streamReader
	raw    rawStream
	tl     targetLender
	poster Poster
	link   *Link
	framed bool
	gen    fromTransport
	pace   recvPace
}

func (cr *connReader) read() ([]byte, error) {
	data, err := cr.raw.read()
	cr.pace.wait(len(data))
	return data, err
}

func (cr *connReader) post(data []byte, err error) bool {
	if n := len(data); n > 0 {
		if cr.framed {
			cr.link.addRaw(n)
			// the bytes and the end of the stream read together go in one
			// input: the framer delivers the last message with the end,
			// which makes it final (endsReceiving)
			in := newFramerInput(data, nil, err != nil, err)
			in.early = cr.raw.early
			cr.poster.Post(in)
			return err != nil
		} else {
			cr.link.addInflight(recvCost(n))
			cr.poster.Post(&readData{fromTransport: cr.gen, data: data, early: cr.raw.early})
		}
	}
	if err == nil {
		return false
	}
	if cr.framed {
		cr.poster.Post(newFramerInput(nil, nil, true, err))
	} else {
		cr.poster.Post(&readEnded{fromTransport: cr.gen, err: err})
	}
	return true
}

// --- receive ---

func (c *connActor) deliver(items []RecvItem) {
	if c.discarding {
		c.link.dropInflight(itemsCost(items))
		return
	}
	if c.sys.Tracing() {
		for _, it := range items {
			ev := "Received"
			switch {
			case it.Err != nil:
				ev = "ReceiveError" // a message a datagram cut (datagram_framed.go)
			case !it.EndOfMessage:
				ev = "ReceivedPartial"
			}
			c.sys.trace(&messages.TraceRecord{Kind: "received", Event: ev, ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: it.MessageID, Bytes: int64(len(it.Data))})
		}
	}
	c.link.deliver(items)
}

func (c *connActor) framerDelivered(ctx actor.Context, m *framerDelivered) {
	if m.idx+1 < len(c.framers) {
		next := c.framers[m.idx+1]
		if m.datagram {
			c.forwardDatagram(ctx, next, m) // datagram_framed.go
			return
		}
		for i, it := range m.items {
			// the end of the stream goes with the last piece, as from the
			// reader (connReader.post)
			end := m.eos && i == len(m.items)-1
			var err error
			if end {
				err = m.err
			}
			in := newFramerInput(it.Data, it.Meta, end, err)
			in.early = it.Early
			in.cost = it.cost() // counted in inflight by the framer below
			ctx.Send(next, in)
		}
		if m.eos && len(m.items) == 0 {
			ctx.Send(next, newFramerInput(nil, nil, true, m.err))
		}
		return
	}
	if m.eos && len(m.items) > 0 && c.endsReceiving(m.err) {
		// the framer delivered these with the end of the stream (an
		// unterminated last line, or the bytes read with the end): the
		// last of them is known to be the last as it is delivered
		m.items[len(m.items)-1].Last = true
	}
	c.deliver(m.items)
	c.streamDelivered(m.items)
	if m.eos {
		c.streamEnded(ctx, m.err)
	}
}

// endsReceiving reports whether an end of the received stream with err,
// handled now (streamEnded), ends receiving cleanly: no more data comes,
// and the message delivered last before it is final. Not at a failure,
// not under re-establishment (the stream goes on over the next
// transport), not during establishment, not while discarding after Close,
// and not when QUIC datagrams held for the stream's message follow it.
func (c *connActor) endsReceiving(err error) bool {
	if !cleanEnd(err) || c.discarding || c.state == Establishing {
		return false
	}
	if c.qd != nil && len(c.qd.held) > 0 {
		return false
	}
	return !(c.state == Established && c.dir.Receives() && c.mayReestablish())
}

// mayReestablish reports whether the re-establishment policy applies to a
// transport lost now (reestablish).
func (c *connActor) mayReestablish() bool {
	pol := c.spec.cfg.Reestablish
	if pol == nil || c.spec.passive != nil || c.closeAsked || (c.state != Established && c.state != Establishing) {
		return false // a closing connection is not brought back
	}
	b := pol.Normalized()
	return c.attemptsMade(b) < b.MaxAttempts
}

// attemptsMade is the number of consecutive attempts that a
// re-establishment starting now continues from: those of a failed attempt
// in progress, and those that brought up the transport that was lost,
// unless it stayed up the policy's StableAfter (Backoff.Carried).
func (c *connActor) attemptsMade(b supervision.Backoff) int {
	if c.state != Established || c.attempts == 0 {
		return int(c.attempts)
	}
	return b.Carried(int(c.attempts), time.Since(c.established))
}

// streamEnded handles the end of the received stream. A clean end of
// stream while Established half-closes the connection (RFC 9623 §10.1:
// FIN is not Closed): receiving ends, the last message is final, and the
// connection stays Established so that the application can still send;
// it closes once this side ends its stream too (Close, or a Final message
// written). When this side's end of stream was already sent, or under a
// re-establishment policy, it is a remote close. Anything else is a
// connection failure.
func (c *connActor) streamEnded(ctx actor.Context, err error) {
	c.eofSeen = true
	if err != nil && !errors.Is(err, io.EOF) {
		if c.state == Closing && (c.finSent || errors.Is(err, net.ErrClosed)) {
			c.finish(ctx)
			return
		}
		c.fail(ctx, c.endCause(err))
		return
	}
	if c.state == Establishing && c.everReady && c.mayReestablish() {
		// a re-establishment attempt's transport ended before its framers
		// were ready: the next attempt (fail), and nothing of the stream
		// ends (it goes on over the next transport)
		c.fail(ctx, fmt.Errorf("peer closed during establishment: %w", io.ErrUnexpectedEOF))
		return
	}
	// under a re-establishment policy the peer's end of stream ends only
	// this transport: the stream goes on over the next one, so nothing
	// received is final (the Link marks no message final before
	// endOfStream, nor one delivered with the end: endsReceiving)
	reest := c.state == Established && c.dir.Receives() && c.mayReestablish()
	if len(c.framers) == 0 && !c.discarding && !reest {
		// a byte stream without framer: the one stream-wide message ends
		c.link.deliver([]RecvItem{{MessageID: 1, EndOfMessage: true}})
	}
	c.flushHeldDatagrams()
	if reest && c.reestablish(ctx, fmt.Errorf("peer closed the connection: %w", io.EOF)) {
		return
	}
	c.link.endOfStream(nil)
	// nothing more reaches the application from this connection: the
	// session's datagrams go to the members that still receive
	c.stopReceivingDatagrams()
	switch c.state {
	case Established:
		if !c.finSent && !c.connectionless {
			c.halfClosed = true
			c.watchPeerReset(ctx)
			if c.sys.Tracing() {
				c.sys.trace(&messages.TraceRecord{Kind: "received", Event: "PeerEndOfStream", ConnectionId: c.spec.id, GroupId: c.spec.groupID})
			}
			return
		}
		c.apply(InRemoteClose, nil)
	case Establishing:
		c.fail(ctx, fmt.Errorf("peer closed during establishment: %w", io.ErrUnexpectedEOF))
		return
	}
	c.progressClose(ctx)
}

// watchPeerReset waits, in a goroutine counted in c.wg while it waits,
// for the peer to end this half-closed connection altogether: nothing
// reads any more, and without it the connection would only learn of it
// from its next write. A reset (stacks.ResetWatcher: a TCP RST, a QUIC
// STOP_SENDING or CONNECTION_CLOSE with an error, as the peer's Abort
// sends) is a ConnectionError; a graceful end where the stack shows one
// (QUIC: the STOP_SENDING of the peer's Close, or with QUIC datagrams the
// session's end, its CONNECTION_CLOSE without error; a Unix peer's close,
// on Linux) closes the connection. A
// TCP or TLS peer that closes its socket after its FIN sends nothing: that
// is learnt from the next write. The goroutine ends with the transport, or
// when this side ends its sending side.
func (c *connActor) watchPeerReset(ctx actor.Context) {
	var wait func() (ended bool, err error)
	if w, ok := c.t.(stacks.ResetWatcher); ok {
		// QUIC's WaitPeerReset returns nil only for this side's own end
		// (which the handler tells by finSent and closeAsked) or the
		// peer's graceful one; TCP's also when it cannot watch, or when a
		// write took the reset first (and reports it)
		graceful, session := c.stack == "quic", c.quicSessionEnd()
		wait = func() (bool, error) {
			err := w.WaitPeerReset()
			if err == nil && session != nil {
				return session() // datagrams may still go: the session decides
			}
			return err != nil || graceful, err
		}
	} else if sc, ok := c.t.(syscall.Conn); ok && c.stack == "unix" {
		rc, err := sc.SyscallConn()
		if err != nil {
			return
		}
		wait = func() (bool, error) { return unixWaitPeerClose(rc) }
	} else {
		return
	}
	gen, wg := fromTransport{c.tgen}, &c.wg
	root, self := ctx.ActorSystem().Root, ctx.Self()
	wg.Add(1)
	job := func() {
		ended, err := wait()
		wg.Done()
		if ended {
			root.Send(self, &peerReset{fromTransport: gen, err: err})
		}
	}
	// the reader, whose stream just ended, usually still runs (the end
	// of stream came here on its goroutine): it waits instead of a new
	// goroutine
	if !c.link.readerEnd.offer(job) {
		go job()
	}
}

// takeBackWatch runs on a goroutine of its own a peer-reset watch handed
// to the reader goroutine (watchPeerReset) that has not started yet: the
// connection is about to wait for its goroutines (c.wg, which counts the
// watch), maybe on that very reader goroutine (its stream's end ran the
// connection on it up to here). The transport is closed by then: the
// watch ends at once.
func (c *connActor) takeBackWatch() {
	if c.link == nil {
		return
	}
	if job := c.link.readerEnd.take(); job != nil {
		go job()
	}
}

// --- send ---

func (c *connActor) send(ctx actor.Context, m *messages.SendMessage) {
	if c.dropLost(m) {
		return
	}
	if c.parts != nil && c.failedEarlier(m) { // a part of a message that failed (partial.go)
		return
	}
	if m.Abandon {
		c.abandon(ctx, m)
		return
	}
	if !c.dir.Sends() {
		c.failSend(ctx, m, ErrReceiveOnly)
		return
	}
	if !c.state.Allows(OpSend) && (!c.sendingEarly || c.state != Closing) {
		c.failSend(ctx, m, &StateError{Op: OpSend, State: c.state})
		return
	}
	if c.finalSent {
		c.failSend(ctx, m, ErrFinalSent)
		return
	}
	if c.state == Establishing && !c.sendingFirst {
		c.pending = append(c.pending, m)
		if at, ok := deadlineOf(m); ok {
			c.armLifetime(ctx, at)
		}
		return
	}
	if c.datagram && c.sendMax > 0 && len(m.Data) > c.sendMax {
		c.failSend(ctx, m, &framers.TooLargeError{Size: uint64(len(m.Data)), Max: uint64(c.sendMax)})
		return
	}
	if err := c.unsupported(m); err != nil {
		c.failSend(ctx, m, err)
		return
	}
	if c.early && c.spec.passive == nil && (m.Props == nil || !m.Props.SafelyReplayable || len(c.heldEarly) > 0) {
		// 0-RTT: only safely replayable data may go before the handshake
		// completes (RFC 9622 §9.1.3.4); this waits for it, and so does
		// every message after one that waits: none overtakes it (a Final
		// message among them stays the last). The side that accepted the
		// connection sends at once, as a quic-go server does (0.5-RTT
		// data): an attacker who replays the client's 0-RTT packets cannot
		// read it (its keys come from the handshake's fresh key exchange),
		// and it is sent once
		c.heldEarly = append(c.heldEarly, m)
		return
	}
	if c.connectionless && m.Props != nil && !m.Props.SafelyReplayable {
		// RFC 9622 §9.1.3.4: a stack without duplicate protection needs
		// every message marked safely replayable
		c.failSend(ctx, m, ErrNotReplayable)
		return
	}
	if m.Props != nil && m.Props.Lifetime > 0 && !m.Queued.IsZero() && time.Since(m.Queued) > m.Props.Lifetime {
		// (a later part of a message sent in parts has no Queued: the
		// message's lifetime is its first part's, partial.go)
		c.failSend(ctx, m, ErrExpired)
		return
	}
	var dgBufs [][]byte // a message sent in parts on a datagram stack (datagram_partial.go)
	if c.gathersParts() && (!m.EndOfMessage || c.parts != nil && len(c.parts.dg) > 0) {
		var taken bool
		if taken, dgBufs = c.gatherDatagramPart(m); taken {
			return
		}
	}
	if c.sendQUICDatagram(m) { // msgReliable=false, msgOrdered=false on QUIC
		return
	}
	// a byte stream cannot interleave messages: while a message is sent in
	// parts, other messages wait for its end (partial.go)
	if c.openPartial != 0 && m.MessageID != c.openPartial {
		c.hold(m)
		return
	}
	whole := true // not the last part of a message sent in parts
	if !m.EndOfMessage {
		c.openPartial = m.MessageID
	} else if c.openPartial == m.MessageID {
		c.openPartial, whole = 0, false
		defer c.releaseHeld(ctx)
	}
	if m.Props != nil && m.Props.Final && m.EndOfMessage {
		c.finalSent = true
	}
	c.inFlight++
	if n := len(c.framers); n > 0 {
		// the send and the framer's message in one (recycled) object; the
		// last part of a message sent in parts never moves (movable): a
		// framer may have sent the earlier parts as they came
		e := newSend(m, whole)
		if c.batching {
			e.out.batched = true
			c.batchLeft++
		}
		data := m.Data
		if dgBufs != nil {
			data = concat(dgBufs) // its parts gathered: one Message, one datagram
		}
		e.fs = framerSend{send: &e.out, data: data, meta: metaAt(m.FramerMeta, n-1), eom: m.EndOfMessage}
		if n > 1 {
			c.postTopFramer(ctx, &e.fs)
			return
		}
		// A lone framer whose mailbox is idle runs within this post and
		// leaves its output in e.ff, unless an earlier output of it is
		// still queued here (framerActor.flushOut): it is written now,
		// without entering this actor's queue. Otherwise (the framer is
		// busy on another goroutine) the output comes as a message.
		e.reply.Store(replyWaiting)
		c.postTopFramer(ctx, &e.fs)
		if e.reply.CompareAndSwap(replyWaiting, replyNone) {
			return
		}
		if e.ff.tgen == c.tgen {
			c.framed(ctx, &e.ff)
		}
		return
	}
	e := newSend(m, false)
	e.one[0] = m.Data
	bufs := e.one[:]
	if dgBufs != nil {
		bufs = dgBufs
	}
	c.enqueueWrite(ctx, writeItem{send: &e.out, bufs: bufs})
}

// ErrPropertyNotSupported: a message property the selected stack cannot
// honour (RFC 9622 §9.1.3: an inconsistent property is a SendError).
var ErrPropertyNotSupported = errors.New("message property not supported by the selected stack")

// unsupported checks the message properties against what the stack can do.
func (c *connActor) unsupported(m *messages.SendMessage) error {
	p := m.Props
	if p == nil {
		return nil
	}
	switch {
	case p.NoSegmentation && !c.datagram && !c.connectionless: // UDP with framers: one datagram per framed message too
		return fmt.Errorf("%w: noSegmentation on %s, a byte stream the transport segments", ErrPropertyNotSupported, c.stack)
	case p.NoSegmentation && c.sendMax > 0 && len(m.Data) > c.sendMax:
		return fmt.Errorf("%w: noSegmentation and %d bytes above singularTransmissionMsgMaxLen %d", ErrPropertyNotSupported, len(m.Data), c.sendMax)
	case !p.Reliable && !c.connectionless && !c.perMsgReliability():
		return fmt.Errorf("%w: msgReliable=false on %s, which delivers every message reliably (set perMsgReliability to choose a stack that can)", ErrPropertyNotSupported, c.stack)
	case p.ReliableSet && p.Reliable && c.cannotReliable():
		return fmt.Errorf("%w: msgReliable=true on %s, which does not retransmit", ErrPropertyNotSupported, c.stack)
	case p.OrderedSet && p.Ordered && c.cannotOrder():
		return fmt.Errorf("%w: msgOrdered=true on %s, which does not keep messages in order", ErrPropertyNotSupported, c.stack)
	case p.ChecksumLen >= 0 && !c.partialChecksum():
		return fmt.Errorf("%w: msgChecksumLen %d on %s, which always checksums whole messages", ErrPropertyNotSupported, p.ChecksumLen, c.stack)
	}
	return c.profileUnsupported(m) // msgCapacityProfile on a byte stream (liveprops.go)
}

// perMsgReliability: the connection may send a message unreliably. Not
// when it Prohibits perMsgReliability: the stack (QUIC) was selected with
// its unreliable messages off, as on a stack without them.
func (c *connActor) perMsgReliability() bool {
	caps, ok := c.caps()
	return ok && caps.PerMsgReliability &&
		c.spec.cfg.Properties.GetValues()["perMsgReliability"].GetPreference() != int32(stacks.Prohibit)
}

func (c *connActor) partialChecksum() bool {
	caps, ok := c.caps()
	return ok && !caps.FullChecksumSend
}

// caps are the selected stack's capabilities; ok is false for a stack
// stacks.ByName does not know (then nothing is ruled out by them).
func (c *connActor) caps() (caps stacks.Capabilities, ok bool) {
	st, err := stacks.ByName(c.stack)
	if err != nil {
		return caps, false
	}
	return st.Capabilities(), true
}

// cannotReliable: the stack is known not to retransmit.
func (c *connActor) cannotReliable() bool {
	caps, ok := c.caps()
	return ok && !caps.Reliability
}

// cannotOrder: the stack is known not to keep messages in order.
func (c *connActor) cannotOrder() bool {
	caps, ok := c.caps()
	return ok && !caps.PreserveOrder
}

// postTopFramer sends msg to the top framer, through a Poster made once
// per framer.
func (c *connActor) postTopFramer(ctx actor.Context, msg any) {
	top := c.framers[len(c.framers)-1]
	if top != c.top.pid {
		c.top = Poster{pid: top}
		if p := NewPoster(ctx.ActorSystem(), top); p != nil {
			c.top = *p
		}
	}
	if c.top.proc == nil {
		ctx.Send(top, msg)
		return
	}
	c.top.Post(msg)
}

func metaAt(meta []framers.Metadata, i int) framers.Metadata {
	if i < len(meta) {
		return meta[i]
	}
	return nil
}

// sendFailed reports send m's SendError (or Expired, for ErrExpired).
func (c *connActor) sendFailed(m *messages.SendMessage, err error) {
	// m is not touched after its event: its sender may reuse it
	if c.sys.Tracing() {
		if err == ErrExpired {
			c.sys.trace(&messages.TraceRecord{Kind: "expired", Event: "Expired", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID})
		} else {
			c.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID, Error: err.Error()})
		}
	}
	c.link.sendDone([]uint64{m.SendID}, len(m.Data), err)
}

// failSend fails send m, which the connection has not taken: its
// SendError (or Expired), and, for a part of a message sent in parts, the
// rest of the message (partFailed).
func (c *connActor) failSend(ctx actor.Context, m *messages.SendMessage, err error) {
	c.sendFailed(m, err)
	c.partFailed(ctx, m, err)
}

// framed routes a framer's output down the chain, or to the socket from the
// lowest framer.
func (c *connActor) framed(ctx actor.Context, m *framerFramed) {
	if m.abort {
		if m.idx > 0 {
			ctx.Send(c.framers[m.idx-1], &framerSend{abort: true})
		}
		return
	}
	if m.idx > 0 {
		if m.send == nil && len(m.bufs) == 0 {
			return
		}
		data := concat(m.bufs)
		var meta framers.Metadata
		eom := true
		if m.send != nil {
			meta = metaAt(m.send.msg.FramerMeta, m.idx-1)
			eom = m.send.msg.EndOfMessage
		}
		ctx.Send(c.framers[m.idx-1], &framerSend{send: m.send, data: data, meta: meta, eom: eom})
		return
	}
	if m.send != nil && m.send.batched {
		m.send.batched = false
		c.batchLeft--
	}
	c.enqueueWrite(ctx, writeItem{send: m.send, bufs: m.bufs})
}

func concat(bufs [][]byte) []byte {
	if len(bufs) == 1 {
		return bufs[0]
	}
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out
}

func (c *connActor) enqueueWrite(ctx actor.Context, w writeItem) {
	var at time.Time
	life := false
	if w.send != nil && (movable(w) || c.datagram) {
		at, life = deadlineOf(w.send.msg)
	}
	c.wq = append(c.wq, w)
	c.flush(ctx)
	if life && len(c.wq) > 0 { // it waits: Expired when its lifetime passes
		c.armLifetime(ctx, at)
	}
}

// waitForGrant applies the group's transmission scheduler (connScheduler)
// to a connection that shares its transport with other members (a stream of
// a QUIC session): before each batch it asks its group for the turn, and
// waits. It reports whether the write must wait.
func (c *connActor) waitForGrant(ctx actor.Context) bool {
	if !c.shared || c.left {
		return false
	}
	if c.granted {
		c.takeQuantum()
		return false
	}
	if !c.grantAsked {
		c.grantAsked = true
		n := 0
		for _, w := range c.wq {
			for _, b := range w.bufs {
				n += len(b)
			}
		}
		ctx.Send(c.spec.group, &writeRequest{from: ctx.Self(), bytes: n, priority: c.connPriority()})
	}
	return true
}

// takeQuantum keeps at most one quantum (the grant's: schedQuantum, or one
// packet under RoundRobinPerPacket) of queued items for this turn and sets
// the rest aside, in order, for the next turns (splitTurn).
func (c *connActor) takeQuantum() {
	q, split := int(c.quantum), c.splitTurns
	if q <= 0 {
		q = schedQuantum
	}
	turn, rest, _ := splitTurn(c.wq, q, split)
	if len(rest) > 0 {
		c.wqRest = append(append([]writeItem(nil), rest...), c.wqRest...)
		c.wq = turn
	}
}

// releaseGrant gives the turn back to the group after a write.
func (c *connActor) releaseGrant(ctx actor.Context, batch []writeItem) {
	if !c.granted {
		return
	}
	wrote := 0 // what the turn wrote: FairCapacity's charge
	for _, w := range batch {
		for _, b := range w.bufs {
			wrote += len(b)
		}
	}
	if len(c.wqRest) > 0 { // what waited for the next turn goes first
		c.wq = append(c.wqRest, c.wq...)
		c.wqRest = nil
	}
	c.granted, c.grantAsked = false, false
	rel := &writeRelease{from: ctx.Self(), wrote: wrote}
	for _, w := range c.wq {
		for _, b := range w.bufs {
			rel.more += len(b)
		}
	}
	if rel.more > 0 { // the next request rides with the release
		rel.priority = c.connPriority()
		c.grantAsked = true
	}
	ctx.Send(c.spec.group, rel)
}

// returnTurn gives back a turn (the group's grant) that writes nothing:
// what it was asked for expired, or was lost with the transport, while
// the connection waited for it. What waits for a later turn (wqRest) asks
// for it again with the release.
func (c *connActor) returnTurn(ctx actor.Context) {
	if c.granted {
		c.releaseGrant(ctx, nil)
	}
}

// connPriority is the connection's current connPriority (default 100).
func (c *connActor) connPriority() int64 {
	if v := c.spec.cfg.Properties.GetValues()["connPriority"]; v != nil {
		return v.GetIntValue()
	}
	return 100
}

// dropExpired reports Expired (RFC 9622 §9.1.3.1) for every whole message
// in batch whose msgLifetime passed while it waited, and returns the rest.
// Parts of a byte stream are never dropped: that would corrupt it.
func (c *connActor) dropExpired(batch []writeItem) []writeItem {
	var now time.Time // read once, when a message has a lifetime
	out := batch[:0]
	for _, w := range batch {
		if w.send != nil && (movable(w) || c.datagram) {
			p, m := w.send.msg.Props, w.send.msg
			if p != nil && p.Lifetime > 0 && !m.Queued.IsZero() {
				if now.IsZero() {
					now = time.Now()
				}
				if now.Sub(m.Queued) > p.Lifetime {
					c.inFlight--
					// m is not touched after its event: its sender may reuse it
					if c.sys.Tracing() {
						c.sys.trace(&messages.TraceRecord{Kind: "expired", Event: "Expired", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID})
					}
					c.link.sendDone([]uint64{m.SendID}, w.send.bytes, ErrExpired)
					continue
				}
			}
		}
		out = append(out, w)
	}
	return out
}

// orderByPriority orders the complete messages waiting in one batch by
// msgPriority (lower first, RFC 9622 §9.1.3.2), keeping arrival order among
// equals; a final message stays behind every other (§9.1.3.5). Only a
// message with msgOrdered false moves (§9.1.3.3: the Messages with it true
// keep the order they were submitted in; the default on a byte stream,
// which preserves order): it may go ahead of ordered ones, which keep
// their order among themselves. Parts of unfinished messages and
// framer-generated bytes are never moved, and nothing moves across them, so
// a byte stream is never interleaved.
func orderByPriority(batch []writeItem) { orderRuns(batch, movable) }

// orderDatagramsByPriority is orderByPriority for a batch of datagrams
// (flushDatagrams): each item is one whole message, framed or not, so
// every one of them may move.
func orderDatagramsByPriority(batch []writeItem) {
	orderRuns(batch, func(w writeItem) bool { return w.send != nil && !w.cont })
}

// orderRuns orders each run of items that may move (orderRun). A run of
// ordered messages only (the default on a byte stream) stays as it is:
// its cost is one look at each item's properties.
func orderRuns(batch []writeItem, movable func(writeItem) bool) {
	start, unordered := 0, false
	for i := 0; i <= len(batch); i++ {
		if i < len(batch) && movable(batch[i]) {
			unordered = unordered || !orderedMsg(batch[i])
			continue
		}
		if unordered && i-start > 1 {
			orderRun(batch[start:i])
		}
		start, unordered = i+1, false
	}
}

// orderedMsg: w's message keeps its place among the ordered messages
// (msgOrdered true, or no properties: nothing asked to move it).
func orderedMsg(w writeItem) bool {
	p := w.send.msg.Props
	return p == nil || p.Ordered
}

// orderRun orders run by sendRank: the unordered messages sorted by it,
// stably, merged with the ordered ones, which keep their order; an
// unordered message goes before the next ordered one when it ranks before
// it (lower), or ranks the same and came first.
func orderRun(run []writeItem) {
	type ranked struct {
		w    writeItem
		i    int
		rank int64
	}
	rs := make([]ranked, 0, len(run))
	for i, w := range run {
		if orderedMsg(w) {
			rs = append(rs, ranked{w: w, i: i, rank: sendRank(w)})
		}
	}
	n := len(rs)
	for i, w := range run {
		if !orderedMsg(w) {
			rs = append(rs, ranked{w: w, i: i, rank: sendRank(w)})
		}
	}
	ord, unord := rs[:n], rs[n:]
	sort.SliceStable(unord, func(a, b int) bool { return unord[a].rank < unord[b].rank })
	for k := range run {
		takeUnord := len(ord) == 0 || len(unord) > 0 &&
			(unord[0].rank < ord[0].rank || unord[0].rank == ord[0].rank && unord[0].i < ord[0].i)
		if takeUnord {
			run[k], unord = unord[0].w, unord[1:]
		} else {
			run[k], ord = ord[0].w, ord[1:]
		}
	}
}

func movable(w writeItem) bool {
	return !w.cont && w.send != nil && w.send.msg.EndOfMessage && w.send.msg.MessageID != 0 && w.send.framed
}

func sendRank(w writeItem) int64 {
	p := w.send.msg.Props
	if p == nil {
		return 100
	}
	if p.Final {
		// after every other, whatever its msgPriority (any int64 >= 0):
		// a message that ranks the same and came first stays before it
		return math.MaxInt64
	}
	return p.Priority
}

// tryWriter is implemented by transports that are not sockets but can
// queue a write without blocking (QUIC streams: stacks quicStream): it
// takes a prefix of b, consumed from it, and reports blocked for the rest.
type tryWriter interface {
	TryWriteBuffers(b *net.Buffers) (blocked bool, err error)
}

// buffersWriter is implemented by transports that can write a vector of
// buffers in one system call.
type buffersWriter interface {
	WriteBuffers(b *net.Buffers) (int64, error)
}

// flush hands everything queued to one writer goroutine, which writes it
// with one vectored write and reports back; while it writes, new messages
// queue up and leave together in the next batch (write coalescing). Under
// maxSendRate a batch is at most one pacer burst and may wait for the
// pacer first (paceBatch, sockprops.go).
func (c *connActor) flush(ctx actor.Context) {
	if c.writing || c.holdFlush || c.batchLeft > 0 {
		return
	}
	if len(c.wq) == 0 || c.t == nil {
		// a turn that came for messages gone meanwhile (Expired while
		// they waited for it, or failed with their transport) goes back
		// at once: the group's other members wait for it
		c.returnTurn(ctx)
		return
	}
	if c.waitForGrant(ctx) {
		return
	}
	if c.datagram || c.connectionless { // UDP with framers too: one datagram per framed message
		c.flushDatagrams(ctx)
		return
	}
	batch := c.dropExpired(c.wq)
	c.wq, c.wqSpare = c.wqSpare, nil
	if len(batch) == 0 { // all Expired: nothing to write in the turn
		c.returnTurn(ctx)
		c.progressClose(ctx)
		return
	}
	orderByPriority(batch)
	batch, held := c.paceBatch(ctx, batch) // maxSendRate (sockprops.go)
	if held {
		return
	}
	c.writeStream(ctx, batch)
}

// writeStream writes one batch to a byte-stream transport: what the socket
// takes at once is written here, only a rest goes to a writer goroutine.
func (c *connActor) writeStream(ctx actor.Context, batch []writeItem) {
	bufs := c.wbufs[:0]
	c.wbufs = nil
	total := 0
	for _, w := range batch {
		for _, b := range w.bufs {
			if len(b) > 0 {
				bufs = append(bufs, b)
				total += len(b)
			}
		}
	}
	var small []byte
	if len(bufs) > 1 && total <= smallWrite {
		// small pieces are copied into one buffer: one plain write is
		// cheaper than a vector, and the peer gets one segment
		buf := c.smallBuf[:0]
		for _, b := range bufs {
			buf = append(buf, b...)
		}
		clear(bufs)
		bufs = append(bufs[:0], buf)
		c.smallBuf, small = nil, buf
	}
	t := c.t
	if c.rc == nil {
		if rw, ok := t.(rawWriter); ok {
			c.rc, _ = rw.SyscallConn()
		}
	}
	var tw tryWriter
	try := false
	if c.rc == nil {
		tw, try = t.(tryWriter)
	}
	if (c.rc != nil || try) && total > 0 {
		// optimistic write: whatever the socket takes now is written here,
		// without blocking; only a rest goes to a writer goroutine
		all := bufs
		var blocked bool
		var err error
		if c.rc != nil {
			blocked, err = c.wop.write(c.rc, &bufs)
		} else {
			qb := bufs // its own variable: bufs stays off the heap
			blocked, err = tw.TryWriteBuffers(&qb)
			bufs = qb
		}
		if err != nil || !blocked {
			written := total
			if err != nil {
				// the transport took a prefix before it failed (a short
				// write, then the error): bufs holds the rest
				written -= buffersLen(bufs)
			}
			if small != nil {
				c.smallBuf = small[:0] // written: reuse it
			}
			clear(all)
			c.wbufs = all[:0]
			c.wroteBatch(ctx, batch, err, written)
			return
		}
	}
	c.writing = true
	root, self, gen := ctx.ActorSystem().Root, ctx.Self(), fromTransport{c.tgen}
	c.writeRest(root, self, gen, t, bufs, total, batch, c.watchWrite(ctx))
}

// buffersLen is the number of bytes in b.
func buffersLen(b net.Buffers) int {
	n := 0
	for _, p := range b {
		n += len(p)
	}
	return n
}

// writeRest writes what the socket did not take at once in a writer
// goroutine, which reports writeDone; total is the bytes of the whole
// batch, bufs what is left of them. With ww (connTimeout), the write
// reports its progress to it (write_stall.go).
func (c *connActor) writeRest(root *actor.RootContext, self *actor.PID, gen fromTransport, t stacks.Transport, bufs net.Buffers, total int, batch []writeItem, ww *writeWatch) {
	wd := &writeDone{fromTransport: gen, batch: batch}
	wd.finished.Add(1)
	c.inWrite = wd
	go func() {
		var err error
		written := total
		if len(bufs) > 0 {
			left := buffersLen(bufs)
			var n int64
			c.wg.Add(1)
			if ww != nil && ww.chunked {
				if err = ww.write(t, &bufs); err != nil { // it consumes what it wrote
					n = int64(left - buffersLen(bufs))
				}
			} else if bw, ok := t.(buffersWriter); ok {
				n, err = bw.WriteBuffers(&bufs)
			} else {
				n, err = bufs.WriteTo(t)
			}
			c.wg.Done()
			if err != nil {
				written = total - left + int(min(max(n, 0), int64(left)))
			}
		}
		wd.err, wd.written = err, written
		wd.finished.Done()
		root.Send(self, wd)
	}()
}

func (c *connActor) writeDone(ctx actor.Context, m *writeDone) {
	if c.inWrite == m {
		c.inWrite = nil
	}
	c.wroteBatch(ctx, m.batch, m.err, m.written)
}

// abortWrite, as the connection ends with its transport aborted or failed,
// waits for the write a writer goroutine has under way (the transport's
// end ends it at once; the actor waits for its goroutines as it stops
// anyway) and reports Sent for the messages the transport took whole: a
// write can complete just before the end while its report is still on
// its way to the actor, and the peer may have them. The messages it did
// not take (and those it had no bytes of) get the end's SendError with
// the other pending ones.
func (c *connActor) abortWrite() {
	w := c.inWrite
	if w == nil {
		return
	}
	c.inWrite = nil
	w.finished.Wait()
	written := w.written
	if w.err == nil {
		written = math.MaxInt
	}
	var sentArr [8]uint64
	sent, sentBytes := sentArr[:0], 0
	off := 0
	for _, it := range w.batch {
		start := off
		for _, b := range it.bufs {
			off += len(b)
		}
		// an item without bytes (a framer sent nothing for it) did not
		// reach the peer: it fails with the rest
		if it.send == nil || off == start || !takenWhole(start, off, written) {
			continue
		}
		sent = append(sent, it.send.msg.SendID)
		sentBytes += it.send.bytes
		if c.sys.Tracing() {
			c.sys.trace(&messages.TraceRecord{Kind: "sent", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: it.send.msg.SendID, Bytes: int64(len(it.send.msg.Data))})
		}
	}
	if len(sent) > 0 {
		c.link.sendDone(sent, sentBytes, nil)
	}
}

// takenWhole tells whether the item at bytes [start, end) of a batch lies
// within its first written bytes (an empty item exactly at the failure is
// not known to be taken).
func takenWhole(start, end, written int) bool {
	return end < written || (end == written && end > start)
}

// wroteBatch reports the Sent (or SendError) events of a written batch and
// goes on with what is queued. When werr is set, the transport took the
// batch's first written bytes before it failed (datagrams: those before
// the failing one): the messages wholly within them are Sent, the others
// SendErrors (failedBatch).
func (c *connActor) wroteBatch(ctx actor.Context, batch []writeItem, werr error, written int) {
	c.writing = false
	c.unwatchWrite()
	c.releaseGrant(ctx, batch)
	if werr != nil {
		c.failedBatch(ctx, batch, werr, written)
		return
	}
	var idArr [8]uint64
	ids := idArr[:0]
	acquired := 0
	for _, w := range batch {
		if w.send != nil {
			ids = append(ids, w.send.msg.SendID)
			acquired += w.send.bytes
			c.inFlight--
		}
	}
	if c.sys.Tracing() { // before the Sent events: a trace never lags what the application saw
		for _, w := range batch {
			if w.send != nil {
				c.sys.trace(&messages.TraceRecord{Kind: "sent", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: w.send.msg.SendID, Bytes: int64(len(w.send.msg.Data))})
			}
		}
	}
	c.link.sendDone(ids, acquired, nil)
	recycleSends(batch)
	if c.wqSpare == nil && cap(batch) <= 64 {
		clear(batch)
		c.wqSpare = batch[:0] // the next queue reuses its array
	}
	c.closeWriteAfterFinal()
	c.flush(ctx)
	c.progressClose(ctx)
}

// closeWriteAfterFinal closes the sending side once a Final message and
// everything before it are written.
func (c *connActor) closeWriteAfterFinal() {
	if c.finalSent && c.inFlight == 0 && len(c.wq) == 0 && !c.finSent && c.state == Established {
		c.finSent = true
		c.closeWrite() // final: the sending side is closed
		if c.halfClosed {
			// both directions are done: close (progressClose finishes it)
			c.apply(InRemoteClose, nil)
		}
	}
}

// failedBatch reports a batch whose write failed after the transport took
// its first written bytes (RFC 9622 §9.2.2): a message whose bytes, framer
// headers included, all lie within them was passed to the transport and is
// Sent; the message the failure cut and those after it get SendError. Then
// the connection fails.
func (c *connActor) failedBatch(ctx actor.Context, batch []writeItem, werr error, written int) {
	werr = c.socketCause(werr)
	var sentArr, errArr [8]uint64
	sent, failed := sentArr[:0], errArr[:0]
	sentBytes, failedBytes := 0, 0
	off := 0
	for _, w := range batch {
		start := off
		for _, b := range w.bufs {
			off += len(b)
		}
		if w.send == nil {
			continue // a framer's own bytes, or the head of a cut item
		}
		c.inFlight--
		if takenWhole(start, off, written) {
			sent = append(sent, w.send.msg.SendID)
			sentBytes += w.send.bytes
			if c.sys.Tracing() { // before the Sent events: a trace never lags what the application saw
				c.sys.trace(&messages.TraceRecord{Kind: "sent", Event: "Sent", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: w.send.msg.SendID, Bytes: int64(len(w.send.msg.Data))})
			}
			continue
		}
		failed = append(failed, w.send.msg.SendID)
		failedBytes += w.send.bytes
	}
	if c.sys.Tracing() {
		for _, id := range failed {
			c.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: id, Error: werr.Error()})
		}
	}
	if len(sent) > 0 {
		c.link.sendDone(sent, sentBytes, nil)
	}
	c.link.sendDone(failed, failedBytes, werr)
	c.fail(ctx, fmt.Errorf("write: %w", werr))
}

// closeWrite shuts down the sending side of the transport (its FIN, TLS's
// close_notify, a QUIC stream's FIN). The reader is told first: once the
// peer's FIN answers, the TCP socket is TCP_CLOSE as one a reset ended
// (rawStream.endOfStream; a TLS transport tells its reads itself).
func (c *connActor) closeWrite() {
	if sr := c.link.reader; sr != nil {
		sr.cr.raw.endCheck.CompareAndSwap(endCheckTCP, endSendShut)
	}
	_ = c.t.CloseWrite()
}

// endCause is the cause of a received stream's end err. A TCP stream that
// ended without the peer's FIN (stacks.ErrEndedWithoutFIN: a write took
// the socket's error; TCP or TLS) ends with that write's error: a write under way in the writer
// goroutine has it, or gets it at once (the transport is aborted first:
// the connection fails anyway), and is waited for; its EPIPE is the
// socket's error of a reset in CLOSE_WAIT (a FIN, then the reset), named
// ECONNRESET as the reader names it. A write made by the connection
// itself (tryWritev) failed the connection as it took the error.
func (c *connActor) endCause(err error) error {
	if !errors.Is(err, stacks.ErrEndedWithoutFIN) || c.t == nil {
		return err
	}
	w := c.inWrite
	if w == nil {
		return err
	}
	_ = c.t.Abort()
	w.finished.Wait()
	switch {
	case w.err == nil || errors.Is(w.err, net.ErrClosed):
		return err
	case errors.Is(w.err, syscall.EPIPE):
		return fmt.Errorf("write: %w", os.NewSyscallError("write", syscall.ECONNRESET))
	}
	return fmt.Errorf("write: %w", w.err)
}

// socketCause is the cause of a write's failure. A socket's error
// (ETIMEDOUT when TCP_USER_TIMEOUT, the kernel's side of connTimeout,
// ended it; ECONNRESET) goes to the first call that asks for it, and the
// calls after it get EPIPE: when the reader took it, the write's error
// says only that the pipe broke, and the reader's report, which names the
// cause, may reach the actor after it. On EPIPE this closes the transport
// (the connection fails anyway), waits for the reader to leave its read
// (a read under way returns once the transport is closed) and returns the
// socket error it saw, if any; else werr.
func (c *connActor) socketCause(werr error) error {
	if !errors.Is(werr, syscall.EPIPE) || c.t == nil || c.link.reader == nil {
		return werr
	}
	_ = c.t.Abort()
	c.takeBackWatch() // the watch may be handed to the reader: it ends now
	c.wg.Wait()
	if cause := c.link.reader.cr.raw.readFault(); cause != nil {
		return cause
	}
	return werr
}

// --- close, abort, failure ---

func (c *connActor) close(ctx actor.Context) {
	c.closeAsked = true
	switch c.state {
	case Establishing:
		c.apply(InClose, nil)
		c.end(ctx)
		return
	case Established:
		c.apply(InClose, nil)
	case Closing:
	default:
		return
	}
	// after Close the application must not expect more data: drop it, and
	// let receives drain what already arrived
	c.discarding = true
	c.stopReceivingDatagrams() // the session's datagrams go to the members that still receive
	c.link.endOfStream(nil)
	c.progressClose(ctx)
}

// progressClose advances a graceful close: every accepted message is
// written, the framers' Stop events have run (top down); then, when the
// transport is quiescent (nothing received unread, everything sent
// acknowledged: stacks.QuiescentTransport) it is closed at once, since
// nothing can be lost; otherwise the sending side is closed (FIN) and the
// connection waits for the peer's end of stream (bounded by the linger
// timeout), reading and discarding whatever comes, before it reports Closed.
func (c *connActor) progressClose(ctx actor.Context) {
	if c.state != Closing {
		return
	}
	if c.inFlight > 0 || c.writing || len(c.wq) > 0 || len(c.heldEarly) > 0 {
		// (sends held for the 0-RTT handshake go first: handshakeDone)
		// read meanwhile: a peer blocked in writing to this connection
		// may not read the rest of what it is sent
		c.link.setReadAhead(true)
		return
	}
	for int(c.framersStop) < len(c.framers) {
		idx := len(c.framers) - 1 - int(c.framersStop)
		if c.stopSent(idx) {
			return
		}
		stop := &framerStop{}
		ctx.Send(c.framers[idx], stop)
		if stop.done.CompareAndSwap(stopOpen, stopLooked) {
			return // framerStopped comes
		}
		// the framer (idle: it ran on this goroutine) stopped at once
		// and sends no framerStopped: with nothing queued here, which it
		// would have come after, this is its turn; else it goes after
		// what is queued
		if c.mb == nil || !c.mb.empty() {
			ctx.Send(ctx.Self(), &framerStopped{fromTransport: fromTransport{c.tgen}, idx: idx})
			return
		}
		c.framersStop++
	}
	if c.eofSeen || c.connectionless { // connectionless: nothing to wait for
		// the peer's end of stream is in: the transport's Close sends
		// the FIN (or QUIC's, TLS's close_notify) after whatever is
		// queued, as CloseWrite would, with one system call instead of two
		c.finSent = true
		c.finish(ctx)
		return
	}
	if !c.finSent {
		c.finSent = true
		if q, ok := c.t.(stacks.QuiescentTransport); ok && q.Quiescent() {
			c.finish(ctx) // the FIN goes out with the close
			return
		}
		c.closeWrite()
	}
	c.link.setReadAhead(true) // the peer's end of stream is awaited
	if c.linger == nil {
		d := c.spec.cfg.LingerTimeout
		if d <= 0 {
			d = 5 * time.Second
		}
		c.closeGen++
		gen, root, self := c.closeGen, ctx.ActorSystem().Root, ctx.Self()
		c.linger = time.AfterFunc(d, func() { root.Send(self, &lingerExpired{gen: gen}) })
	}
}

// stopSent remembers which framers were already sent their Stop event.
func (c *connActor) stopSent(idx int) bool {
	if idx < 64 {
		bit := uint64(1) << idx
		sent := c.stopMarks&bit != 0
		c.stopMarks |= bit
		return sent
	}
	if c.stopMore == nil {
		c.stopMore = map[int]bool{}
	}
	sent := c.stopMore[idx]
	c.stopMore[idx] = true
	return sent
}

// noteRelease hands the link what the closed transport's socket release
// is (stacks.ReleaseWatcher): the connection's Done waits for it.
func (c *connActor) noteRelease(t stacks.Transport) {
	if w, ok := t.(stacks.ReleaseWatcher); ok {
		c.link.setReleased(w.Released())
	}
}

func (c *connActor) finish(ctx actor.Context) {
	if c.t != nil {
		_ = c.t.Close()
		c.tClosed = true
		c.noteRelease(c.t)
	}
	c.apply(InCloseDone, nil)
	c.end(ctx)
}

func (c *connActor) abort(ctx actor.Context, cause error) {
	c.closeAsked = true
	if c.state == Closed {
		return
	}
	if c.t != nil {
		_ = c.t.Abort()
		c.tClosed = true
		c.noteRelease(c.t)
	}
	c.abortWrite()
	err := ErrAborted
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrAborted, cause)
	}
	c.failPending(err)
	c.apply(InAbort, err)
	c.end(ctx)
}

func (c *connActor) fail(ctx actor.Context, err error) {
	if c.state == Closed {
		return
	}
	if c.tentative && c.state == Establishing {
		c.tentativeLost(ctx, err) // an attempt that has not won: the race goes on
		return
	}
	// an Established transport lost, or the transport of a
	// re-establishment attempt lost before its framers were ready (the
	// peer closed during their handshake): the next attempt, while the
	// policy has some left
	if (c.state == Established || c.state == Establishing && c.everReady && c.t != nil) && c.reestablish(ctx, err) {
		return
	}
	if c.t != nil {
		_ = c.t.Abort()
		c.tClosed = true
		c.noteRelease(c.t)
	}
	c.abortWrite()
	c.failPending(err)
	c.apply(InFailure, err)
	c.end(ctx)
}

func (c *connActor) failPending(err error) {
	var held []*messages.SendMessage
	if c.parts != nil {
		held, c.parts.held = c.parts.held, nil
	}
	for _, m := range append(append(c.pending, held...), c.heldEarly...) {
		if m.Abandon {
			continue // no event
		}
		if c.sys.Tracing() {
			c.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: c.spec.id, GroupId: c.spec.groupID, MessageId: m.SendID, Error: err.Error()})
		}
		c.link.sendDone([]uint64{m.SendID}, len(m.Data), err)
		c.noteFailedPart(m, err)
	}
	c.pending, c.heldEarly = nil, nil
}

// respondIfAsked answers v to a request; a told message (Close, Abort from
// the facade or the group) has no sender, and answering it would only make
// a dead letter (an event published and logged).
func respondIfAsked(ctx actor.Context, v any) {
	if ctx.Sender() != nil {
		ctx.Respond(v)
	}
}

// end stops the actor after its terminal event; the group learns of it
// through Terminated.
func (c *connActor) end(ctx actor.Context) {
	if c.ended {
		return
	}
	c.ended = true
	c.link.closeGate()
	ctx.Stop(ctx.Self())
}

func (c *connActor) rejectAfterEnd(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.ListGroupMembers:
		ctx.Forward(c.spec.group)
	case *messages.SendMessage:
		if !m.Abandon {
			c.sendFailed(m, &StateError{Op: OpSend, State: Closed})
		}
	case *messages.SendBatch:
		for _, sm := range m.Messages {
			if !sm.Abandon {
				c.sendFailed(sm, &StateError{Op: OpSend, State: Closed})
			}
		}
	case *messages.GetConnectionInfo:
		ctx.Respond(c.info())
	case *messages.CloseConnection, *messages.AbortConnection:
		respondIfAsked(ctx, true)
	case *messages.SetConnectionProperty:
		ctx.Respond(&StateError{Op: OpSetProperty, State: Closed})
	case *ChangeEndpoints:
		ctx.Respond(&StateError{Op: OpChangeEndpoints, State: Closed})
	case *transportOffered:
		if t := c.link.takeTransport(); t != nil {
			_ = t.Abort()
		}
	case *StreamOpened:
		// the stream a rejoin asked for, answered after the connection
		// ended: it would keep its QUIC session open
		if m.T != nil {
			_ = m.T.Abort()
		}
	}
}

func (c *connActor) stopping() {
	c.endEstablishment()
	if c.mig != nil {
		c.mig.cancel()
	}
	c.sockStop()
	c.pathStop()
	if c.linger != nil {
		c.linger.Stop()
	}
	c.stopLifetime()
	c.unwatchWrite()
	if c.backoff != nil {
		c.backoff.Stop()
	}
	if c.stopEarly != nil {
		c.stopEarly()
		c.stopEarly = nil
	}
	c.stopQUICDatagrams()
	if t := c.t; t != nil && !c.tClosed { // closed already when the connection ended
		if c.tentative {
			_ = t.Abort() // an attempt that never won
		} else {
			_ = t.Close()
		}
		if c.state != Closed {
			c.noteRelease(t) // before the terminal event below
		}
	}
	for t := c.link.takeTransport(); t != nil; t = c.link.takeTransport() {
		_ = t.Abort()
	}
	c.link.closeGate()
	if c.state != Closed {
		// stopped from outside (Shutdown with abort, supervision)
		c.state = Closed
		c.link.setState(Closed)
		c.failPending(ErrClosed)
		c.link.emitTerminal(EvConnectionError, fmt.Errorf("connection stopped: %w", ErrClosed))
	}
}

// --- properties ---

func (c *connActor) info() *messages.ConnectionInfo {
	info := &messages.ConnectionInfo{
		State:        c.state.String(),
		CanSend:      c.state.CanSend() && !c.finalSent && c.dir.Sends(),
		CanReceive:   c.state.CanReceive() && !c.eofSeen && c.dir.Receives(),
		Stack:        c.stack,
		ConnectionId: c.spec.id,
		GroupId:      c.spec.groupID,
		Properties:   c.spec.cfg.Properties,
	}
	info.EstablishmentReport = c.report
	if si, ok := c.t.(stacks.SocketInfo); ok && c.t != nil {
		if ti, err := si.Info(); err == nil {
			info.Socket = socketInfo(ti)
			// a direction the connection does not have carries nothing
			// (RFC 9622 §8.1.11: the largest message that can be sent or
			// received)
			if !c.dir.Sends() {
				info.Socket.SendMsgMaxLen = 0
				// nothing is sent: no size fits one packet (it was the
				// path MTU, above sendMsgMaxLen)
				info.Socket.SingularMsgMaxLen = -1
			}
			if !c.dir.Receives() {
				info.Socket.RecvMsgMaxLen = 0
			}
			// on a datagram stack every framed message is one datagram:
			// what the framers add to it comes off the datagram's payload
			overhead := int64(0)
			for i, f := range c.spec.cfg.Framers {
				if o, ok := f.(framers.MessageOverheader); ok {
					if n, ok := c.framerSize(i, f, "MessageOverhead", o.MessageOverhead); ok {
						overhead += int64(n)
					}
				}
			}
			info.Socket.SendMsgMaxLen = lessOverhead(info.Socket.SendMsgMaxLen, overhead)
			info.Socket.RecvMsgMaxLen = lessOverhead(info.Socket.RecvMsgMaxLen, overhead)
			// a Message in one packet: its frame is (RFC 9622 §8.1.11.1,
			// at most sendMsgMaxLen)
			info.Socket.SingularMsgMaxLen = lessOverhead(info.Socket.SingularMsgMaxLen, overhead)
			// a framer that bounds its messages bounds them too
			for i, f := range c.spec.cfg.Framers {
				if m, ok := f.(framers.MaxMessageSizer); ok {
					if n, ok := c.framerSize(i, f, "MaxMessageSize", m.MaxMessageSize); ok {
						info.Socket.SendMsgMaxLen = minLen(info.Socket.SendMsgMaxLen, int64(n))
						info.Socket.RecvMsgMaxLen = minLen(info.Socket.RecvMsgMaxLen, int64(n))
					}
				}
			}
			if so := info.Socket; so.SendMsgMaxLen > 0 && so.SingularMsgMaxLen > so.SendMsgMaxLen {
				so.SingularMsgMaxLen = so.SendMsgMaxLen
			}
		}
	}
	if c.local != nil {
		info.Local = endpointOf(c.local)
	}
	if c.remote != nil {
		info.Remote = endpointOf(c.remote)
	}
	return info
}

// lessOverhead is a message length limit (-1: unlimited, a byte stream,
// which framers do not bound this way) less the bytes framers add to each
// message, at least 0.
func lessOverhead(limit, overhead int64) int64 {
	if limit <= 0 || overhead <= 0 {
		return limit
	}
	return max(limit-overhead, 0)
}

// minLen is the smaller of a message length limit (-1: unlimited) and a
// bound n.
func minLen(limit, n int64) int64 {
	if limit < 0 || n < limit {
		return n
	}
	return limit
}

func socketInfo(ti stacks.TransportInfo) *messages.SocketInfo {
	maxLen := func(m stacks.MaxLen) int64 {
		if m.Unlimited {
			return -1
		}
		return int64(m.Bytes)
	}
	out := &messages.SocketInfo{
		Dscp: uint32(ti.DSCP), UserTimeoutNs: int64(ti.UserTimeout), KeepAlive: ti.KeepAlive,
		KeepAliveIdleNs: int64(ti.KeepAliveIdle), Mptcp: ti.MPTCP,
		SendMsgMaxLen: maxLen(ti.SendMsgMaxLen), RecvMsgMaxLen: maxLen(ti.RecvMsgMaxLen), Alpn: ti.ALPN,
	}
	if ti.TLSVersion != 0 {
		out.TlsVersion = tls.VersionName(ti.TLSVersion)
		out.CipherSuite = tls.CipherSuiteName(ti.CipherSuite)
	}
	if ti.Group != 0 {
		out.TlsGroup = ti.Group.String()
	}
	out.Used_0Rtt, out.Resumed = ti.Used0RTT, ti.Resumed
	out.SendChecksumCoverage, out.RecvChecksumCoverage = int64(ti.SendChecksumCoverage), int64(ti.RecvChecksumCoverage)
	out.MaxPacingRate, out.SoftErrors = ti.MaxPacingRate, ti.SoftErrors
	out.SingularMsgMaxLen, out.Congestion = int64(ti.SingularMsgMaxLen), ti.Congestion
	out.Datagrams = ti.Datagrams
	out.Multicast, out.MulticastHopLimit = ti.Multicast, uint32(ti.MulticastHopLimit)
	return out
}

func endpointOf(a net.Addr) *messages.Endpoint {
	ep := &messages.Endpoint{}
	switch v := a.(type) {
	case *net.TCPAddr:
		ap := v.AddrPort()
		ep.IpAddress = ap.Addr().Unmap().String()
		ep.Port = uint32(ap.Port())
		ep.Interface = v.Zone
	case *net.UDPAddr:
		ap := v.AddrPort()
		ep.IpAddress = ap.Addr().Unmap().String()
		ep.Port = uint32(ap.Port())
	case *net.UnixAddr:
		ep.Path = v.Name
	default:
		ep.IpAddress = a.String()
	}
	return ep
}

// setProperty sets a connection property: applyLive puts it on the live
// socket (or refuses it), then the configuration is replaced by a copy
// with the new value and with StackOptions derived anew from the current
// properties (ConnectionConfig.DeriveStackOptions), so that every later
// dial (re-establishment, Clone) uses them.
func (c *connActor) setProperty(m *messages.SetConnectionProperty) error {
	if !c.state.Allows(OpSetProperty) {
		return &StateError{Op: OpSetProperty, State: c.state}
	}
	props := c.spec.cfg.Properties
	values := make(map[string]*messages.PropertyValue, len(props.GetValues())+1)
	for k, v := range props.GetValues() {
		values[k] = v
	}
	values[m.Name] = m.Value
	// copy on write: the snapshot may be shared with clones and GetProperties replies
	cfg := *c.spec.cfg
	cfg.Properties = &messages.Properties{Values: values}
	if cfg.DeriveStackOptions != nil {
		cfg.StackOptions = cfg.DeriveStackOptions(cfg.Properties, cfg.StackOptions)
	}
	if err := c.applyLive(m, &cfg); err != nil {
		return err // nothing changed
	}
	// the spec too: a preconnection that may still be racing reads its own
	spec := *c.spec
	spec.cfg = &cfg
	c.spec = &spec
	if est := c.est; c.t == nil && est != nil && est.preconn != nil && !slices.Contains(est.setDuring, m.Name) {
		est.setDuring = append(est.setDuring, m.Name) // the race dials with the options of before
	}
	c.sockPropertySet(m.Name) // rates, retransmission watch (sockprops.go)
	return nil
}

// applySetDuring puts on the socket of a transport just handed over the
// properties set while its race dialed (establishState.setDuring): that
// race made its sockets with the options of before, and SetProperty
// promised the change to the live socket (applyLive) or to the next one.
func (c *connActor) applySetDuring() {
	est := c.est
	if est == nil || len(est.setDuring) == 0 {
		return
	}
	names := est.setDuring
	est.setDuring = nil
	for _, name := range names {
		m := &messages.SetConnectionProperty{Name: name, Value: c.spec.cfg.Properties.GetValues()[name]}
		if err := c.applyLive(m, c.spec.cfg); err != nil {
			c.logger().Debug("property set during the race not applied to its winner", "property", name, "error", err.Error())
		}
	}
}

// applyLive puts a changed connection property on the live socket (RFC
// 9622 §8: SetProperty on an established connection), as cfg (the
// configuration with the new value) says a new dial would: the socket of
// an established connection and of its later re-establishments agree.
//
//   - connCapacityProfile: the DSCP (IP_TOS / IPV6_TCLASS), every stack
//     with a socket of its own; a UDP or UDP-Lite connection a Listener
//     accepted marks its own datagrams instead (stacks.LiveOptions.DSCP);
//     a QUIC stream (accepted, or initiated: its DSCP is set when its
//     session is dialed) and a Unix socket cannot (ErrNotApplicable). On
//     TCP and TLS Scavenger also switches TCP_CONGESTION to "lp" when the
//     kernel offers it (liveprops.go).
//   - connTimeout, tcp.userTimeoutValue, tcp.userTimeoutEnabled:
//     TCP_USER_TIMEOUT (the user timeout when enabled, else connTimeout,
//     else 0, the system default). TCP and TLS only. connTimeout also
//     re-applies keepAliveTimeout, which it can switch off.
//   - keepAliveTimeout: SO_KEEPALIVE and TCP_KEEPIDLE. TCP and TLS only.
//   - recvChecksumLen: UDPLITE_RECV_CSCOV on UDP-Lite; every other stack
//     checks the whole datagram, which meets any minimum coverage.
//
// The rate properties, minimum rates and the retransmission threshold are
// applied by sockPropertySet; the rest need no socket change (connPriority,
// connScheduler, groupConnLimit, isolateSession: read where used)
// or are read when the next transport starts. A property the live
// transport cannot take fails with an error wrapping
// stacks.ErrNotApplicable, and nothing changes.
func (c *connActor) applyLive(m *messages.SetConnectionProperty, cfg *messages.ConnectionConfig) error {
	if c.t == nil {
		return nil // not established yet: the next transport starts with it
	}
	opts := &cfg.StackOptions
	var o stacks.LiveOptions
	switch m.Name {
	case "connCapacityProfile":
		d := opts.DSCP
		o.DSCP = &d
		cc := scavengerCongestion(m.Value.GetEnumValue()) // TCP and TLS only
		o.Congestion = &cc
	case "connTimeout", "tcp.userTimeoutValue", "tcp.userTimeoutEnabled":
		d := opts.UserTimeout
		if d == 0 {
			d = opts.ConnTimeout
		}
		o.UserTimeout = &d
		if m.Name == "connTimeout" {
			// a keepAliveTimeout above connTimeout means no keep-alives
			// (RFC 9622 §8.1.4): they follow connTimeout too
			ka := opts.KeepAlive
			o.KeepAliveIdle = &ka
		}
	case "keepAliveTimeout":
		d := opts.KeepAlive
		o.KeepAliveIdle = &d
	case "recvChecksumLen":
		n := opts.RecvChecksumLen
		o.RecvChecksumLen = &n
	default:
		return nil
	}
	if cfg.DeriveStackOptions == nil {
		return fmt.Errorf("%s: the configuration cannot derive socket options: %w", m.Name, stacks.ErrNotApplicable)
	}
	if err := stacks.ApplyLive(c.t, o); err != nil {
		return fmt.Errorf("apply %s to the %s socket: %w", m.Name, c.stack, err)
	}
	return nil
}

// framerSize calls size, method of framer i (f), for the connection's
// info. A panic in it is the framer's failure, not the connection actor's:
// the connection ends as when a framer actor panics (HandleFailure), with
// a *supervision.PanicError naming the framer and the method, and ok is
// false (the info leaves that framer's bound out).
func (c *connActor) framerSize(i int, f framers.Framer, method string, size func() int) (n int, ok bool) {
	err := supervision.Contain(fmt.Sprintf("framer %T %s", f, method), func() { n = size() })
	if err != nil {
		c.sys.AS.Root.Send(c.spec.self, &framerFailed{fromTransport: fromTransport{c.tgen}, idx: i, err: err})
		return 0, false
	}
	return n, true
}

// HandleFailure makes the connection its framers' supervisor: a framer that
// panics is stopped and the connection ends with a ConnectionError carrying
// the *supervision.PanicError (never a crash, never a silent restart).
func (c *connActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	sup.StopChildren(child)
	err := supervision.FromFailure("framer "+child.Id, reason)
	c.sys.AS.Root.Send(c.spec.self, &framerFailed{fromTransport: fromTransport{c.tgen}, idx: -1, err: err})
}
