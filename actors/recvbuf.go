package actors

import "sync/atomic"

// Received buffers handed back. A large message is received into a buffer
// of its own (framers.Hooks.Alloc), which the application owns. When it
// hands the buffer back (taps Message.Release), the connection keeps it for
// its next large message: that message is read into memory that is already
// mapped and warm, and nothing is zeroed or collected. The few buffers kept
// are dropped with the connection.

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
// application no longer uses. Buffers below recvRecycleMin or above the
// receive buffer limit, and any beyond those kept, are left to the
// garbage collector; so is everything once the connection has ended. Safe
// for concurrent use.
func (l *Link) RecycleRecv(b []byte) {
	limit := max(l.recvLimit, DefaultRecvBufferLimit)
	if cap(b) < recvRecycleMin || cap(b) > limit+64 || l.State() == Closed {
		return
	}
	b = b[:cap(b)]
	f := &l.recvFree
	for i := range f.slots {
		if i >= 2 && f.bytes.Load()+int64(cap(b)) > int64(limit/4) {
			return
		}
		if f.slots[i].CompareAndSwap(nil, &b) {
			f.bytes.Add(int64(cap(b)))
			return
		}
	}
}

// recvAlloc returns a buffer of length n for the first framer to receive
// into: a handed-back one when one is large enough, a new one otherwise.
func (l *Link) recvAlloc(n int) []byte {
	if n >= recvRecycleMin {
		for i := range l.recvFree.slots {
			s := &l.recvFree.slots[i]
			if s.Load() == nil {
				continue
			}
			if p := s.Swap(nil); p != nil {
				l.recvFree.bytes.Add(-int64(cap(*p)))
				if cap(*p) >= n {
					return (*p)[:n]
				}
			}
		}
	}
	return make([]byte, n)
}

// dropRecycled lets the kept buffers go (the connection ended).
func (l *Link) dropRecycled() {
	for i := range l.recvFree.slots {
		l.recvFree.slots[i].Store(nil)
	}
	l.recvFree.bytes.Store(0)
}
