package actors

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A burst of handed-back buffers is kept (up to recvFreeSlots, within a
// quarter of the receive buffer limit beyond the first two) and serves the
// next large messages; larger ones beyond the budget are left to the GC.
func TestRecycleRecvKeepsABurstWithinBudget(t *testing.T) {
	l := NewLink(1, 4<<20, 4<<20, false)
	var bufs [][]byte
	for range recvFreeSlots + 2 {
		bufs = append(bufs, make([]byte, 64<<10))
	}
	for _, b := range bufs {
		l.RecycleRecv(b)
	}
	kept := map[*byte]bool{}
	for _, b := range bufs[:recvFreeSlots] {
		kept[&b[0]] = true
	}
	for i := range recvFreeSlots {
		b := l.recvAlloc(64 << 10)
		require.True(t, kept[&b[0]], "allocation %d reuses a handed-back buffer", i)
		delete(kept, &b[0])
	}
	b := l.recvAlloc(64 << 10)
	require.False(t, &b[0] == &bufs[recvFreeSlots][0] || &b[0] == &bufs[recvFreeSlots+1][0], "beyond the slots, buffers are not kept")
	require.Zero(t, l.recvFree.bytes.Load())

	// 1 MiB buffers: two are kept, a third would pass the budget (1 MiB)
	big := [][]byte{make([]byte, 1<<20), make([]byte, 1<<20), make([]byte, 1<<20)}
	for _, b := range big {
		l.RecycleRecv(b)
	}
	require.Equal(t, int64(2<<20), l.recvFree.bytes.Load())
	require.Same(t, &big[0][0], &l.recvAlloc(1 << 20)[0])
	require.Same(t, &big[1][0], &l.recvAlloc(1 << 20)[0])
	require.NotSame(t, &big[2][0], &l.recvAlloc(1 << 20)[0])
}
