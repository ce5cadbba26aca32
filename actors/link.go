package actors

import (
	"cmp"
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// A Link is the one ordered event path from a connection actor to the
// application (architecture §3): the actor pushes events into it from its
// own goroutine, in order; the facade takes them out (blocking calls) or has
// them delivered to handlers, one at a time, in order, on a goroutine that
// exists only while there is something to deliver.
//
// A Link also carries the two flow-control gates of the connection: the
// reader goroutine waits on it when the application is not consuming
// (receive credits), and Send waits on it when too much is queued.
//
// All methods are safe for concurrent use.
type Link struct {
	// The fields every message touches come first, so that they share a
	// few cache lines (with many connections, a connection's Link is
	// usually out of the cache when its next message comes).
	id    uint64
	state atomic.Uint32
	// closeCalled: the application called Close or Abort
	// (MarkCloseCalled); the actor may not have taken its command yet
	// (State)
	closeCalled atomic.Bool
	mu          sync.Mutex
	terminal    Event

	// receive side
	items     []RecvItem
	itemBytes int
	reqs      []*recvReq
	recvLimit int
	recvSeq   uint64 // blocking Receive calls so far
	// rawPending: read from the transport, not yet processed by the first
	// framer; inflight: parsed, on their way from the framer to this
	// Link. Atomic, so that the reader and the framer account their bytes
	// without the lock; a waiting reader is woken through readerWaiting
	// (see waitReader).
	rawPending atomic.Int64
	inflight   atomic.Int64
	// held: the first framer holds bytes it has not parsed for want of
	// receive credit (they count in rawPending); resumeFn makes it parse
	// on, once posted (resumePosted) until it reports again (setHeld)
	held         atomic.Bool
	resumePosted bool
	resumeFn     func()
	eos          bool // no more items will be pushed
	unframed     bool // a byte stream without framer: default minIncompleteLength is 1
	gateClosed   bool
	established  bool

	// the read token (readside.go)
	reading       bool // someone holds the read token
	readAhead     bool // read whatever the application asks
	demand        bool // read on demand (after the first blocking Receive)
	readEnded     bool // the current stream has ended
	idleArmed     bool
	alwaysAhead   bool // read ahead whatever the receives (a connection that re-establishes must notice a lost transport at once)
	hasTarget     atomic.Bool
	readerWaiting atomic.Int32 // reader goroutines waiting for the gate (waitReader)
	// readyWaiters counts the goroutines blocked in AwaitReady (Initiate,
	// Clone): emitReady yields to them
	readyWaiters atomic.Int32
	reader       *streamReader // the current transport's read step
	readerWake   sync.Cond     // L is &mu

	// send side
	sendQueued  int
	sendLimit   int
	sendWaiters sendWaitList
	sendWake    chan struct{} // made for a sender that must wait; closed (and dropped) when queued bytes drop
	wakeHanded  bool          // sendWake was handed to a sender that may wait on it

	// establishment and termination
	readyOut bool          // Ready was emitted
	termOut  bool          // the terminal event's handler was queued: no handler after it
	passive  bool          // accepted from a listener: it has no Ready event
	readyHit bool          // Ready or a terminal event happened: ready is (or is made) closed
	goneHit  bool          // the connection's actor has stopped
	ready    chan struct{} // made when first asked for (Ready); closed at Ready or at a terminal event
	done     chan struct{} // closed after the terminal event, once the socket is released
	// released: the transport's socket release the connection's end
	// waits for (setReleased), nil for none
	released <-chan struct{}
	gone     chan struct{} // made when first asked for (Gone); closed once the actor has stopped
	estErr   error         // set with EstablishmentError
	finalErr error         // nil after Closed, the cause after ConnectionError
	h        Handlers

	// receive side, less often
	itemsArr  []RecvItem // the array items was last started in (reused)
	recvErr   error
	idleSeen  uint64 // recvSeq at the last idle check
	idleTimer *time.Timer
	// the first framer's read target (framers.Instance.ReadTarget), for
	// the transport of generation targetGen
	target    []byte
	targetGen uint64

	recvFree recvFree // buffers handed back by the application (recvbuf.go)

	// transport hand-over from the racer: the transport offered and not
	// taken yet; early, made when first needed, holds what a race with a
	// 0-RTT attempt needs besides
	transport stacks.Transport
	early     *linkEarly

	exec serialExec

	// Owner is the facade object wrapping this Link (set once by the
	// facade), so that actors can hand Links back (ConnectionReceived,
	// GroupedConnections) and the facade finds its own object.
	Owner atomic.Value
	// panicTo is the connection actor told (from the executor goroutine)
	// when a handler panics: it aborts the connection with the error.
	// It is set when the actor starts (attach).
	panicTo atomic.Pointer[connSpec]
	// start settles who ends the connection when its start request went
	// unanswered (attach, Abandon)
	start StartClaim
	// leftGroup: the connection left its group after a CloneError; it is
	// a group of its own (LeftGroup)
	leftGroup atomic.Bool
	// readerEnd hands the connection's peer-reset watch to the stream
	// reader goroutine that is ending (watchPeerReset)
	readerEnd goHandoff
}

// LeftGroup reports whether the connection left its group (a CloneError):
// it is then a group of its own, which CloseGroup and AbortGroup end alone.
func (l *Link) LeftGroup() bool { return l.leftGroup.Load() }

// attach records the connection actor of the Link as it starts, and
// returns the error of an Abandon that came first: the actor then aborts
// at once (its caller has gone).
func (l *Link) attach(s *connSpec) error {
	l.panicTo.Store(s)
	return l.start.Claim(s.self)
}

// Abandon is for a caller whose request to start the connection got no
// answer (its ctx ended as the answer came, which then goes to dead
// letters): it returns the connection actor when it has started, for the
// caller to abort it and wait for Done; otherwise nil, and the actor,
// should it start later, aborts itself at once with err (the caller need
// not wait).
func (l *Link) Abandon(err error) *actor.PID { return l.start.Abandon(err) }

// Started is what the answer to the request that started l's connection
// said (its actor and its group), once that actor has started; nil
// before. It is for a caller that got no answer (Abandon returned the
// actor) and goes on with the connection.
func (l *Link) Started() *ConnectionStarted {
	s := l.panicTo.Load() // stored as it started, self and group set (and never changed) before
	if s == nil {
		return nil
	}
	return &ConnectionStarted{Link: l, Conn: s.self, Group: s.group}
}

// Handlers are the application's event handlers of one connection. Each is
// called on the Link's executor: one at a time, in event order, never after
// the terminal event's handler.
type Handlers struct {
	Ready              func()
	EstablishmentError func(error)
	Closed             func()
	ConnectionError    func(error)
	SoftError          func(error)
	CloneError         func(error)
	// Reestablishing and Reestablished report the re-establishment policy
	// at work: the transport was lost (attempt n starts after its backoff),
	// and a new one is Ready after n attempts.
	Reestablishing func(err error, attempt int)
	Reestablished  func(attempts int)
	// ExcessiveRetransmission reports that the transport retransmitted
	// count segments, reaching the connection's
	// _gotaps.retransmitNotifyThreshold (the seed's retransmit-notify).
	ExcessiveRetransmission func(count int)
	// PathChange reports that the connection's path changed (pathwatch.go):
	// r is the reading that differs from the previous one.
	PathChange func(r stacks.PathReading)
}

// RecvItem is one received piece pushed by the connection actor: a whole
// message, a part of one (EndOfMessage false) or a receive error.
type RecvItem struct {
	MessageID    uint64
	Data         []byte
	EndOfMessage bool
	Meta         []framers.Metadata
	Err          error
	// TOS is the IP TOS / Traffic Class byte the datagram arrived with
	// (DSCP and ECN), valid when HasTOS (UDP and UDP-Lite).
	TOS    uint8
	HasTOS bool
	// overhead is what the piece costs beyond its bytes
	// (framers.Instance.DeliveryOverhead: its metadata, the bytes its
	// framer skipped before it), charged against the receive buffer with
	// them (cost)
	overhead uint32
	// Backing is the buffer Data is the tail of, when the receiver may hand
	// it back for reuse (Link.RecycleRecv) once Data is consumed.
	Backing []byte
	// Early: the bytes arrived as early data (QUIC 0-RTT, read before the
	// handshake completed: stacks.EarlyReader).
	Early bool
	// Last: the peer's clean end of stream follows this piece at once (the
	// connection delivers it with the end: Link.endOfStream comes next), so
	// that the message it ends is final however it is taken, by a receive
	// already waiting or later (RFC 9622 §9.3.2.1).
	Last bool
}

// RecvResult is what one Receive call gets: one Received, ReceivedPartial
// (EndOfMessage false) or ReceiveError (Err set) event.
type RecvResult struct {
	MessageID    uint64
	Data         []byte
	EndOfMessage bool
	Meta         []framers.Metadata
	Err          error
	// TOS and HasTOS: see RecvItem (from the message's first piece).
	TOS    uint8
	HasTOS bool
	// Final: this result ends the last message of the connection: the
	// peer ended the stream after it (a byte stream's one message ends
	// only there).
	Final bool
	// Backing: see RecvItem (set only when Data is one whole item).
	Backing []byte
	// Early: every piece of Data arrived as early data (RecvItem.Early).
	Early bool
}

type recvReq struct {
	min, max int // -1: infinite
	fn       func(RecvResult)

	// A blocking Receive's request: served before its Receive waits (the
	// common case when the Receive reads for itself), the result is left
	// in res; once it waits (parked), it comes through ch.
	ch    chan RecvResult
	res   RecvResult
	state atomic.Int32 // reqPending, reqParked or reqDone
}

const (
	reqPending = iota
	reqParked  // its Receive waits on ch
	reqDone    // res holds the result
)

// recvReqs recycles the requests of blocking Receives (with their
// channels).
var recvReqs = sync.Pool{New: func() any { return &recvReq{ch: make(chan RecvResult, 1)} }}

// release returns a blocking Receive's request to the pool (its channel is
// empty again when Receive returns).
func (r *recvReq) release() {
	r.res = RecvResult{}
	r.state.Store(reqPending)
	recvReqs.Put(r)
}

// Default flow-control bounds.
const (
	DefaultRecvBufferLimit = 4 << 20
	DefaultSendBufferLimit = 4 << 20
	rawPendingLimit        = 256 << 10
)

// recvItemCost is what each received piece costs against the receive
// buffer on top of its bytes: its queue entry (a RecvItem, about 120
// bytes, in an array that grows by doubling), its framer's delivery entry
// and its piece of a read slab. Without it a peer's flood of empty or
// one-byte messages would be held by the hundred thousand for an
// application that does not receive: memory hundreds of times the
// buffer's.
const recvItemCost = 256

// recvCost is what a received piece of n bytes costs against the receive
// buffer (in flight: addInflight).
func recvCost(n int) int { return n + recvItemCost }

// cost is what the piece costs against the receive buffer: the recvCost
// of its bytes, and its overhead.
func (it *RecvItem) cost() int { return recvCost(len(it.Data)) + int(it.overhead) }

// itemsCost is the cost of items.
func itemsCost(items []RecvItem) int {
	total := 0
	for i := range items {
		total += items[i].cost()
	}
	return total
}

// recvChargedLocked is what received data charges against the receive
// buffer: the pieces on their way (inflight, at their recvCost), the bytes
// queued and, while no receive waits, recvItemCost for each queued piece.
// A receive that waits although pieces are queued asks for more of an
// incomplete message than they hold (its minIncompleteLength): for it the
// queued bytes alone count, as they must be able to fill the buffer.
// creditSpentLocked reports whether the receive credit is spent with total
// bytes of an incomplete message queued: they fill the buffer, or with what
// the rest costs (the bytes in the framers, each piece's overhead) the
// reader reads no more (readerMayReadLocked), so the message cannot
// complete before some of it is taken.
func (l *Link) creditSpentLocked(total int) bool {
	return total >= l.recvLimit || l.recvChargedLocked() >= int64(l.recvLimit)
}

func (l *Link) recvChargedLocked() int64 {
	c := l.inflight.Load() + int64(l.itemBytes)
	if len(l.reqs) == 0 {
		c += int64(len(l.items) * recvItemCost)
	}
	return c
}

// ErrClosed is the cause for operations on a connection that has ended.
var ErrClosed = net.ErrClosed

// NewLink returns the Link of connection id.
func NewLink(id uint64, recvLimit, sendLimit int, unframed bool) *Link {
	if recvLimit <= 0 {
		recvLimit = DefaultRecvBufferLimit
	}
	if sendLimit <= 0 {
		sendLimit = DefaultSendBufferLimit
	}
	l := &Link{
		id:        id,
		done:      make(chan struct{}),
		recvLimit: recvLimit,
		sendLimit: sendLimit,
		unframed:  unframed,
	}
	l.readerWake.L = &l.mu
	l.exec.link = l
	return l
}

// closedChan is the Ready channel of a Link asked for it only after
// Ready or its terminal event.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// markReadyLocked closes the Ready channel (once); a Link nobody asked for
// it (an accepted connection) never makes one.
func (l *Link) markReadyLocked() { markLazy(&l.ready, &l.readyHit) }

// lazyChan is a channel made when first asked for (l.mu held): closed (or
// closedChan) once hit is set.
func lazyChan(ch *chan struct{}, hit bool) <-chan struct{} {
	if *ch == nil {
		if hit {
			return closedChan
		}
		*ch = make(chan struct{})
	}
	return *ch
}

// markLazy sets hit and closes the lazyChan ch if it was made (once).
func markLazy(ch *chan struct{}, hit *bool) {
	if *hit {
		return
	}
	*hit = true
	if *ch != nil {
		close(*ch)
	}
}

// setMessageMode: the stack preserves message boundaries, so a Receive
// waits for complete messages by default.
func (l *Link) setMessageMode() {
	l.mu.Lock()
	l.unframed = false
	l.mu.Unlock()
}

// SetPassive marks a connection accepted from a listener: it has no Ready
// event.
func (l *Link) SetPassive() {
	l.mu.Lock()
	l.passive = true
	l.mu.Unlock()
}

// ID is the connection's id (unique in its System).
func (l *Link) ID() uint64 { return l.id }

// State is the connection's current state, as the application sees it:
// Closing once it called Close (MarkCloseCalled) while the connection had
// not yet ended. Close posts its command and does not wait; when the
// actor is in a turn on another goroutine (as at once after Ready, whose
// emitReady yields to the waiting Initiate), the command is queued and the
// actor's state is still Established when Close returns. Checked against
// that state, a Send after Close was accepted, and could meet the close
// completing on the actor's goroutine (the connection Closed, its pending
// sends failed with ErrClosed) before the actor took it: after Close, it
// must be refused as not allowed, whatever the actor has done yet. Abort
// likewise (a Send after it was accepted, then failed with ErrAborted).
func (l *Link) State() State {
	st := State(l.state.Load())
	if st < Closing && l.closeCalled.Load() {
		return Closing
	}
	return st
}

// MarkCloseCalled records that the application called Close or Abort (or
// CloseGroup, AbortGroup on this connection), before its command is
// posted to the actor (State).
// It reports whether this call marked it (false: Close or Abort was
// called before).
func (l *Link) MarkCloseCalled() (first bool) { return !l.closeCalled.Swap(true) }

// Ready is closed when the connection is Ready or establishment ended.
func (l *Link) Ready() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return lazyChan(&l.ready, l.readyHit)
}

// AwaitReady waits until Ready is closed (true) or ctx ends (false). While
// it waits, the connection's Ready lets it run at once (emitReady).
func (l *Link) AwaitReady(ctx context.Context) bool {
	ready := l.Ready()
	select {
	case <-ready:
		return true
	default:
	}
	l.readyWaiters.Add(1)
	defer l.readyWaiters.Add(-1)
	select {
	case <-ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// Done is closed when the connection reached Closed, after its terminal
// handler, and once the socket its transport held is released (see
// setReleased).
func (l *Link) Done() <-chan struct{} { return l.done }

// setReleased notes, before the terminal event, what a closed transport's
// socket release is (stacks.ReleaseWatcher): Done waits for it, and for
// those of the transports closed before (a re-establishment replaced
// them) whose sockets are still held.
func (l *Link) setReleased(ch <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev := l.released; prev != nil && prev != ch && !isClosed(prev) {
		ch = bothClosed(prev, ch)
	}
	l.released = ch
}

// bothClosed is closed once a and b are (a goroutine waits for them: a
// socket release takes at most a QUIC linger).
func bothClosed(a, b <-chan struct{}) <-chan struct{} {
	both := make(chan struct{})
	go func() {
		<-a
		<-b
		close(both)
	}()
	return both
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Gone is closed once the connection's actor has stopped: a command sent
// to it then gets no answer (one queued as it stopped is dropped).
func (l *Link) Gone() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return lazyChan(&l.gone, l.goneHit)
}

// markGone records that the connection's actor has stopped.
func (l *Link) markGone() {
	l.mu.Lock()
	markLazy(&l.gone, &l.goneHit)
	l.mu.Unlock()
}

// WasReady reports whether the Ready event was emitted.
func (l *Link) WasReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.readyOut
}

// EstablishmentErr is the EstablishmentError cause, once Ready() is closed.
func (l *Link) EstablishmentErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.estErr
}

// Err is nil after Closed, the ConnectionError (or EstablishmentError)
// cause otherwise. It is meaningful once Done() is closed.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.estErr != nil {
		return l.estErr
	}
	return l.finalErr
}

// SetHandlers replaces the handlers. A handler set after its event already
// happened is called once at once (Ready, or the terminal event), so that a
// handler set after Initiate or Accept still learns of it. A connection
// accepted from a listener has no Ready event (RFC 9622 §7.2).
func (l *Link) SetHandlers(h Handlers) { l.setHandlers(h, EvNone) }

// Replace is SetHandlers where h's handler of ev (EvReady or a terminal
// event) is a new one (the application's OnReady, OnClosed, ...): set
// after ev, it is called once at once even when the handler it replaces
// (the Preconnection's) already was. The other handlers of h follow
// SetHandlers (one kept from before is not called again).
func (l *Link) Replace(h Handlers, ev Event) { l.setHandlers(h, ev) }

func (l *Link) setHandlers(h Handlers, replaced Event) {
	l.mu.Lock()
	old := l.h
	l.h = h
	if l.demand && l.watchesPeer() {
		l.demand = false // it asked to learn of the peer's close: read ahead again
		l.kickReaderLocked()
	}
	// a late Ready goes before the terminal handler, never after it
	ready := l.readyOut && !l.passive && h.Ready != nil && (old.Ready == nil || replaced == EvReady) && !l.termOut
	term, estErr, finalErr := l.terminal, l.estErr, l.finalErr
	late := false // the terminal event's handler is new: it has not had the event
	switch term {
	case EvEstablishmentError:
		late = h.EstablishmentError != nil && (old.EstablishmentError == nil || replaced == term)
	case EvClosed:
		late = h.Closed != nil && (old.Closed == nil || replaced == term)
	case EvConnectionError:
		late = h.ConnectionError != nil && (old.ConnectionError == nil || replaced == term)
	}
	if late {
		l.termOut = true
	}
	// queued under mu: a terminal event the actor emits on another
	// goroutine (an Abort, the peer's reset) queues its handler after
	// this late Ready, never before it (its emitTerminal takes mu)
	if ready {
		l.exec.submitAs("Ready handler", h.Ready)
	}
	switch {
	case !late:
	case term == EvEstablishmentError:
		l.exec.submitTerminal("EstablishmentError handler", func() { h.EstablishmentError(estErr) })
	case term == EvClosed:
		l.exec.submitTerminal("Closed handler", h.Closed)
	case term == EvConnectionError:
		l.exec.submitTerminal("ConnectionError handler", func() { h.ConnectionError(finalErr) })
	}
	l.mu.Unlock()
	if (h.PathChange == nil) != (old.PathChange == nil) {
		if s := l.panicTo.Load(); s != nil { // the connection actor runs: it starts or stops its path watch
			s.sys.AS.Root.Send(s.self, &pathHandlerChanged{})
		}
	}
}

// Handlers returns the current handlers.
func (l *Link) Handlers() Handlers {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h
}

// --- called by the connection actor ---

func (l *Link) setState(s State) { l.state.Store(uint32(s)) }

func (l *Link) emitReady() {
	l.mu.Lock()
	l.established = true
	l.readyOut = true
	h := l.h.Ready
	if l.passive {
		h = nil
	}
	l.markReadyLocked()
	reqs := l.serveLocked(nil)
	l.mu.Unlock()
	if h != nil {
		l.exec.submitAs("Ready handler", h)
	}
	l.fulfil(reqs)
	if l.readyWaiters.Load() > 0 {
		// An Initiate or Clone waits for this Ready: the goroutine it
		// just woke would otherwise wait for this one to finish the
		// race's teardown (stopping the racer, the candidates and the
		// preconnection: 15-20 us on an Initiate, measured). Let it run.
		runtime.Gosched()
	}
}

// tracedSendsLocked returns the ids of the waiting sends when the
// connection's System traces (their SendError events are trace records
// too), nil otherwise.
func (l *Link) tracedSendsLocked() []uint64 {
	if l.sendWaiters.live == 0 {
		return nil
	}
	if s := l.panicTo.Load(); s == nil || !s.sys.Tracing() {
		return nil
	}
	return l.sendWaiters.liveIDs()
}

// traceSendErrors traces the SendError of sends ids, failed with err.
func (l *Link) traceSendErrors(ids []uint64, err error) {
	if len(ids) == 0 {
		return
	}
	s := l.panicTo.Load()
	if s == nil || !s.sys.Tracing() {
		return
	}
	for _, id := range ids {
		s.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: l.id, GroupId: s.groupID, MessageId: id, Error: err.Error()})
	}
}

// Tracing reports whether the System of l's connection traces (false
// before the connection actor has started).
func (l *Link) Tracing() bool {
	s := l.panicTo.Load()
	return s != nil && s.sys.Tracing()
}

// TraceRefusedSend traces the SendError of send id that the facade refused
// before handing it to the connection (the send queue was full, the
// connection was closing or had ended, the message was invalid), in the
// shape of those the connection traces for the sends it had: a
// "send_error" record, or an "expired" one when err is ErrExpired (the
// message waited for room beyond its lifetime). It does nothing when the
// connection's System does not trace.
func (l *Link) TraceRefusedSend(id uint64, err error) {
	s := l.panicTo.Load()
	if s == nil || !s.sys.Tracing() {
		return
	}
	if errors.Is(err, ErrExpired) {
		s.sys.trace(&messages.TraceRecord{Kind: "expired", Event: "Expired", ConnectionId: l.id, GroupId: s.groupID, MessageId: id})
		return
	}
	s.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: l.id, GroupId: s.groupID, MessageId: id, Error: err.Error()})
}

// emitTerminal ends the Link: pending receives and sends fail, then the
// terminal handler runs. Nothing is delivered after it.
func (l *Link) emitTerminal(ev Event, err error) {
	l.mu.Lock()
	if l.terminal != EvNone {
		l.mu.Unlock()
		return
	}
	l.terminal = ev
	l.dropRecycled()
	switch ev {
	case EvEstablishmentError:
		l.estErr = err
	case EvConnectionError:
		l.finalErr = err
	}
	if !l.eos {
		l.eos = true
		if l.recvErr == nil {
			l.recvErr = err
		}
	}
	l.markReadyLocked()
	l.gateClosed = true
	l.readerWake.Broadcast()
	if l.sendWake != nil {
		// a sender waiting for room fails now (Done may come later)
		close(l.sendWake)
		l.sendWake, l.wakeHanded = nil, false
	}
	if sr := l.reader; sr != nil {
		defer sr.watch.release() // no Receive reads any more
	}
	if l.idleTimer != nil {
		l.idleTimer.Stop()
	}
	traced := l.tracedSendsLocked()
	waiters := l.sendWaiters.takeAll()
	reqs := l.serveLocked(nil)
	h := l.h
	switch {
	case ev == EvEstablishmentError && h.EstablishmentError != nil, ev == EvClosed && h.Closed != nil,
		ev == EvConnectionError && h.ConnectionError != nil:
		l.termOut = true
	}
	var offered []stacks.Transport
	for t := l.takeTransportLocked(); t != nil; t = l.takeTransportLocked() {
		offered = append(offered, t)
	}
	if l.early != nil {
		l.early.held = heldSend{}
	}
	l.mu.Unlock()
	for _, t := range offered {
		_ = t.Abort() // offered but never taken: nobody else will close it
	}
	l.fulfil(reqs)
	cause := err
	if cause == nil {
		cause = ErrClosed
	}
	l.traceSendErrors(traced, cause)
	for _, w := range waiters {
		w(cause)
	}
	switch ev {
	case EvEstablishmentError:
		if h.EstablishmentError != nil {
			l.exec.submitTerminal("EstablishmentError handler", func() { h.EstablishmentError(err) })
		}
	case EvClosed:
		if h.Closed != nil {
			l.exec.submitTerminal("Closed handler", h.Closed)
		}
	case EvConnectionError:
		if h.ConnectionError != nil {
			l.exec.submitTerminal("ConnectionError handler", func() { h.ConnectionError(err) })
		}
	}
	// after the terminal handler; at once when no handler is queued or
	// running (no goroutine for a connection without handlers). Without
	// a terminal handler queued, Done's closing takes its place: the
	// Messages received before the end that a ReceiveAsync takes while it
	// waits go before it (submitReceived)
	if !l.exec.runIfIdle(l.closeDone) {
		l.exec.submitTerminal("event handler", l.closeDone)
	}
}

// closeDone closes Done (once, after the terminal event), at once or,
// while the transport's socket is still held (a QUIC session lingering
// after its last stream's graceful close, or ending at the peer's
// CONNECTION_CLOSE), on a goroutine that waits for its release; System.
// Shutdown waits for those goroutines.
func (l *Link) closeDone() {
	l.mu.Lock()
	rel := l.released
	l.released = nil
	l.mu.Unlock()
	if rel != nil {
		select {
		case <-rel:
		default:
			var sys *System
			if s := l.panicTo.Load(); s != nil {
				sys = s.sys
				sys.sockets.add()
			}
			go func() {
				<-rel
				close(l.done)
				if sys != nil {
					sys.sockets.done()
				}
			}()
			return
		}
	}
	close(l.done)
}

func (l *Link) emitSoftError(err error) {
	l.mu.Lock()
	h := l.h.SoftError
	term := l.terminal
	l.mu.Unlock()
	if h != nil && term == EvNone {
		l.exec.submitAs("SoftError handler", func() { h(err) })
	}
}

func (l *Link) emitExcessiveRetransmission(count int) {
	l.mu.Lock()
	h := l.h.ExcessiveRetransmission
	term := l.terminal
	l.mu.Unlock()
	if h != nil && term == EvNone {
		l.exec.submitAs("ExcessiveRetransmission handler", func() { h(count) })
	}
}

func (l *Link) emitPathChange(r stacks.PathReading) {
	l.mu.Lock()
	h := l.h.PathChange
	term := l.terminal
	l.mu.Unlock()
	if h != nil && term == EvNone {
		l.exec.submitAs("PathChange handler", func() { h(r) })
	}
}

// hasPathChange reports whether a PathChange handler is set.
func (l *Link) hasPathChange() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h.PathChange != nil
}

func (l *Link) emitReestablishing(err error, attempt int) {
	l.mu.Lock()
	h := l.h.Reestablishing
	l.mu.Unlock()
	if h != nil {
		l.exec.submitAs("Reestablishing handler", func() { h(err, attempt) })
	}
}

func (l *Link) emitReestablished(attempts int) {
	l.mu.Lock()
	l.established = true
	h := l.h.Reestablished
	reqs := l.serveLocked(nil)
	l.mu.Unlock()
	if h != nil {
		l.exec.submitAs("Reestablished handler", func() { h(attempts) })
	}
	l.fulfil(reqs)
}

// reopen makes the Link ready for a new transport of the same connection
// (re-establishment): the reader gate and the transport slot are reset;
// received data not yet consumed stays.
func (l *Link) reopen() {
	l.mu.Lock()
	l.gateClosed = false
	l.rawPending.Store(0)
	l.inflight.Store(0)
	l.held.Store(false)
	l.resumeFn, l.resumePosted = nil, false
	l.reader, l.reading, l.readEnded = nil, false, false
	l.target = nil
	l.hasTarget.Store(false)
	l.mu.Unlock()
}

// failAllSends fails every send still waiting for its event.
func (l *Link) failAllSends(err error) {
	l.mu.Lock()
	traced := l.tracedSendsLocked()
	waiters := l.sendWaiters.takeAll()
	l.sendQueued = 0
	if l.sendWake != nil {
		close(l.sendWake)
		l.sendWake, l.wakeHanded = nil, false
	}
	l.mu.Unlock()
	l.traceSendErrors(traced, err)
	for _, w := range waiters {
		w(err)
	}
}

func (l *Link) emitCloneError(err error) {
	l.mu.Lock()
	h := l.h.CloneError
	term := l.terminal
	l.mu.Unlock()
	if h != nil && term == EvNone {
		l.exec.submitAs("CloneError handler", func() { h(err) })
	}
}

// deliver appends received pieces (in order) and serves waiting receives.
func (l *Link) deliver(items []RecvItem) {
	if len(items) == 0 {
		return
	}
	l.mu.Lock()
	l.subInflight(itemsCost(items))
	if l.eos {
		l.kickReaderLocked()
		l.mu.Unlock()
		return
	}
	var sb [2]served
	if len(l.items) == 0 && len(l.reqs) > 0 && len(items) == 1 && l.established {
		// the common case: one whole message for a waiting receive, taken
		// without queueing it (the result is what cutLocked makes of a
		// whole item: keep the two in step)
		if r, it := l.reqs[0], &items[0]; it.Err == nil && it.EndOfMessage && (r.max < 0 || len(it.Data) <= r.max) {
			n := copy(l.reqs, l.reqs[1:])
			l.reqs[n] = nil
			l.reqs = l.reqs[:n]
			sb[0] = served{r, RecvResult{MessageID: it.MessageID, Data: it.Data[:len(it.Data):len(it.Data)], EndOfMessage: true,
				Meta: it.Meta, TOS: it.TOS, HasTOS: it.HasTOS, Backing: it.Backing, Final: l.unframed || it.Last, Early: it.Early}}
			if l.itemBytes < l.recvLimit {
				l.kickReaderLocked()
			}
			if r.ch == nil {
				l.submitAsyncLocked(r, sb[0].res)
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			l.fulfil(sb[:1])
			return
		}
	}
	for i := range items {
		l.itemBytes += len(items[i].Data) + int(items[i].overhead) // the overhead leaves with the item (popItem)
	}
	if len(l.items) == 0 {
		l.items = append(l.itemsArr[:0], items...)
		l.itemsArr = l.items
	} else {
		l.items = append(l.items, items...)
	}
	reqs := l.serveLocked(sb[:0])
	l.mu.Unlock()
	l.fulfil(reqs)
}

// endOfStream records that no more data will come; err (nil at a clean
// end) is what receives that find nothing get.
func (l *Link) endOfStream(err error) {
	l.mu.Lock()
	if !l.eos {
		l.eos = true
		l.recvErr = err
	}
	reqs := l.serveLocked(nil)
	l.mu.Unlock()
	l.fulfil(reqs)
}

// sendDone reports the Send events of the given sends, in order (a held
// one's waits: holdSent).
func (l *Link) sendDone(ids []uint64, bytes int, err error) {
	l.mu.Lock()
	var fnArr [8]func(error)
	fns := fnArr[:0]
	for _, id := range ids {
		if e := l.early; e != nil && e.held.id != 0 && id == e.held.id {
			e.held.done, e.held.err = true, err
			continue
		}
		if f := l.sendWaiters.take(id); f != nil {
			fns = append(fns, f)
		}
	}
	if bytes > 0 {
		l.sendQueued -= bytes
		if l.sendQueued < 0 {
			l.sendQueued = 0
		}
		if l.wakeHanded { // someone may wait on it
			close(l.sendWake)
			l.sendWake, l.wakeHanded = nil, false
		}
	}
	l.mu.Unlock()
	for _, f := range fns {
		f(err)
	}
}

// offerTransport hands an established transport (or a 0-RTT one whose
// attempt has not won yet) to the connection, which takes it when it gets
// the racer's message about it (takeTransport). It returns false (and
// closes t) when the connection has already ended.
func (l *Link) offerTransport(t stacks.Transport) bool {
	l.mu.Lock()
	if l.terminal != EvNone {
		l.mu.Unlock()
		_ = t.Abort()
		return false
	}
	if l.transport == nil {
		l.transport = t
	} else {
		e := l.earlyPart()
		e.offered = append(e.offered, t)
	}
	l.mu.Unlock()
	return true
}

// takeTransport returns the oldest transport offered and not taken yet,
// nil when there is none.
func (l *Link) takeTransport() stacks.Transport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.takeTransportLocked()
}

func (l *Link) takeTransportLocked() stacks.Transport {
	t := l.transport
	l.transport = nil
	if e := l.early; e != nil && len(e.offered) > 0 {
		l.transport = e.offered[0]
		e.offered[0] = nil
		e.offered = e.offered[1:]
	}
	return t
}

// linkEarly is what a Link needs for a race with a 0-RTT attempt: the
// transports offered behind the one not taken yet (a race hands a 0-RTT
// transport over before its attempt has won, and may hand over the one
// that replaces it before the connection has taken the first), and the
// first message's Sent held for the win (holdSent).
type linkEarly struct {
	offered []stacks.Transport
	held    heldSend
}

// earlyPart returns l.early, made if needed (with l.mu).
func (l *Link) earlyPart() *linkEarly {
	if l.early == nil {
		l.early = new(linkEarly)
	}
	return l.early
}

// heldSend is a send whose Sent event waits (Link.holdSent): done once
// the transport reported it, with err.
type heldSend struct {
	id   uint64
	done bool
	err  error
}

// holdSent makes the Sent (or SendError) of send id wait: the first
// message, written as 0-RTT data on a transport whose attempt has not won
// the race yet, is Sent only once that attempt has won (releaseSent), and
// is sent again on the next transport if it loses (unholdSent). Its bytes
// leave the send queue when it is written, as any send's.
func (l *Link) holdSent(id uint64) {
	l.mu.Lock()
	l.earlyPart().held = heldSend{id: id}
	l.mu.Unlock()
}

// releaseSent ends the hold: the event held is reported now; one not
// reported yet will be when it comes.
func (l *Link) releaseSent() {
	l.mu.Lock()
	var h heldSend
	if e := l.early; e != nil {
		h, e.held = e.held, heldSend{}
	}
	var fn func(error)
	if h.done {
		fn = l.sendWaiters.take(h.id)
	}
	l.mu.Unlock()
	if fn != nil {
		fn(h.err)
	}
}

// unholdSent ends the hold of a send that will be sent again (its
// transport lost the race): what was reported of it is dropped, and its n
// bytes are accounted in the send queue again if its write had released
// them.
func (l *Link) unholdSent(n int) {
	l.mu.Lock()
	if e := l.early; e != nil {
		if e.held.done {
			l.sendQueued += n
		}
		e.held = heldSend{}
	}
	l.mu.Unlock()
}

// waitReadCredit blocks the reader goroutine while the application has not
// consumed enough; it returns false when the gate is closed.
func (l *Link) waitReadCredit() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waitReader(func() bool {
		return l.gateClosed || !(l.rawPending.Load() >= rawPendingLimit || (!l.eos && l.recvChargedLocked() >= int64(l.recvLimit)))
	})
	return !l.gateClosed
}

// waitReader blocks a reader goroutine (l.mu held) until done tells it may
// go on. The reader counts itself in readerWaiting before it evaluates
// done: whoever lowers rawPending or inflight without the lock changes
// them first and reads readerWaiting after (doneRaw), so that either the
// reader sees the new value or the changer sees the reader and wakes it
// (under the lock, which the reader releases only in Wait).
func (l *Link) waitReader(done func() bool) {
	l.readerWaiting.Add(1)
	for !done() {
		l.readerWake.Wait()
	}
	l.readerWaiting.Add(-1)
}

// addRaw and doneRaw account bytes between the reader and the first framer.
func (l *Link) addRaw(n int) { l.rawPending.Add(int64(n)) }

// addInflight accounts parsed pieces on their way to deliver, at their
// recvCost (itemsCost); dropInflight those that will never arrive
// (discarded after Close).
func (l *Link) addInflight(n int) { l.inflight.Add(int64(n)) }

func (l *Link) dropInflight(n int) {
	l.mu.Lock()
	l.subInflight(n)
	l.kickReaderLocked()
	l.mu.Unlock()
}

// doneInflight takes n off inflight for pieces that a framer below the
// top delivered and the framer above has parsed (framerInput.cost), and
// wakes a waiting reader as doneRaw does: inflight counts in the receive
// credit the reader waits for.
func (l *Link) doneInflight(n int) {
	l.subInflight(n)
	if l.readerWaiting.Load() > 0 {
		l.mu.Lock()
		l.kickReaderLocked()
		l.mu.Unlock()
	}
}

// subInflight takes n bytes off inflight, which stays at least zero (a
// transport replaced by re-establishment may still deliver bytes counted
// before inflight was reset).
func (l *Link) subInflight(n int) {
	for {
		v := l.inflight.Load()
		if l.inflight.CompareAndSwap(v, max(v-int64(n), 0)) {
			return
		}
	}
}

// doneRaw wakes a waiting reader only when rawPending drops below its
// limit: above it, the reader may wait on it; below it already, the reader
// waits for something else (whoever changes that wakes it).
func (l *Link) doneRaw(n int) {
	v := l.rawPending.Add(-int64(n))
	if v < rawPendingLimit && v+int64(n) >= rawPendingLimit && l.readerWaiting.Load() > 0 {
		l.mu.Lock()
		l.kickReaderLocked()
		l.mu.Unlock()
	}
}

func (l *Link) closeGate() {
	l.mu.Lock()
	l.gateClosed = true
	l.readerWake.Broadcast()
	l.mu.Unlock()
}

// --- called by the facade ---

// AcquireSend waits (ctx-bounded) until n more bytes may be queued for
// sending, then accounts them. A message larger than the whole limit is let
// through alone when nothing else is queued.
func (l *Link) AcquireSend(ctx context.Context, n int) error {
	return l.AcquireSendExpect(ctx, n, 0, nil)
}

// AcquireSendExpect is AcquireSend(ctx, n) and, when fn is not nil,
// ExpectSend(id, fn) in one step (one lock): it waits (ctx-bounded) until n
// more bytes may be queued, then accounts them and registers fn to get the
// result of send id. It returns ErrClosed, and registers nothing, once the
// connection has ended.
func (l *Link) AcquireSendExpect(ctx context.Context, n int, id uint64, fn func(error)) error {
	return l.AcquireSendExpectBy(ctx, n, id, fn, time.Time{})
}

// AcquireSendExpectBy is AcquireSendExpect for a message whose msgLifetime
// passes at expire (zero: it has none): a wait for room that outlasts it
// ends with ErrExpired, and nothing is accounted or registered (RFC 9622
// §9.1.3.1: the message waited in the system beyond its lifetime).
func (l *Link) AcquireSendExpectBy(ctx context.Context, n int, id uint64, fn func(error), expire time.Time) error {
	var expired <-chan time.Time // made only once the message must wait
	for {
		wake, err := l.tryAcquireExpect(n, id, fn)
		if err != ErrSendQueueFull {
			return err
		}
		if expired == nil && !expire.IsZero() {
			d := time.Until(expire)
			if d <= 0 {
				return ErrExpired
			}
			t := time.NewTimer(d)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-wake:
		case <-expired:
			return ErrExpired
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TryAcquireSend accounts n bytes if they may be queued now, without
// waiting; it returns ErrSendQueueFull otherwise (SendAsync).
func (l *Link) TryAcquireSend(n int) error {
	_, err := l.tryAcquireExpect(n, 0, nil)
	return err
}

// tryAcquireExpect accounts n bytes when they fit, and registers fn (when
// not nil) as the waiter of send id; otherwise it returns the channel
// closed when queued bytes drop, and ErrSendQueueFull.
func (l *Link) tryAcquireExpect(n int, id uint64, fn func(error)) (<-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.terminal != EvNone {
		return nil, ErrClosed
	}
	if l.sendQueued == 0 || l.sendQueued+n <= l.sendLimit {
		l.sendQueued += n
		if fn != nil {
			l.sendWaiters.add(id, fn)
		}
		return nil, nil
	}
	if l.sendWake == nil {
		l.sendWake = make(chan struct{})
	}
	l.wakeHanded = true
	return l.sendWake, ErrSendQueueFull
}

// ReleaseSend returns n bytes acquired by AcquireSend that were never
// handed to the actor.
func (l *Link) ReleaseSend(n int) { l.sendDone(nil, n, nil) }

// ErrSendQueueFull is the cause given to SendAsync when the send queue is
// full.
var ErrSendQueueFull = errors.New("send queue full")

// ExpectSend registers fn to get the result of send id. It must be called
// before the send is handed to the actor.
func (l *Link) ExpectSend(id uint64, fn func(error)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.terminal != EvNone {
		return false
	}
	l.sendWaiters.add(id, fn)
	return true
}

// expectsSend reports whether send id has a waiter for its event.
func (l *Link) expectsSend(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sendWaiters.live > 0 && l.sendWaiters.find(id) >= 0
}

// ForgetSend drops the waiter of send id (its ctx ended).
func (l *Link) ForgetSend(id uint64) {
	l.mu.Lock()
	l.sendWaiters.take(id)
	l.mu.Unlock()
}

// sendWaitList holds the waiters of the sends not yet reported, in the
// order they were registered. Sends are mostly registered in the order of
// their ids and reported in that order, so the waiter looked for is
// usually the first; while the ids increase along the list, others are
// found by binary search, otherwise by a scan.
type sendWaitList struct {
	q      []sendWait // q[head:] holds the live waiters, and holes (fn nil)
	head   int
	live   int
	sorted bool // ids increase along q
}

type sendWait struct {
	id uint64
	fn func(error)
}

func (w *sendWaitList) add(id uint64, fn func(error)) {
	if w.live == 0 {
		w.q, w.head, w.sorted = w.q[:0], 0, true
	}
	if n := len(w.q); n > 0 && id <= w.q[n-1].id {
		w.sorted = false
	}
	if len(w.q) == cap(w.q) && w.head > 0 && w.head >= len(w.q)/2 {
		// full, half of it before head: move the rest down
		n := copy(w.q, w.q[w.head:])
		clear(w.q[n:])
		w.q, w.head = w.q[:n], 0
	}
	w.q = append(w.q, sendWait{id, fn})
	w.live++
}

// take removes the waiter of send id and returns it (nil when none).
func (w *sendWaitList) take(id uint64) func(error) {
	if w.live == 0 {
		return nil
	}
	i := w.find(id)
	if i < 0 {
		return nil
	}
	fn := w.q[i].fn
	w.q[i].fn = nil // a hole: its id stays, for the binary search
	w.live--
	if w.live == 0 {
		clear(w.q)
		if cap(w.q) > 1024 {
			w.q = nil // a burst: do not keep its array
		}
		w.q, w.head = w.q[:0], 0
		return fn
	}
	for w.head < len(w.q) && w.q[w.head].fn == nil {
		w.head++
	}
	return fn
}

func (w *sendWaitList) find(id uint64) int {
	q := w.q[w.head:]
	if len(q) > 0 && q[0].id == id && q[0].fn != nil {
		return w.head
	}
	if w.sorted {
		i, ok := slices.BinarySearchFunc(q, id, func(e sendWait, id uint64) int { return cmp.Compare(e.id, id) })
		if ok && q[i].fn != nil {
			return w.head + i
		}
		return -1
	}
	for i := range q {
		if q[i].id == id && q[i].fn != nil {
			return w.head + i
		}
	}
	return -1
}

// liveIDs returns the ids of the waiting sends, in order.
func (w *sendWaitList) liveIDs() []uint64 {
	var ids []uint64
	for _, e := range w.q[w.head:] {
		if e.fn != nil {
			ids = append(ids, e.id)
		}
	}
	return ids
}

// takeAll removes every waiter and returns them, in order.
func (w *sendWaitList) takeAll() []func(error) {
	var fns []func(error)
	for _, e := range w.q[w.head:] {
		if e.fn != nil {
			fns = append(fns, e.fn)
		}
	}
	*w = sendWaitList{}
	return fns
}

// Submit runs fn on the Link's executor, after every event handler already
// queued.
func (l *Link) Submit(fn func()) { l.exec.submit(fn) }

// SubmitAs is Submit for an application handler: where names it in the
// *supervision.PanicError should it panic ("SendAsync handler").
func (l *Link) SubmitAs(where string, fn func()) { l.exec.submitAs(where, fn) }

// Receive waits (ctx-bounded) for one receive event. minIncomplete and max
// are RFC 9622 minIncompleteLength and maxLength; -1 means infinite (for a
// byte stream without framer the default minimum is 1). If ctx ends after
// the event was produced, the event is returned anyway: nothing is lost.
func (l *Link) Receive(ctx context.Context, minIncomplete, max int) (RecvResult, error) {
	r := recvReqs.Get().(*recvReq)
	r.min, r.max = minIncomplete, max
	defer r.release()
	l.mu.Lock()
	l.recvSeq++
	l.reqs = append(l.reqs, r)
	var sb [2]served
	reqs := l.serveLocked(sb[:0])
	var sr *streamReader
	if len(reqs) == 0 && ctx.Err() == nil {
		if sr = l.takeInlineLocked(); sr == nil {
			// this request is demand: when it waits for bytes on their
			// way to the framer that complete nothing, nobody else wakes
			// a reader that waits since the last request was served
			l.kickReaderLocked()
		}
	}
	l.mu.Unlock()
	l.fulfil(reqs)
	// read for itself while nothing else does (readside.go)
	for sr != nil {
		l.readInline(ctx, sr)
		if r.state.Load() == reqDone {
			return r.res, nil
		}
		if ctx.Err() != nil {
			break
		}
		if h := testHookInlineRead.Load(); h != nil {
			(*h)()
		}
		l.mu.Lock()
		if !slices.Contains(l.reqs, r) {
			// served by a delivery that ran on another goroutine (one
			// that was running the framer when this read posted to it):
			// its result is on its way (fulfil); reading for it again
			// would wait for bytes that are not coming
			l.mu.Unlock()
			break
		}
		sr = l.takeInlineLocked()
		if sr == nil {
			l.kickReaderLocked() // someone must read for this request
		}
		l.mu.Unlock()
	}
	if !r.state.CompareAndSwap(reqPending, reqParked) {
		return r.res, nil // served already
	}
	select {
	case res := <-r.ch:
		return res, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, q := range l.reqs {
		if q == r {
			l.reqs = append(l.reqs[:i], l.reqs[i+1:]...)
			l.mu.Unlock()
			return RecvResult{}, ctx.Err()
		}
	}
	l.mu.Unlock()
	return <-r.ch, nil // already served (it was parked: through ch)
}

// testHookInlineRead, when set, runs in a blocking Receive after each of
// its inline reads that did not complete its request, before it decides
// whether to read again (tests deliver from another goroutine there).
var testHookInlineRead atomic.Pointer[func()]

// ReceiveAsync queues one receive request whose event goes to fn on the
// executor.
func (l *Link) ReceiveAsync(minIncomplete, max int, fn func(RecvResult)) {
	r := &recvReq{min: minIncomplete, max: max, fn: fn}
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	reqs := l.serveLocked(nil)
	if len(reqs) == 0 {
		l.kickReaderLocked() // reading on demand: this request is demand
	}
	l.mu.Unlock()
	l.fulfil(reqs)
}

type served struct {
	r   *recvReq
	res RecvResult
}

func (l *Link) fulfil(s []served) {
	for _, x := range s {
		if x.r.ch != nil {
			x.r.res = x.res
			if !x.r.state.CompareAndSwap(reqPending, reqDone) {
				x.r.ch <- x.res // its Receive waits
			}
			continue
		}
		l.submitAsyncLocked(x.r, x.res)
	}
}

// submitAsyncLocked hands a ReceiveAsync request's result to its handler
// while l.mu is held, so that the handlers of requests served one after
// the other run in that order: submitted after the unlock, as fulfil
// does, a ReceiveAsync serving a queued message on the application's
// goroutine and a delivery on the connection's could swap them (several
// requests outstanding got their messages out of order).
func (l *Link) submitAsyncLocked(r *recvReq, res RecvResult) {
	if res.Err == nil {
		l.exec.submitReceived(asyncCall(r.fn, res))
		return
	}
	l.exec.submitAs("ReceiveAsync handler", asyncCall(r.fn, res))
}

func asyncCall(fn func(RecvResult), res RecvResult) func() { return func() { fn(res) } }

// serveLocked matches queued receive requests with received pieces
// (RFC 9622 §9.3): a complete message when it fits maxLength, otherwise a
// partial of at most maxLength, or of what is there when at least
// minIncompleteLength bytes of an incomplete message are available.
func (l *Link) serveLocked(out []served) []served {
	if !l.established && !l.eos {
		return out
	}
	took := false
	for len(l.reqs) > 0 {
		r := l.reqs[0]
		res, ok := l.takeLocked(r)
		if !ok {
			break
		}
		n := copy(l.reqs, l.reqs[1:])
		l.reqs[n] = nil
		l.reqs = l.reqs[:n]
		took = true
		if r.ch == nil {
			l.submitAsyncLocked(r, res)
			continue
		}
		out = append(out, served{r, res})
	}
	if (took || len(out) > 0) && l.itemBytes < l.recvLimit {
		l.kickReaderLocked()
	}
	return out
}

func (l *Link) takeLocked(r *recvReq) (RecvResult, bool) {
	if len(l.items) == 0 {
		if l.eos {
			err := l.recvErr
			if err == nil {
				err = ErrClosed
			}
			return RecvResult{Err: err}, true
		}
		return RecvResult{}, false
	}
	head := l.items[0]
	if head.Err != nil {
		l.popItem()
		return RecvResult{MessageID: head.MessageID, Err: head.Err}, true
	}
	// the run of pieces of the head message
	total, n, complete := 0, 0, false
	for _, it := range l.items {
		if it.Err != nil || it.MessageID != head.MessageID {
			break
		}
		total += len(it.Data)
		n++
		if it.EndOfMessage {
			complete = true
			break
		}
	}
	minInc := r.min
	if minInc < 0 && l.unframed {
		minInc = 1
	}
	switch {
	case complete && (r.max < 0 || total <= r.max):
		return l.cutLocked(total, true), true
	case r.max >= 0 && total >= r.max && r.max > 0:
		return l.cutLocked(r.max, complete && total == r.max), true
	case !complete && (minInc >= 0 && total >= max(minInc, 1) || total > 0 && l.creditSpentLocked(total)):
		// the receive buffer full of an incomplete message is handed over
		// as a part whatever the receive's minIncompleteLength (above the
		// buffer, or infinite: complete messages only), as RFC 9622
		// §9.3.2.2 allows for a message larger than the buffers: the
		// connection reads no more of the message until this much is taken
		return l.cutLocked(total, false), true
	case !complete && l.eos && n == len(l.items):
		// the stream ended inside this message: hand over what there is
		return l.cutLocked(total, false), true
	}
	return RecvResult{}, false
}

// cutLocked removes n bytes of the head message from the queue and returns
// them as one result.
func (l *Link) cutLocked(n int, eom bool) RecvResult {
	head := l.items[0]
	res := RecvResult{MessageID: head.MessageID, Meta: head.Meta, EndOfMessage: eom, TOS: head.TOS, HasTOS: head.HasTOS, Early: head.Early}
	last := false // the last piece taken is Last
	if len(head.Data) >= n {
		res.Data = head.Data[:n:n]
		if len(head.Data) == n {
			res.Backing = head.Backing
			last = head.Last
			l.popItem()
		} else {
			// res.Data is in the buffer too: the rest's result must not
			// hand it back (Release) while the application holds this one
			l.items[0].Data, l.items[0].Backing = head.Data[n:], nil
		}
		// a zero-length message with its end
		if n == len(head.Data) && head.EndOfMessage {
			res.EndOfMessage = true
		}
	} else {
		buf := make([]byte, 0, n)
		for len(buf) < n {
			it := &l.items[0]
			k := min(n-len(buf), len(it.Data))
			buf = append(buf, it.Data[:k]...)
			res.Early = res.Early && it.Early
			if k == len(it.Data) {
				if it.EndOfMessage {
					res.EndOfMessage = true
				}
				last = it.Last
				l.popItem()
			} else {
				it.Data = it.Data[k:]
			}
		}
		res.Data = buf
	}
	l.itemBytes -= n
	if eom {
		// the message's end may be a piece of its own after these bytes
		// (a byte stream's empty end-of-stream piece): it goes with them,
		// or it would come again as a second end of the same message
		for len(l.items) > 0 && len(l.items[0].Data) == 0 && l.items[0].Err == nil &&
			l.items[0].MessageID == res.MessageID {
			end := l.items[0].EndOfMessage
			last = l.items[0].Last
			l.popItem()
			if end {
				break
			}
		}
	}
	// the last message: a byte stream's one message ends only at the end
	// of the stream; any other ends last when the stream ended cleanly
	// behind it (not when the connection failed: a reset, a truncated TLS
	// stream), known when it was delivered (Last) or when it is taken
	res.Final = res.EndOfMessage && (l.unframed || last || (l.eos && l.recvErr == nil && len(l.items) == 0))
	return res
}

// popItem drops the head of the received pieces; the array is kept for the
// next ones while it is small.
func (l *Link) popItem() {
	l.itemBytes -= int(l.items[0].overhead) // its bytes go as they are taken (cutLocked)
	l.items[0] = RecvItem{}
	l.items = l.items[1:]
	if len(l.items) == 0 {
		if cap(l.itemsArr) > 0 && cap(l.itemsArr) <= 64 {
			l.items = l.itemsArr[:0]
		} else {
			l.items, l.itemsArr = nil, nil
		}
	}
}

// serialExec runs submitted functions one at a time, in order, on a
// goroutine that exists only while there is work.
type serialExec struct {
	mu      sync.Mutex
	q       []execCall
	running bool
	// term is 1 + the index in q of the connection's terminal handler
	// while it waits to run, 0 when none does (submitTerminal)
	term int32
	link *Link // told when a handler panics (handlerPanicked)
}

// execCall is one submitted function; where names it should it panic.
type execCall struct {
	f     func()
	where string
}

// runIfIdle runs f now, on the caller's goroutine, when no call is queued
// or running (so f keeps its place in the order); false: it did not.
func (e *serialExec) runIfIdle(f func()) bool {
	e.mu.Lock()
	idle := !e.running && len(e.q) == 0
	e.mu.Unlock()
	if idle {
		f()
	}
	return idle
}

func (e *serialExec) submit(f func()) { e.submitAs("event handler", f) }

func (e *serialExec) submitAs(where string, f func()) {
	e.enqueue(execCall{f: f, where: where}, queueLast)
}

// How enqueue queues a call.
const (
	queueLast     = iota
	queueTerminal // the terminal handler (submitTerminal)
	queueReceived // a received Message (submitReceived)
)

// submitTerminal queues the terminal event's handler (or, without one,
// Done's closing): a received Message handed to a ReceiveAsync handler
// while it waits to run goes before it (submitReceived).
func (e *serialExec) submitTerminal(where string, f func()) {
	e.enqueue(execCall{f: f, where: where}, queueTerminal)
}

// submitReceived queues a ReceiveAsync handler's Message: before the
// terminal handler when that waits to run. A Message received before the
// end and taken by a ReceiveAsync called before the terminal handler ran
// (typically the one the previous Received handler queued) is an event
// still outstanding: the terminal event is the last (RFC 9622 §11:
// Closed is held back while other events are outstanding locally). There
// are only as many as Messages were received before the end: the
// ReceiveError that follows them goes after the terminal event, so a
// handler that asks again on every error cannot hold it back for ever.
func (e *serialExec) submitReceived(f func()) {
	e.enqueue(execCall{f: f, where: "ReceiveAsync handler"}, queueReceived)
}

func (e *serialExec) enqueue(c execCall, how int) {
	e.mu.Lock()
	switch {
	case how == queueReceived && e.term > 0: // running: the terminal handler is queued
		e.q = slices.Insert(e.q, int(e.term)-1, c)
		e.term++
		e.mu.Unlock()
		return
	case how == queueTerminal && e.term == 0:
		e.q = append(e.q, c)
		e.term = int32(len(e.q))
	default:
		e.q = append(e.q, c)
	}
	if !e.running {
		e.running = true
		// counted by the connection's System, whose Shutdown waits for
		// the handlers that run (a Link's terminal events come from its
		// actor, so the System is known by then)
		var sys *System
		if e.link != nil {
			if s := e.link.panicTo.Load(); s != nil {
				sys = s.sys
				sys.handlers.add()
			}
		}
		go e.loop(sys)
	}
	e.mu.Unlock()
}

func (e *serialExec) loop(sys *System) {
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			e.q = nil
			e.mu.Unlock()
			if sys != nil {
				sys.handlers.done()
			}
			return
		}
		c := e.q[0]
		e.q[0] = execCall{}
		e.q = e.q[1:]
		if e.term > 0 {
			e.term-- // 0: c is the terminal handler, which runs now
		}
		e.mu.Unlock()
		if err := supervision.Contain(c.where, c.f); err != nil && e.link != nil {
			e.link.handlerPanicked(err.(*supervision.PanicError))
		}
	}
}

// handlerPanicked reports a panic recovered from one of the Link's
// handlers, on the executor goroutine: while the connection has not ended,
// its actor aborts it with pe (the ConnectionError); in any case the
// System reports it (System.ReportPanic). A handler that runs after the
// end (Closed, ConnectionError, a late SendAsync or ReceiveAsync handler)
// has only the report: an abort would go to dead letters.
func (l *Link) handlerPanicked(pe *supervision.PanicError) {
	pe.ConnectionID = l.id
	l.mu.Lock()
	ended := l.terminal != EvNone
	l.mu.Unlock()
	s := l.panicTo.Load()
	if s == nil { // no actor attached yet: no System to report to
		pe.Log(nil, "panic in a handler")
		return
	}
	if !ended {
		s.handlerPanicked(pe)
	}
	s.sys.reportPanic(pe, s.groupID)
}

// BufferedForTest reports the received bytes held for the application.
func (l *Link) BufferedForTest() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.itemBytes
}
