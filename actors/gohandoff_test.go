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
