package actors

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The send waiters are found whatever order sends are registered and
// reported in; each is taken once, and takeAll returns the rest in
// registration order.
func TestSendWaitList(t *testing.T) {
	var w sendWaitList
	got := map[uint64]int{}
	fn := func(id uint64) func(error) { return func(error) { got[id]++ } }

	// in order (the common case), reported in order
	for id := uint64(1); id <= 100; id++ {
		w.add(id, fn(id))
	}
	for id := uint64(1); id <= 100; id++ {
		f := w.take(id)
		require.NotNil(t, f, "id %d", id)
		f(nil)
	}
	require.Nil(t, w.take(5), "taken once")
	require.Zero(t, w.live)

	// in order, reported in a random order, with ids never registered
	for id := uint64(101); id <= 400; id++ {
		w.add(id, fn(id))
	}
	ids := rand.Perm(300)
	for _, i := range ids {
		require.Nil(t, w.take(uint64(1000+i)), "never registered")
		f := w.take(uint64(101 + i))
		require.NotNil(t, f, "id %d", 101+i)
		f(nil)
	}
	require.Zero(t, w.live)

	// registered out of order (concurrent Sends), interleaved with reports
	capBefore := cap(w.q)
	next := uint64(500)
	var want []uint64
	for round := 0; round < 2000; round++ {
		a, b := next, next+1
		next += 2
		w.add(b, fn(b))
		w.add(a, fn(a))
		want = append(want, b, a)
		for len(want) > 6 { // reported in registration order
			id := want[0]
			want = want[1:]
			f := w.take(id)
			require.NotNil(t, f, "id %d", id)
			f(nil)
		}
	}
	require.LessOrEqual(t, cap(w.q), max(capBefore, 64), "array bounded by what waits, not by what passed")
	fns := w.takeAll()
	require.Len(t, fns, len(want))
	for _, f := range fns {
		f(nil)
	}
	for _, id := range want {
		require.Equal(t, 1, got[id], "id %d", id)
	}
	for id := uint64(1); id < next; id++ {
		if id <= 400 || id >= 500 {
			require.Equal(t, 1, got[id], "id %d called once", id)
		}
	}
	require.Nil(t, w.take(want[0]))
}
