package taps

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Reest hunt: a QUIC group whose server is gone for good. The members
// re-establish through one leader (rejoin.go); when the leader's attempts
// are exhausted the waiters end with it (a member that asks later leads
// a row of its own). None may stay Establishing: each ends with one
// ConnectionError, after Reestablishing events only since its last
// Reestablished (lossRow), and no Closed.
func TestReestHuntQUICGroupGivesUpTogether(t *testing.T) {
	ctx := testCtx(t)
	members, evs, gone := quicGroupOfThree(t, newTestSystem(t),
		ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 2})
	gone()
	for i, m := range members {
		requireMemberFailed(ctx, t, i, m)
		got := evs[i].all()
		require.NotEmpty(t, got)
		require.Equal(t, "reestablishing", got[0], "member %d: %v", i, got)
		require.NotContains(t, got, "closed", "member %d", i)
		row := lossRow(got)
		require.NotEmpty(t, row, "member %d: %v", i, got)
		require.Equal(t, "connectionError", row[len(row)-1], "member %d: %v", i, got)
		for _, e := range row[:len(row)-1] {
			require.Equal(t, "reestablishing", e, "member %d: %v", i, got)
		}
	}
}

// A QUIC group whose server is gone for good gives up together once the
// member that dials its new session has spent its policy's MaxAttempts:
// the others, waiting for that session, end with it (WithReestablishment:
// MaxAttempts consecutive failed attempts end the connection; the group's
// are made by the one member). They took the lead in turn, each making
// MaxAttempts attempts more: a group of N made up to N x MaxAttempts
// attempts, and its last member ended N times later.
func TestReestH22QUICGroupSpendsOneRowOfAttempts(t *testing.T) {
	var lost atomic.Bool
	var dials atomic.Int32
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if lost.Load() && r.Kind == "candidate" && r.Event == "AttemptStarted" {
			dials.Add(1)
		}
	}))
	ctx := testCtx(t)
	const maxAttempts = 3
	// waits long enough that every member has found its stream lost and
	// asked the group before the dialing member gives up
	members, evs, gone := quicGroupOfThree(t, sys,
		ReestablishPolicy{Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond, MaxAttempts: maxAttempts})
	lost.Store(true)
	gone()
	reest := 0
	for i, m := range members {
		requireMemberFailed(ctx, t, i, m)
		got := evs[i].all()
		require.Equal(t, "connectionError", got[len(got)-1], "member %d: %v", i, got)
		reest += len(lossRow(got)) - 1
	}
	// one member's row (maxAttempts Reestablishing) and one Reestablishing
	// for each of the others, which waited for its session (counted from
	// the session's loss: lossRow)
	require.Equal(t, maxAttempts+len(members)-1, reest, "Reestablishing events")
	require.EqualValues(t, maxAttempts, dials.Load(), "dial attempts after the loss")
}

// lossRow returns a member's events from the loss of the group's session
// on: those after its last Reestablished. The server's abort (gone) resets
// the members' streams one by one and ends the session with the last
// (stacks: an Abort of the last stream closes the QUIC connection); a
// member whose reset came first and whose backoff ended before the
// session did reopens its stream on that session, still up under the
// others (rejoin.go: a member that lost its stream alone), and is
// Reestablished before it loses the stream again with the session.
func lossRow(evs []string) []string {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i] == "reestablished" {
			return evs[i+1:]
		}
	}
	return evs
}

// quicGroupOfThree is a QUIC Connection to an echo Listener of sys, with
// the re-establishment policy pol, and two Clones, each watched
// (watchReest) after a round trip. gone stops the Listener and aborts the
// server's group: the server and its session are gone, its port closed.
func quicGroupOfThree(t *testing.T, sys *System, pol ReestablishPolicy) (members []*Connection, evs []*reestEvents, gone func()) {
	t.Helper()
	pki := newTestPKI(t)
	ctx := testCtx(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	ln, accepted := quicEchoServer(t, sys, pki, tp)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())),
		// the attempts to the closed port fail on its ICMP error at once; a
		// bound this short as 100 ms failed Initiate itself under -race load
		WithEstablishmentTimeout(2*time.Second),
		WithReestablishment(pol))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	members = []*Connection{c}
	for range 2 {
		clone, err := c.Clone(ctx)
		require.NoError(t, err)
		members = append(members, clone)
	}
	for i, m := range members {
		evs = append(evs, watchReest(m))
		roundTrip(t, m, "before "+string(rune('a'+i)))
	}
	first := <-accepted
	for range len(members) - 1 {
		<-accepted
	}
	return members, evs, func() {
		ln.Stop()
		<-ln.Done()
		first.AbortGroup()
	}
}

// A QUIC group whose server is gone for good, with one attempt: the member
// that asks first dials it and gives up at once (the closed port's ICMP
// error); the others lost their streams with the same session and end
// with it even when their backoff was due only after it gave up, instead
// of each dialing a row of its own (rejoin.go: noteLost).
func TestReestQUICGroupMembersLostTogetherEndTogether(t *testing.T) {
	var lost atomic.Bool
	var dials atomic.Int32
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if lost.Load() && r.Kind == "candidate" && r.Event == "AttemptStarted" {
			dials.Add(1)
		}
	}))
	ctx := testCtx(t)
	members, evs, gone := quicGroupOfThree(t, sys,
		ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 1})
	lost.Store(true)
	gone()
	for i, m := range members {
		requireMemberFailed(ctx, t, i, m)
		// (a member whose stream the server's abort reset before the
		// others' may reopen it on their session, still up: Reestablished)
		got := evs[i].all()
		require.Equal(t, "connectionError", got[len(got)-1], "member %d: %v", i, got)
	}
	require.EqualValues(t, 1, dials.Load(), "dial attempts after the loss: the group's one")
}

// requireMemberFailed waits for group member i to end (at most ctx) and
// requires its end to be a ConnectionError.
func requireMemberFailed(ctx context.Context, t *testing.T, i int, m *Connection) {
	t.Helper()
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatalf("member %d stuck in %v", i, m.State())
	}
	var ce *ConnectionError
	require.ErrorAs(t, m.Err(), &ce, "member %d", i)
}
