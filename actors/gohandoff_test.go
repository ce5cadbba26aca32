package actors

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A job offered while the goroutine runs is run at its end; once it has
// ended (or holds a job) the offer is refused and the caller runs it.
func TestGoHandoff(t *testing.T) {
	var h goHandoff
	ran := 0
	require.False(t, h.offer(func() { ran += 1000 }), "no goroutine opened it")
	h.open()
	require.True(t, h.offer(func() { ran++ }))
	require.False(t, h.offer(func() { ran += 10 }), "a second job")
	h.open() // a second goroutine: the job stays the first's
	h.run()
	require.Equal(t, 1, ran)
	require.False(t, h.offer(func() { ran += 100 }), "the goroutine has ended")
	h.run()
	require.Equal(t, 1, ran)
	h.open()
	h.run() // ends without a job
	require.False(t, h.offer(func() { ran += 100 }))
	require.Equal(t, 1, ran)
}

// A job handed over and not yet run is taken back (the connection runs it
// elsewhere before it waits for its goroutines); the goroutine then runs
// none.
func TestGoHandoffTake(t *testing.T) {
	var h goHandoff
	require.Nil(t, h.take())
	h.open()
	require.Nil(t, h.take(), "open, no job")
	ran := 0
	require.True(t, h.offer(func() { ran++ }))
	job := h.take()
	require.NotNil(t, job)
	h.run()
	require.Zero(t, ran, "the goroutine runs no job taken back")
	job()
	require.Equal(t, 1, ran)
	require.False(t, h.offer(func() {}), "closed once taken")
}
