package actors

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
)

// framer actor messages
type (
	// framerBoot is a framer actor's first message: what it frames, then
	// its Start event (every framer actor shares one Props: framerActorProps).
	framerBoot struct {
		sys  *System
		idx  int
		n    int
		f    framers.Framer
		link *Link
		tgen uint64
		// atStart tells the connection, which sent it the boot, that the
		// framer was Ready at once (startReady) without a framerReady
		// message: the connection looks right after the send
		// (startLooked); a framer that had not started by then (its
		// mailbox was not idle) reports framerReady as usual
		atStart atomic.Int32
	}
	// framerStop is the framer's Stop event. Its done tells the
	// connection, which looks right after the send (stopLooked), that
	// the framer stopped at once with nothing else to report (stopDone):
	// then it sends no framerStopped
	framerStop  struct{ done atomic.Int32 }
	framerInput struct {
		data  []byte
		meta  []framers.Metadata // metadata of the lower framers' message
		eos   bool
		err   error
		early bool // the bytes arrived as early data (RecvItem.Early)
		// datagram: the input ends a datagram (datagram_framed.go): data
		// is one whole datagram (the first framer), or nil after the
		// datagram's messages from the framer below (inDatagram). What the
		// framer leaves of it is dropped, not joined to the next one.
		datagram bool
		// inDatagram: data is a message of a datagram from the framer
		// below; the datagram's end follows (forwardDatagram)
		inDatagram bool
		// cut: the framer below cut a message at the datagram's end
		cut error
		// tos: the IP TOS byte the datagram arrived with, when hasTOS
		tos    uint8
		hasTOS bool
		// cost: what the input counts in Link.inflight (the recvCost of a
		// piece the framer below delivered, counted there): taken off
		// once this framer has counted what it delivers from it
		cost int
	}
	// framerReindex moves a framer to a new place in the stack (after a
	// PrependFramer below it).
	framerReindex struct{ idx, n int }
	framerSend    struct {
		send *outSend
		data []byte
		meta framers.Metadata
		eom  bool
		// abort: no data but the end of the Message sent in parts whose
		// parts came last, which failed before its last part
		// (connActor.abortFramed): the framer drops what it holds of it
		abort bool
	}
)

// The framer's input and output on the receive path are recycled: each is
// handled by one actor, which gives it back when done (a message that is
// dropped instead, e.g. from a transport already replaced, is simply
// collected).
var (
	framerInputs     = sync.Pool{New: func() any { return new(framerInput) }}
	framerDeliveries = sync.Pool{New: func() any {
		d := new(framerDelivered)
		d.items = d.one[:0]
		return d
	}}
)

func newFramerInput(data []byte, meta []framers.Metadata, eos bool, err error) *framerInput {
	m := framerInputs.Get().(*framerInput)
	m.data, m.meta, m.eos, m.err = data, meta, eos, err
	return m
}

func (m *framerInput) recycle() {
	*m = framerInput{}
	framerInputs.Put(m)
}

func (d *framerDelivered) recycle() {
	clear(d.items) // the pool must not keep received data alive
	items := d.items[:0]
	*d = framerDelivered{}
	if cap(items) > 1 {
		d.items = items
	} else {
		d.items = d.one[:0]
	}
	framerDeliveries.Put(d)
}

// framerActor runs one framer of one connection (RFC 9623 §6): it turns the
// framer's events into calls and its actions into messages to the
// connection. It is fed whole reads and parses every complete message in
// them, replying with one batch per input. It runs on the synchronized
// dispatcher, so a hop to it costs no goroutine wake-up.
type framerActor struct {
	sys    *System
	idx    int
	n      int
	f      framers.Framer
	inst   *framers.Instance
	link   *Link
	conn   *actor.PID
	toConn Poster // posts data-path messages to conn (when posting: else ctx.Send)
	// queued counts the outputs (framerFramed) posted to conn and not yet
	// handled there: while one is, a send's output must follow it through
	// conn's queue
	queued atomic.Int32
	// posting: conn is a live local actor, posted to through toConn
	posting bool
	// stopping: Stopping came; data-path messages take protoactor's path
	stopping bool
	open     bool // a delivered message awaits its end
	// inTOS, inHasTOS: the TOS byte of the input being framed (a UDP
	// datagram's), given to what it delivers
	inTOS    uint8
	inHasTOS bool
	ready    bool
	lent     bool // a read target is published
	msgID    uint64

	lowerMeta []framers.Metadata
	framed    *framerFramed    // the Send actions since the last flush
	delivered *framerDelivered // the Deliver actions of the current input
	failErr   error
	prepend   []framers.Framer // PrependFramer calls to report
	tgen      fromTransport    // the transport generation it frames

	hold *framerHold // made when it first holds bytes for want of credit
}

// framerHold is the state of a single framer that parses against the
// receive credit (Link.setHeld), apart from framerActor until needed.
type framerHold struct {
	raw    int    // bytes it holds unparsed, still counted in rawPending
	end    bool   // the end of stream came while it held
	err    error  // that end's error
	resume func() // posts it an empty input, to parse on
}

// The states of framerBoot.atStart.
const (
	startOpen   int32 = iota // neither has looked
	startReady               // the framer was Ready in its Start, and quiet: the connection counts it
	startLooked              // the connection looked first: the framer reports framerReady
)

// The states of framerStop.done.
const (
	stopOpen   int32 = iota // neither has looked
	stopDone                // the framer stopped at once: it sends no framerStopped
	stopLooked              // the connection looked first: the framer sends framerStopped
)

// newFramerBoot is the boot of the framer at idx of n.
func newFramerBoot(s *System, idx, n int, f framers.Framer, link *Link, tgen uint64) *framerBoot {
	return &framerBoot{sys: s, idx: idx, n: n, f: f, link: link, tgen: tgen}
}

// readyAtStart is the connection's look at a boot it sent: true when the
// framer was Ready at once (then no framerReady comes), else it reports
// framerReady when it is.
func (b *framerBoot) readyAtStart() bool {
	return !b.atStart.CompareAndSwap(startOpen, startLooked)
}

// receiveFast is receiveData for the inline mailbox (fastReceiver), which
// calls it without protoactor's per-message work: none of these messages
// is a request, and nothing it runs reads ctx.Message(). Once the framer
// is stopping they take protoactor's path (which drops them once it has
// stopped).
func (a *framerActor) receiveFast(ctx actor.Context, msg any) bool {
	return !a.stopping && a.receiveData(ctx, msg)
}

// receiveData handles the data path's messages (an input from below, a
// send from above), and reports whether msg was one.
func (a *framerActor) receiveData(ctx actor.Context, msg any) bool {
	switch m := msg.(type) {
	case *framerInput:
		if m.meta != nil || len(m.data) > 0 {
			// the metadata of the lower framers' message these bytes are
			// (nil: it had none; not the last message's that had some).
			// An input without bytes (the end of the stream, a datagram's
			// end, a resume) keeps the last message's
			a.lowerMeta = m.meta
		}
		a.inTOS, a.inHasTOS = m.tos, m.hasTOS
		// the top framer's deliveries are the application's: they are
		// parsed against the receive credit (readside.go, setHeld), under
		// a single framer and under stacked ones alike (a lower framer's
		// one large message may hold a flood of tiny ones of the top's)
		limited := a.idx == a.n-1 && !m.datagram && !m.inDatagram
		// raw: what the input counts in rawPending until it is parsed
		// (or while it is held): a first framer's bytes, as the reader
		// counted them
		raw := 0
		if a.idx == 0 {
			raw = len(m.data)
		}
		if limited {
			a.inst.Allow(heldFreeAllowance, recvItemCost)
			if m.cost > 0 {
				// the top of a stack: its input, counted in inflight by
				// the framer below, counts in rawPending instead while it
				// is parsed, as a first framer's does, so that it does
				// not take from the credit it is parsed against (added
				// there first: the reader sees one count or the other)
				a.link.addRaw(m.cost)
				a.link.doneInflight(m.cost)
				raw, m.cost = m.cost, 0
			}
		} else {
			a.inst.Allow(math.MaxInt, 0) // below the top, or datagrams: not limited
		}
		if len(m.data) > 0 || m.eos || !m.datagram {
			// only a clean end (EOF) is the framer's end of stream: at it
			// a framer may take the bytes after its last message for a
			// final one (framers.Delimiter's unterminated last line). A
			// stream that failed (a reset) ends nothing for the framer;
			// what it holds then is a cut message (below)
			a.inst.Received(a.f, m.data, m.eos && cleanEnd(m.err))
		}
		eos, eosErr := m.eos, m.err
		holding := limited && a.inst.Holding()
		if holding && a.hold == nil {
			a.hold = a.newHold(ctx)
		}
		if h := a.hold; h != nil {
			if holding && eos {
				h.end, h.err, eos, eosErr = true, m.err, false, nil // it follows the held bytes
			} else if !holding && h.end {
				eos, eosErr, h.end, h.err = true, h.err, false, nil
			}
		}
		if m.datagram {
			a.endDatagram(m) // datagram_framed.go
		}
		// what the framer sent while parsing (a handshake's reply) goes
		// out now, not with the application's next Send
		a.flushOut(ctx, nil)
		if a.idx == 0 {
			a.lendTarget()
		}
		if eos && a.failErr == nil && a.inst.Buffered() > 0 {
			if cleanEnd(eosErr) {
				a.failErr = fmt.Errorf("%w (%d bytes left)", framers.ErrTruncated, a.inst.Buffered())
			} else {
				// the stream failed inside a message: a ConnectionError
				// unwrapping to both the cut and its cause
				a.failErr = fmt.Errorf("%w (%d bytes left): %w", framers.ErrTruncated, a.inst.Buffered(), eosErr)
			}
		}
		a.reportPrepends(ctx)
		d := a.delivered
		if m.inDatagram {
			d = nil // its datagram's messages go on together, at its end
		} else {
			a.delivered = nil
		}
		if d != nil && m.early {
			// completed by early bytes, and so early throughout: early
			// data only ever comes before the rest (RecvItem.Early)
			for i := range d.items {
				d.items[i].Early = true
			}
		}
		if d != nil {
			// on their way to the Link, or under stacked framers to the
			// framer above: a Receive must not take the read token and
			// block in a read for bytes already read (takeInlineLocked).
			// The framers above take what they got off (m.cost) once
			// they have counted what they deliver from it
			a.link.addInflight(itemsCost(d.items))
		}
		if m.cost > 0 {
			a.link.doneInflight(m.cost)
		}
		if a.idx == 0 || raw > 0 || a.hold != nil {
			if h := a.hold; h != nil && (holding || h.raw > 0) {
				raw += h.raw
				h.raw = 0
				if holding {
					h.raw = min(a.inst.Buffered(), raw)
					raw -= h.raw
				}
				if holding {
					// before doneRaw: the reader must not read while bytes
					// are held
					a.link.setHeld(true, h.resume)
				}
			}
			if raw != 0 {
				// only once the delivered bytes count as inflight: while a
				// message is on its way, the Link sees one count or the
				// other (with neither, a Receive would take the read token
				// and block in a read)
				a.link.doneRaw(raw)
			}
			if h := a.hold; h != nil && !holding && a.link.held.Load() {
				// after doneRaw: the hold's end wakes the reader for a
				// Receive that found the held bytes still counted in
				// rawPending and waits for them (takeInlineLocked). The
				// input may be a resume, run on a goroutine that holds no
				// read token, and that delivers nothing (the rest of a
				// large message is still to come): doneRaw wakes no one
				// then, and that Receive would wait forever.
				a.link.setHeld(false, h.resume)
			}
		}
		if d != nil || eos {
			if d == nil {
				d = framerDeliveries.Get().(*framerDelivered)
			}
			d.fromTransport, d.idx, d.eos, d.err = a.tgen, a.idx, eos && a.failErr == nil, eosErr
			d.datagram = m.datagram
			a.postConn(ctx, d)
		}
		if m.inDatagram && a.failErr != nil {
			// held to the datagram's end, which tells whether it is the
			// connection's or only the datagram's (endDatagram)
			held := a.failErr
			a.failErr = nil
			a.report(ctx)
			a.failErr = held
		} else {
			a.report(ctx)
		}
		m.recycle()
	case *framerSend:
		if m.abort {
			a.abortSend(ctx)
			break
		}
		if a.framed == nil && a.idx == 0 && m.send != nil && m.send.box != nil {
			// the bytes of a send go to the socket in its own box: no
			// allocation (recycled with the send once written)
			a.framed = &m.send.box.ff
			a.framed.bufs = a.framed.two[:0]
		}
		if a.inst.InPassthrough() {
			a.emit(m.data)
		} else {
			a.f.NewSentMessage(a.inst, m.data, m.meta, m.eom)
		}
		a.flushOut(ctx, m.send)
		a.report(ctx)
	default:
		return false
	}
	return true
}

func (a *framerActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if a.receiveData(ctx, msg) {
		return
	}
	switch m := msg.(type) {
	case *actor.Started:
	case *framerBoot:
		a.boot(ctx, m)
		a.f.Start(a.inst)
		// Ready at once with nothing else to report (no bytes to send, no
		// PrependFramer, no failure): the connection, which sent the boot,
		// counts it when it looks (readyAtStart), without a message
		quiet := a.framed == nil && len(a.prepend) == 0 && a.failErr == nil
		a.flushOut(ctx, nil)
		if a.ready && quiet && m.atStart.CompareAndSwap(startOpen, startReady) {
			a.ready = false
		}
		a.report(ctx)
	case *framerReindex:
		a.idx, a.n = m.idx, m.n
	case *framerStop:
		a.f.Stop(a.inst)
		// nothing to report, and no earlier output of this framer still
		// queued at the connection: it may take the stop as done at once
		quiet := a.framed == nil && len(a.prepend) == 0 && a.failErr == nil && !a.ready && a.queued.Load() == 0
		a.flushOut(ctx, nil)
		a.report(ctx) // a FailConnection in Stop ends the close with a ConnectionError
		if quiet && m.done.CompareAndSwap(stopOpen, stopDone) {
			return
		}
		ctx.Send(a.conn, &framerStopped{fromTransport: a.tgen, idx: a.idx})
	case *actor.Stopping:
		a.stopping = true
	case *actor.Stopped:
	default:
		if a.sys != nil {
			a.sys.Logger.Warn("framer: unhandled message", "type", fmt.Sprintf("%T", m))
		}
	}
}

// boot sets the framer up from its first message (what Started did for a
// framer with Props of its own): its connection, and its own copy of the
// framer, made here so that a panic in Clone is this framer's failure,
// supervised by the connection.
func (a *framerActor) boot(ctx actor.Context, m *framerBoot) {
	a.sys, a.idx, a.n, a.f, a.link, a.tgen = m.sys, m.idx, m.n, m.f, m.link, fromTransport{m.tgen}
	a.conn = ctx.Parent()
	a.toConn, a.posting = posterOf(ctx.ActorSystem(), a.conn)
	a.f = framers.Instantiate(a.f)
	a.inst = framers.NewOwnedInstance((*framerOwner)(a), maxBuffered(a.f))
}

// framerOwner is a framer actor as its Instance's owner (framers.Owner):
// the hooks are its methods, so that the Instance costs no closure per
// hook.
type framerOwner framerActor

func (o *framerOwner) Send(b []byte)            { (*framerActor)(o).emit(b) }
func (o *framerOwner) Alloc(n int) []byte       { return (*framerActor)(o).alloc(n) }
func (o *framerOwner) Free(b []byte)            { (*framerActor)(o).free(b) }
func (o *framerOwner) Ready()                   { o.ready = true }
func (o *framerOwner) Fail(err error)           { o.failErr = err }
func (o *framerOwner) Prepend(f framers.Framer) { o.prepend = append(o.prepend, f) }
func (o *framerOwner) Release(data []byte)      { releaseReadBuf(data) }
func (o *framerOwner) Allowance(spent int) int {
	return (*framerActor)(o).allowance(spent)
}

func (o *framerOwner) DeliverOwned(meta framers.Metadata, data, backing []byte, eom bool) {
	a := (*framerActor)(o)
	if !a.open {
		a.msgID++
		a.open = true
	}
	var md []framers.Metadata
	if meta != nil || a.lowerMeta != nil {
		md = make([]framers.Metadata, a.n)
		copy(md, a.lowerMeta)
		md[a.idx] = meta
	}
	if a.delivered == nil {
		a.delivered = framerDeliveries.Get().(*framerDelivered)
	}
	d := a.delivered
	if a.idx != a.n-1 {
		backing = nil // only the top framer's deliveries reach the application
	}
	d.items = append(d.items, RecvItem{MessageID: a.msgID, Data: data, EndOfMessage: eom, Meta: md, Backing: backing,
		TOS: a.inTOS, HasTOS: a.inHasTOS, overhead: uint32(min(a.inst.DeliveryOverhead(), math.MaxUint32))})
	if eom {
		a.open = false
	}
}

// allowance is the Instance's Allowance hook: the receive credit left,
// less what the pieces parsed from the current input cost (spent), which
// count as inflight only once it is parsed.
func (a *framerActor) allowance(spent int) int {
	return a.link.recvCreditLeft() - spent
}

// newHold makes the hold state, with the function that posts the framer
// an empty input (to parse on).
func (a *framerActor) newHold(ctx actor.Context) *framerHold {
	self, as := ctx.Self(), ctx.ActorSystem()
	p := NewPoster(as, self)
	return &framerHold{resume: func() {
		if p != nil {
			p.Post(newFramerInput(nil, nil, false, nil))
		} else {
			as.Root.Send(self, newFramerInput(nil, nil, false, nil))
		}
	}}
}

// testHookFramerAlloc, when set, sees the size of every buffer a framer
// asks for to receive into (tests count what a peer makes a receiver
// allocate).
var testHookFramerAlloc atomic.Pointer[func(n int)]

// alloc is the Instance's Alloc hook: the top framer receives into buffers
// the application may have handed back (Link.RecycleRecv).
func (a *framerActor) alloc(n int) []byte {
	if h := testHookFramerAlloc.Load(); h != nil {
		(*h)(n)
	}
	if a.idx == a.n-1 {
		return a.link.recvAllocFor(n, a.inst.Wants())
	}
	return make([]byte, n)
}

// free is the Instance's Free hook: a buffer the top framer outgrew (its
// message grows with the bytes that arrive) serves a later Alloc.
func (a *framerActor) free(b []byte) {
	if a.idx == a.n-1 {
		a.link.RecycleRecv(b)
	}
}

// directReadMin is the least a first framer must still wait for before its
// buffer is lent to the reader: smaller rests are read with what follows
// them, in one pooled read.
const directReadMin = 16 << 10

// lendTarget publishes the first framer's read target, so that the rest of
// a large message is read straight into the buffer it is delivered in.
func (a *framerActor) lendTarget() {
	t := a.inst.ReadTarget(directReadMin)
	if t == nil && !a.lent {
		return
	}
	a.lent = t != nil
	a.link.setReadTarget(a.tgen.tgen, t)
}

// emit is the framer's Send action: b joins the bytes of the next flush.
func (a *framerActor) emit(b []byte) {
	if a.framed == nil {
		a.framed = &framerFramed{}
		a.framed.bufs = a.framed.two[:0]
	}
	a.framed.bufs = append(a.framed.bufs, b)
}

func (a *framerActor) flushOut(ctx actor.Context, s *outSend) {
	f := a.framed
	if s == nil && f == nil {
		return
	}
	a.framed = nil
	if f == nil {
		if s != nil && s.box != nil && a.idx == 0 {
			f = &s.box.ff
		} else {
			f = &framerFramed{}
		}
	}
	f.fromTransport, f.idx, f.send, f.queued = a.tgen, a.idx, s, &a.queued
	if s != nil && s.box != nil && f == &s.box.ff && a.queued.Load() == 0 && s.box.reply.CompareAndSwap(replyWaiting, replyFilled) {
		// the connection takes it where it posted the send (connActor.send)
		f.queued = nil
		return
	}
	a.queued.Add(1)
	a.postConn(ctx, f)
}

// abortSend ends a Message sent in parts that failed before its last part
// (connActor.abortFramed): the framer drops what it holds of it
// (framers.SendAborter; what it sends then is dropped), and the abort goes
// on down the stack through the connection, after this framer's output
// for the Message's earlier parts, as a send's output does.
func (a *framerActor) abortSend(ctx actor.Context) {
	if ab, ok := a.f.(framers.SendAborter); ok && !a.inst.InPassthrough() {
		ab.AbortMessage(a.inst)
	}
	a.framed = nil
	a.queued.Add(1)
	a.postConn(ctx, &framerFramed{fromTransport: a.tgen, idx: a.idx, queued: &a.queued, abort: true})
	a.report(ctx) // a FailConnection in AbortMessage
}

// postConn sends a data-path message to the connection actor, straight to
// its mailbox (a Poster) when it is a live local actor.
func (a *framerActor) postConn(ctx actor.Context, msg any) {
	if !a.posting {
		ctx.Send(a.conn, msg)
		return
	}
	a.toConn.Post(msg)
}

// reportPrepends sends the PrependFramer actions: before any data the
// framer delivers after them, which must go through the new framer.
func (a *framerActor) reportPrepends(ctx actor.Context) {
	for _, f := range a.prepend {
		ctx.Send(a.conn, &framerPrepended{fromTransport: a.tgen, idx: a.idx, f: f})
	}
	a.prepend = nil
}

// report sends the PrependFramer, Ready and Fail actions (once each);
// prepended framers first, so the connection counts them before it decides
// it is Ready.
func (a *framerActor) report(ctx actor.Context) {
	a.reportPrepends(ctx)
	if a.ready {
		a.ready = false
		ctx.Send(a.conn, &framerReady{fromTransport: a.tgen, idx: a.idx})
	}
	if a.failErr != nil {
		err := a.failErr
		a.failErr = nil
		if a.sys.Tracing() {
			a.sys.trace(&messages.TraceRecord{Kind: "receive_error", Event: "FramerFailed", ConnectionId: a.link.ID(), GroupId: linkGroup(a.link), Error: err.Error()})
		}
		ctx.Send(a.conn, &framerFailed{fromTransport: a.tgen, idx: a.idx, err: err})
	}
}

// cleanEnd reports whether err, the error a received stream ended with,
// is a clean end (none, or io.EOF: the peer's FIN) rather than a failure
// (a reset, a TLS stream cut without close_notify, this side's own close).
func cleanEnd(err error) bool { return err == nil || errors.Is(err, io.EOF) }

func maxBuffered(f framers.Framer) int {
	if mb, ok := f.(framers.MaxBufferer); ok {
		return mb.MaxBuffered()
	}
	return 0
}
