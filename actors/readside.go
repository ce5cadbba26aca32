package actors

import (
	"context"
	"errors"
	"math"
	"os"
	"sync"
	"time"
)

// Who reads the transport (design PERFORMANCE.md, "receive path").
//
// A connection's stream is read by whoever holds its read token: the
// connection's reader goroutine, or an application goroutine blocked in
// Receive. The reads, the framers and the connection actor run on the
// goroutine that holds the token (they run on the synchronized dispatcher),
// so a Receive that reads for itself gets its message without any goroutine
// being woken for it: the same cost as a raw Go reader calling io.ReadFull.
//
// Until the application first calls the blocking Receive (and always on a
// connection that re-establishes or has a Closed, ConnectionError or
// Reestablishing handler: it asked to learn of the peer's close at once),
// the reader goroutine reads ahead (bounded by the receive credits) and events such as
// the peer's close arrive without a Receive. From the first blocking
// Receive on, the connection reads on demand: the reader goroutine reads
// only while a receive (a ReceiveAsync, or a Receive that cannot read for
// itself) waits, while the connection is not Ready (framer handshakes), and
// while it is Closing (it waits for the peer's end of stream); otherwise
// data waits in the kernel until the next Receive, as it does for a raw Go
// reader.

// streamReader is one transport's read step: read blocks until data or the
// end of the stream; post hands what read returned to the framers or the
// connection actor and reports whether the stream has ended.
type streamReader struct {
	cr     *connReader
	dl     interface{ SetReadDeadline(time.Time) error }
	inline bool // a Receive caller may run it (interruptible by deadline)
	watch  ctxWatch
}

func (sr *streamReader) read() ([]byte, error)                    { return sr.cr.read() }
func (sr *streamReader) post(data []byte, err error) (ended bool) { return sr.cr.post(data, err) }

// setReader installs the read step of a new transport. readAhead is true
// until the connection is Ready.
func (l *Link) setReader(sr *streamReader) {
	l.mu.Lock()
	old := l.reader
	l.reader = sr
	l.reading = false
	l.readAhead = true
	l.mu.Unlock()
	if old != nil && old != sr {
		old.watch.release()
	}
}

// keepReadingAhead makes the connection read ahead for good.
func (l *Link) keepReadingAhead() {
	l.mu.Lock()
	l.alwaysAhead, l.demand = true, false
	l.kickReaderLocked()
	l.mu.Unlock()
}

// setReadAhead tells whether the connection needs its transport read
// whatever the application asks (before Ready, and while Closing).
func (l *Link) setReadAhead(on bool) {
	l.mu.Lock()
	l.readAhead = on
	l.kickReaderLocked()
	l.mu.Unlock()
}

// readerMayReadLocked tells whether the reader goroutine of sr may take the
// read token now.
func (l *Link) readerMayReadLocked(sr *streamReader) bool {
	if l.gateClosed || l.reader != sr || l.readEnded || l.reading {
		return false
	}
	if l.rawPending.Load() >= rawPendingLimit || (!l.eos && l.recvChargedLocked() >= int64(l.recvLimit)) {
		return false // receive credits
	}
	return !l.demand || l.readAhead || len(l.reqs) > 0
}

// kickReaderLocked wakes the reader goroutine when it waits and may now
// read; no goroutine is woken otherwise.
func (l *Link) kickReaderLocked() {
	if l.held.Load() {
		l.resumeHeldLocked()
	}
	if l.readerWaiting.Load() > 0 && (l.gateClosed || l.readerMayReadLocked(l.reader)) {
		l.readerWake.Broadcast()
	}
}

// acquireRead blocks the reader goroutine of sr until it may read, and
// takes the read token. It returns false when sr's transport is gone.
func (l *Link) acquireRead(sr *streamReader) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := false
	l.waitReader(func() bool {
		ok = l.readerMayReadLocked(sr)
		return ok || l.gateClosed || l.reader != sr || l.readEnded
	})
	if !ok {
		return false
	}
	l.reading = true
	return true
}

// releaseRead gives the read token of sr back; ended records that its
// stream is over (no one reads it again).
func (l *Link) releaseRead(sr *streamReader, ended bool) {
	l.mu.Lock()
	if l.reader == sr {
		l.reading = false
		if ended {
			l.readEnded = true
			l.readerWake.Broadcast()
			defer sr.watch.release()
		} else {
			l.kickReaderLocked()
		}
	}
	l.mu.Unlock()
}

// takeInlineLocked gives the read token to a Receive caller whose request
// found nothing to take, and switches the connection to reading on demand.
// It returns nil when the caller must wait instead.
func (l *Link) takeInlineLocked() *streamReader {
	sr := l.reader
	if sr == nil || !sr.inline || l.gateClosed || l.readEnded || l.eos || !l.established {
		return nil
	}
	if !l.demand {
		if l.watchesPeer() {
			return nil
		}
		l.demand = true
	}
	l.armIdleLocked()
	if l.reading || l.rawPending.Load() > 0 || l.inflight.Load() > 0 || l.itemBytes >= l.recvLimit {
		// someone reads, or read data is on its way here (the connection
		// actor runs on another goroutine just now): wait for it
		if l.held.Load() {
			l.resumeHeldLocked() // or it waits in the first framer
		}
		return nil
	}
	l.reading = true
	return sr
}

// --- bytes held by the first framer for want of credit ---
//
// The reader checks the receive credit before each read, but one read
// (up to readChunk bytes) of tiny messages parses into many pieces, each
// costing far more memory than its bytes: a length-prefixed stream of
// empty messages makes 64k pieces of a 256 KiB read. So a single framer
// (the first is the top one) parses against the credit left
// (framers.Instance.Allow, framerActor.allowance): once the pieces cost
// it, the framer holds the rest of the read unparsed (counted in
// rawPending, which bounds what is read meanwhile) and tells the Link
// (setHeld). When credit frees (kickReaderLocked) a goroutine of its own
// makes the framer parse on, since the reader may be blocked in a read or
// gone (the stream ended: the framer holds the end of stream too). A
// framer with nothing buffered never holds.

// heldFreeAllowance is what the pieces of one input may cost before the
// framer asks the Link for the credit left: small inputs (one message)
// take no lock for it.
const heldFreeAllowance = 16 << 10

// setHeld records whether the first framer holds unparsed bytes for want
// of credit after an input; resume makes it parse on.
func (l *Link) setHeld(on bool, resume func()) {
	l.mu.Lock()
	l.held.Store(on)
	l.resumeFn, l.resumePosted = resume, false
	if on {
		l.resumeHeldLocked() // credit may have freed while it parsed
	} else {
		l.kickReaderLocked()
	}
	l.mu.Unlock()
}

// resumeHeldLocked makes the framer that holds bytes parse on, once
// enough credit is free: half the buffer (so that a slow application
// does not wake it for each message it takes), or any when a receive
// waits for more than is queued.
func (l *Link) resumeHeldLocked() {
	if l.resumePosted || l.resumeFn == nil {
		return
	}
	if c := l.recvChargedLocked(); !l.eos && (c >= int64(l.recvLimit) || (len(l.reqs) == 0 && c > int64(l.recvLimit/2))) {
		return
	}
	l.resumePosted = true
	go l.resumeFn()
}

// recvCreditLeft is what received pieces may still cost against the
// receive buffer (framerActor.allowance).
// After the end of stream (the application's Close, or the connection's
// failure: the held bytes come before the peer's own end) what is parsed
// is dropped (Link.deliver), so it is not limited: the held bytes must be
// parsed through for the reader to reach the peer's end of stream, which
// a closing connection waits for.
func (l *Link) recvCreditLeft() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.eos {
		return math.MaxInt
	}
	return l.recvLimit - int(l.recvChargedLocked())
}

// demandIdle is how long a connection reading on demand waits without a
// receive before it reads ahead again (and so notices its peer's close
// without one).
const demandIdle = 100 * time.Millisecond

// armIdleLocked starts the idle check of a connection reading on demand.
func (l *Link) armIdleLocked() {
	if l.idleArmed {
		return
	}
	l.idleArmed = true
	l.idleSeen = l.recvSeq
	if l.idleTimer == nil {
		l.idleTimer = time.AfterFunc(demandIdle, l.idleCheck)
		return
	}
	l.idleTimer.Reset(demandIdle)
}

// idleCheck runs every demandIdle while the connection reads on demand:
// when no receive came since the last check and none waits, the
// connection goes back to reading ahead until the next blocking Receive.
func (l *Link) idleCheck() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.demand || l.gateClosed || l.terminal != EvNone {
		l.idleArmed = false
		return
	}
	if l.recvSeq != l.idleSeen || len(l.reqs) > 0 {
		l.idleSeen = l.recvSeq
		l.idleTimer.Reset(demandIdle)
		return
	}
	l.idleArmed = false
	l.demand = false
	l.kickReaderLocked()
}

// watchesPeer tells whether the connection must learn of its peer's close
// or reset without a receive: it re-establishes, or a Closed,
// ConnectionError or Reestablishing handler is set. Such a connection keeps
// reading ahead.
func (l *Link) watchesPeer() bool {
	return l.alwaysAhead || l.h.Closed != nil || l.h.ConnectionError != nil || l.h.Reestablishing != nil
}

// readInline runs one read step of sr on the calling goroutine (which holds
// the read token). A ctx that ends interrupts the read through a read
// deadline; no data is lost (a read interrupted this way returns nothing).
func (l *Link) readInline(ctx context.Context, sr *streamReader) {
	var (
		data []byte
		err  error
	)
	if ctx.Done() == nil {
		data, err = sr.read()
	} else {
		data, err = readInterruptible(ctx, sr)
	}
	ended := false
	if len(data) > 0 || err != nil {
		ended = sr.post(data, err)
	}
	l.releaseRead(sr, ended)
}

// readInterruptible is sr.read that the end of ctx interrupts through a
// read deadline (reset afterwards; an interrupted read returns nothing).
// Apart from readInline so that a ctx that cannot end costs nothing.
func readInterruptible(ctx context.Context, sr *streamReader) ([]byte, error) {
	w := &sr.watch
	if !w.begin(ctx, sr) {
		return nil, nil // ctx has ended: the caller sees it
	}
	data, err := sr.read()
	if w.end() {
		_ = sr.dl.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = nil
		}
	}
	return data, err
}

// ctxWatch lets the end of a Receive's ctx interrupt the inline reads it
// runs. Registering for a ctx's end (context.AfterFunc) costs allocations
// and a lock on the parent ctx, shared by every connection using it. A
// read registers and unregisters as before, but when two reads in a row
// come with the same ctx (the same Done channel: a long-lived ctx), the
// registration is kept for the reads that follow with it, and replaced
// when another ctx comes. It is released when the reader's stream ends,
// its Link ends, or a new transport's reader takes over (Link.setReader),
// so that a long-lived ctx does not keep ended connections. A ctx made per
// Receive (and cancelled after it) is never kept, so its cancel does not
// run the registration's function.
type ctxWatch struct {
	mu          sync.Mutex
	done        <-chan struct{} // the Done channel registered for, or of the last read
	stop        func() bool     // nil: not registered
	keep        bool            // the registration outlives the read
	reading     bool            // a read under done is in progress
	fired       bool            // done is closed
	interrupted bool            // fire interrupted the read in progress
}

// begin registers for ctx (unless registered for its Done channel
// already) and marks a read in progress. It returns false when ctx has
// ended, in which case no read must start.
func (w *ctxWatch) begin(ctx context.Context, sr *streamReader) bool {
	done := ctx.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != done || w.stop == nil {
		if w.stop != nil {
			w.stop() // a fire already on its way finds another done and does nothing
		}
		w.keep = w.done == done // the previous read came with it too
		w.done, w.fired = done, false
		w.stop = context.AfterFunc(ctx, func() { w.fire(done, sr) })
	}
	if w.fired {
		return false
	}
	w.reading = true
	return true
}

// end marks the read finished, unregisters unless the registration is
// kept, and tells whether fire set a read deadline to interrupt the read
// (to be reset).
func (w *ctxWatch) end() bool {
	w.mu.Lock()
	w.reading = false
	interrupted := w.interrupted
	w.interrupted = false
	if !w.keep && w.stop != nil {
		w.stop()
		w.stop = nil
	}
	w.mu.Unlock()
	return interrupted
}

// fire runs when done closes: it interrupts the read in progress, if any.
func (w *ctxWatch) fire(done <-chan struct{}, sr *streamReader) {
	w.mu.Lock()
	if w.done == done {
		w.fired = true
		if w.reading && !w.interrupted {
			w.interrupted = true
			_ = sr.dl.SetReadDeadline(time.Unix(1, 0))
		}
	}
	w.mu.Unlock()
}

// release drops the registration.
func (w *ctxWatch) release() {
	w.mu.Lock()
	if w.stop != nil {
		w.stop()
	}
	w.done, w.stop, w.fired, w.keep = nil, nil, false, false
	w.mu.Unlock()
}

// --- direct reads into the first framer's buffer ---

// setReadTarget publishes where the next bytes of the transport of
// generation gen may be read (b nil: nowhere in particular). The first
// framer calls it after an input it processed, before it gives the input's
// bytes back (doneRaw).
func (l *Link) setReadTarget(gen uint64, b []byte) {
	l.mu.Lock()
	l.target, l.targetGen = b, gen
	l.hasTarget.Store(b != nil)
	l.mu.Unlock()
}

// takeReadTarget hands the published target to the holder of the read
// token, when the first framer has processed everything read before (so
// the target is where the stream goes on).
func (l *Link) takeReadTarget(gen uint64) []byte {
	if !l.hasTarget.Load() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.target == nil || l.targetGen != gen || l.rawPending.Load() != 0 {
		return nil
	}
	b := l.target
	l.target = nil
	l.hasTarget.Store(false)
	return b
}

// putBackReadTarget returns a target nothing was read into (the read was
// interrupted), unless the framer has published another since.
func (l *Link) putBackReadTarget(gen uint64, b []byte) {
	l.mu.Lock()
	if l.target == nil && l.rawPending.Load() == 0 {
		l.target, l.targetGen = b, gen
		l.hasTarget.Store(true)
	}
	l.mu.Unlock()
}
