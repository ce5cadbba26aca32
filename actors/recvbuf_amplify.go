package actors

import "fmt"

// RecvCreditForTest reports the received pieces queued for the
// application, what they and those on their way charge against the
// receive buffer (recvChargedLocked, with each piece's recvItemCost), and
// whether that fills the buffer: the reader then waits for the
// application.
func (l *Link) RecvCreditForTest() (items int, charged int64, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.inflight.Load() + int64(l.itemBytes) + int64(len(l.items)*recvItemCost)
	return len(l.items), c, c >= int64(l.recvLimit) && l.readerWaiting.Load() > 0
}

// HeldForTest reports whether the first framer holds unparsed bytes for
// want of receive credit (setHeld).
func (l *Link) HeldForTest() bool { return l.held.Load() }

// RecvStateForTest describes the receive side's state for a test's
// failure message: the credit, the read token and who may read.
func (l *Link) RecvStateForTest() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	mayRead := l.reader != nil && l.readerMayReadLocked(l.reader)
	return fmt.Sprintf("items %d, itemBytes %d, inflight %d, rawPending %d, reqs %d, held %v, resumePosted %v, eos %v, reading %v, readerWaiting %d, readerMayRead %v, demand %v, readAhead %v, readEnded %v, gateClosed %v, target %v",
		len(l.items), l.itemBytes, l.inflight.Load(), l.rawPending.Load(), len(l.reqs), l.held.Load(), l.resumePosted, l.eos,
		l.reading, l.readerWaiting.Load(), mayRead, l.demand, l.readAhead, l.readEnded, l.gateClosed, l.hasTarget.Load())
}
