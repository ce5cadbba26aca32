package taps

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// pathReadings sets c's PathChange handler to one that passes on the
// reading it fires with (what OnPathChange leaves out).
func pathReadings(c *Connection) <-chan stacks.PathReading {
	ch := make(chan stacks.PathReading, 16)
	c.updateHandlers(func(h *actors.Handlers) {
		h.PathChange = func(r stacks.PathReading) { ch <- r }
	})
	return ch
}

// awaitReading waits for the next reading on ch, driving traffic with
// step (a round trip, a message) until it comes: the accepting side learns
// of the peer's migration at its session's next read or write after
// quic-go switched paths, so some traffic must follow the switch. step
// runs at most max times.
func awaitReading(t *testing.T, ctx context.Context, ch <-chan stacks.PathReading, what string, max int, step func(i int)) stacks.PathReading {
	t.Helper()
	for i := 0; i < max; i++ {
		select {
		case r := <-ch:
			return r
		default:
		}
		step(i)
	}
	return epAwait(t, ctx, ch, what)
}

// requireNoReading fails when ch holds a reading.
func requireNoReading(t *testing.T, ch <-chan stacks.PathReading, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: a second PathChange: %+v", what, r)
	default:
	}
}

// TestQUICAcceptingSideRaisesPathChangeOnPeerMigration: when the peer
// migrates the session (RemoveLocal of the local address in use, a move
// from 127.0.0.1 to 127.0.0.2), every connection of the accepting side on
// that session (the first stream's and a clone's) raises PathChange once,
// with the peer's new address in its reading, without anyone reading
// their properties first; data keeps flowing both ways, and
// GetProperties and Endpoints show the new address (and raise nothing
// more).
func TestQUICAcceptingSideRaisesPathChangeOnPeerMigration(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, accepted := quicEchoServer(t, sys, pki, quicOnly(t))
	c := quicFrom(t, sys, ln, pki)
	clientMoved := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { clientMoved <- struct{}{} })
	roundTrip(t, c, "before")
	first := <-accepted
	firstMoved := pathReadings(first)
	cl, err := c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl, "clone before")
	second := <-accepted
	secondMoved := pathReadings(second)
	roundTrip(t, c, "handlers set") // the handlers are set (a round trip through the actors)
	roundTrip(t, cl, "handlers set")
	requireNoReading(t, firstMoved, "before the migration")
	requireNoReading(t, secondMoved, "before the migration")

	require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	epAwait(t, ctx, clientMoved, "the initiator's PathChange")
	now := epAddr(t, ctx, c, true)
	require.Equal(t, "127.0.0.2", now.Addr().String())

	// data flows both ways: the clone's stream alone carries it, the
	// first stream's connection learns of the move all the same (one
	// session)
	r := awaitReading(t, ctx, secondMoved, "the accepting side's PathChange (clone's stream)", 50, func(i int) {
		roundTrip(t, cl, fmt.Sprintf("clone after %d", i))
	})
	require.Equal(t, now, r.Remote, "the reading has the peer's new address")
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), r.Local, "the accepting side's address does not change")
	r = epAwait(t, ctx, firstMoved, "the accepting side's PathChange (first stream)")
	require.Equal(t, now, r.Remote)
	roundTrip(t, c, "after")
	roundTrip(t, cl, "clone after")

	require.Equal(t, now, epAddr(t, ctx, first, false), "GetProperties shows the peer's new address")
	require.Equal(t, now, epAddr(t, ctx, second, false))
	for _, s := range []*Connection{first, second} {
		remotes, _, err := s.Endpoints(ctx)
		require.NoError(t, err)
		require.Len(t, remotes, 1)
		require.Equal(t, now.String(), remotes[0].String(), "Endpoints' remote set follows the peer")
		require.Equal(t, StateEstablished, s.State())
	}
	roundTrip(t, c, "last")
	requireNoReading(t, firstMoved, "once per change")
	requireNoReading(t, secondMoved, "once per change")
}
