package actors

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
