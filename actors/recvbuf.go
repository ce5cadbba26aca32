package actors

import "sync/atomic"

// Received buffers handed back. A large message is received into a buffer
// of its own (framers.Hooks.Alloc), which the application owns. When it
// hands the buffer back (taps Message.Release), the connection keeps it for
// its next large message: that message is read into memory that is already
// mapped and warm, and nothing is zeroed or collected. A message's buffer
// grows with the bytes that arrive (framers.Instance); the smaller buffers
// it outgrows are kept the same way, for the next message to start in. The
// few buffers kept are dropped with the connection.

// recvRecycleMin is the smallest buffer worth keeping: smaller messages are
// cut from pooled read buffers anyway.
const recvRecycleMin = 4 << 10

// recvFreeSlots is how many handed-back buffers a connection keeps at
// most; recvFree.bytes bounds their total.
const recvFreeSlots = 8

// recvFree holds handed-back buffers: up to recvFreeSlots, and beyond two
// only while they total at most a quarter of the receive buffer limit (a
// reader that reads ahead, as on QUIC, takes several buffers in a burst
// and the application hands them back in a burst). Any goroutine may put;
// the first framer's actor takes.
type recvFree struct {
	slots [recvFreeSlots]atomic.Pointer[[]byte]
	bytes atomic.Int64 // capacity kept (approximate under concurrent puts)
}

// RecycleRecv hands back a buffer from RecvResult.Backing whose data the
// application no longer uses (or one the first framer outgrew). Buffers
// below recvRecycleMin or above the receive buffer limit, and any beyond
// those kept, are left to the garbage collector (a larger one takes the
// place of the smallest kept); so is everything once the connection has
// ended. Safe for concurrent use.
func (l *Link) RecycleRecv(b []byte) {
	limit := max(l.recvLimit, DefaultRecvBufferLimit)
	if cap(b) < recvRecycleMin || cap(b) > limit+64 || l.State() == Closed {
		return
	}
	b = b[:cap(b)]
	f := &l.recvFree
	for i := range f.slots {
		if i >= 2 && f.bytes.Load()+int64(cap(b)) > int64(limit/4) {
			break
		}
		if f.slots[i].CompareAndSwap(nil, &b) {
			f.bytes.Add(int64(cap(b)))
			return
		}
	}
	// no room: b takes the place of the smallest buffer kept, when it is
	// larger (the buffers a growing message outgrew give way to whole
	// messages' ones) and the budget allows
	var small *atomic.Pointer[[]byte]
	var sp *[]byte
	for i := range f.slots {
		p := f.slots[i].Load()
		if p == nil || cap(*p) >= cap(b) || (sp != nil && cap(*p) >= cap(*sp)) {
			continue
		}
		if i >= 2 && f.bytes.Load()-int64(cap(*p))+int64(cap(b)) > int64(limit/4) {
			continue
		}
		small, sp = &f.slots[i], p
	}
	if small != nil && small.CompareAndSwap(sp, &b) {
		f.bytes.Add(int64(cap(b) - cap(*sp)))
	}
}

// recvAlloc returns a buffer of length n for the first framer to receive
// into: a handed-back one when one is large enough, a new one otherwise.
func (l *Link) recvAlloc(n int) []byte { return l.recvAllocFor(n, n) }

// recvAllocFor is recvAlloc for a message of want bytes whose buffer
// grows (framers.Instance: n is where it starts, want where it ends). Of
// the handed-back buffers it takes the smallest that holds the whole
// message, else the largest: the framer takes a buffer's capacity up to
// want, so the larger it is, the fewer times the message is copied as it
// grows. Buffers too small stay: the buffers a growing message outgrows
// come back here and serve the next one.
func (l *Link) recvAllocFor(n, want int) []byte {
	if n >= recvRecycleMin {
		want = max(want, n)
		var best *atomic.Pointer[[]byte]
		var bp *[]byte
		for i := range l.recvFree.slots {
			s := &l.recvFree.slots[i]
			if p := s.Load(); p != nil && cap(*p) >= n && (bp == nil || fitsBetter(cap(*p), cap(*bp), want)) {
				best, bp = s, p
			}
		}
		// (a slot may have been given a larger buffer since: then a new one)
		if best != nil && best.CompareAndSwap(bp, nil) {
			l.recvFree.bytes.Add(-int64(cap(*bp)))
			return (*bp)[:n]
		}
	}
	return make([]byte, n)
}

// fitsBetter reports whether a buffer of capacity c suits a message of
// want bytes better than one of capacity than: one that holds the message
// beats one that does not; of two that do, the smaller; of two that do
// not, the larger.
func fitsBetter(c, than, want int) bool {
	if (c >= want) != (than >= want) {
		return c >= want
	}
	if c >= want {
		return c < than
	}
	return c > than
}

// dropRecycled lets the kept buffers go (the connection ended).
func (l *Link) dropRecycled() {
	for i := range l.recvFree.slots {
		l.recvFree.slots[i].Store(nil)
	}
	l.recvFree.bytes.Store(0)
}
