package taps

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestQUICGroupReestablishesAsOneSession: a group of three connections on
// one QUIC session (Initiate and two Clones) with a re-establishment
// policy; the server aborts the session. Every member is re-established,
// and all three on one new session (rejoin.go): the server receives three
// new streams from one client address and port, in one group, and each
// member echoes on its own stream. Re-established one by one, the members
// would dial three sessions, three groups of one at the server.
func TestQUICGroupReestablishesAsOneSession(t *testing.T) {
	ctx := testCtx(t)
	accepted, c := quicReestablishing(t)
	members := []*Connection{c}
	for range 2 {
		clone, err := c.Clone(ctx)
		require.NoError(t, err)
		members = append(members, clone)
	}
	t.Cleanup(func() {
		c.AbortGroup()
		for _, m := range members {
			<-m.Done()
		}
	})
	reestablished := make(chan *Connection, 8)
	for i, m := range members {
		m.OnReestablished(func(got *Connection, _ int) { reestablished <- got })
		roundTrip(t, m, "before "+string(rune('a'+i)))
	}
	var old []*Connection
	for range members {
		old = append(old, <-accepted)
	}
	sessionOf := func(s *Connection) netip.AddrPort { return epAddr(t, ctx, s, false) }
	oldSession := sessionOf(old[0])
	require.Equal(t, oldSession, sessionOf(old[2]), "the clones are streams of the first session")

	old[0].AbortGroup() // the server ends the session
	got := map[*Connection]bool{}
	for len(got) < len(members) {
		select {
		case m := <-reestablished:
			got[m] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d members re-established", len(got), len(members))
		}
	}
	for i, m := range members {
		roundTrip(t, m, "after "+string(rune('a'+i)))
	}
	var fresh []*Connection
	for range members {
		select {
		case s := <-accepted:
			fresh = append(fresh, s)
		case <-ctx.Done():
			t.Fatal("the server did not receive the new streams")
		}
	}
	session := sessionOf(fresh[0])
	require.NotEqual(t, oldSession, session, "a new session")
	for _, s := range fresh[1:] {
		require.Equal(t, session, sessionOf(s), "every member on the one new session")
	}
	group, err := fresh[0].GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, fresh, group, "one group at the server")
	select {
	case s := <-accepted:
		t.Fatalf("a connection more at the server (from %s)", sessionOf(s))
	case <-time.After(50 * time.Millisecond):
	}
}

// TestQUICMemberWhoseStreamIsResetRejoinsTheLiveSession: in a QUIC group
// with a re-establishment policy, the peer resets one member's stream
// while the session lives on. That member is re-established on a new
// stream of the live session, as a Clone is made (WithReestablishment:
// the peer sees one session and one group), and the other member is left
// alone: it dialed a session of its own, which the server received as a
// group of one.
func TestQUICMemberWhoseStreamIsResetRejoinsTheLiveSession(t *testing.T) {
	ctx := testCtx(t)
	accepted, c := quicReestablishing(t)
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		c.AbortGroup()
		<-c.Done()
		<-clone.Done()
	})
	evs := watchReest(c)
	reestablished := make(chan struct{}, 1)
	clone.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })
	roundTrip(t, c, "before a")
	first := <-accepted
	roundTrip(t, clone, "before b")
	second := <-accepted
	sessionOf := func(s *Connection) netip.AddrPort { return epAddr(t, ctx, s, false) }
	session := sessionOf(first)
	require.Equal(t, session, sessionOf(second))

	second.Abort() // the server resets the clone's stream alone
	select {
	case <-reestablished:
	case <-ctx.Done():
		t.Fatal("the clone was not re-established")
	}
	roundTrip(t, clone, "after b")
	var fresh *Connection
	select {
	case fresh = <-accepted:
	case <-ctx.Done():
		t.Fatal("the server did not receive the clone's new stream")
	}
	require.Equal(t, session, sessionOf(fresh), "the clone's new stream is on the live session")
	group, err := first.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{first, fresh}, group, "one group at the server")
	roundTrip(t, c, "after a")
	require.Empty(t, evs.all(), "the first member kept its stream")
}

// quicReestablishing is a QUIC Connection (length-prefix framed, to
// localhost) under a re-establishment policy that retries every 20 ms,
// Ready with an echo Listener of its test System, whose received
// Connections come on accepted.
func quicReestablishing(t *testing.T) (<-chan *Connection, *Connection) {
	t.Helper()
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	ln, accepted := quicEchoServer(t, sys, pki, tp)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(ap.Port())),
		WithResolver(loopbackOnly),
		WithReestablishment(ReestablishPolicy{Initial: 20 * time.Millisecond, MaxAttempts: 10}))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	return accepted, c
}
