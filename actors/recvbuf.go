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

// recvFree holds up to two handed-back buffers. Any goroutine may put; the
// first framer's actor takes.
type recvFree struct {
	slots [2]atomic.Pointer[[]byte]
}

// RecycleRecv hands back a buffer from RecvResult.Backing whose data the
// application no longer uses. Buffers below recvRecycleMin or above the
// receive buffer limit, and any beyond the two kept, are left to the
// garbage collector; so is everything once the connection has ended. Safe
// for concurrent use.
func (l *Link) RecycleRecv(b []byte) {
	if cap(b) < recvRecycleMin || cap(b) > max(l.recvLimit, DefaultRecvBufferLimit)+64 || l.State() == Closed {
		return
	}
	b = b[:cap(b)]
	for i := range l.recvFree.slots {
		if l.recvFree.slots[i].CompareAndSwap(nil, &b) {
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
			if p := s.Swap(nil); p != nil && cap(*p) >= n {
				return (*p)[:n]
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
}
