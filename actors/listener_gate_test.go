package actors

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// parkedCount reads how many accepted transports wait for a place.
func (g *acceptGate) parkedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.parked
}

// awaitParked waits until the claims started are parked at g (or done):
// under synctest, a claim parked in sync.Cond.Wait is durably blocked, so
// synctest.Wait returns once it is; then n must be parked.
func awaitParked(t *testing.T, g *acceptGate, n int) {
	t.Helper()
	synctest.Wait()
	require.Equal(t, n, g.parkedCount(), "parked")
}

// A transport accepted on one socket while another filled the backlog is
// not counted held: it waits (parked) for the next place, which it gets
// before a goroutine that has not accepted yet; the gate's close ends the
// wait with false.
func TestAcceptGateClaimParks(t *testing.T) {
	synctest.Test(t, testAcceptGateClaimParks)
}

func testAcceptGateClaimParks(t *testing.T) {
	g := newAcceptGate()
	g.backlog = 2
	require.True(t, g.wait())
	require.True(t, g.wait()) // two goroutines passed the gate
	require.True(t, g.claim())
	require.True(t, g.claim())
	// a third accepted meanwhile: no place
	claimed := make(chan bool, 1)
	go func() { claimed <- g.claim() }()
	awaitParked(t, g, 1)
	held, open := g.state()
	require.Equal(t, 2, held, "a parked transport must not count held")
	require.False(t, open)

	// one taken: the place is the parked transport's, the gate stays shut
	g.release()
	require.True(t, <-claimed)
	held, open = g.state()
	require.Equal(t, 2, held)
	require.False(t, open)

	// the limit at 0 does not keep a parked transport from its place
	g.allow(false)
	go func() { claimed <- g.claim() }()
	awaitParked(t, g, 1)
	g.release()
	require.True(t, <-claimed)
	g.allow(true)

	// the gate's close ends the wait: the caller aborts the transport
	go func() { claimed <- g.claim() }()
	awaitParked(t, g, 1)
	g.close()
	require.False(t, <-claimed)
	require.Zero(t, g.parkedCount())
	require.False(t, g.claim(), "claim after close")
}

// A gate without a bound (a rendezvous's) never parks.
func TestAcceptGateClaimUnbounded(t *testing.T) {
	g := newAcceptGate()
	for range 5 {
		require.True(t, g.claim())
	}
	held, open := g.state()
	require.Equal(t, 5, held)
	require.True(t, open)
}
