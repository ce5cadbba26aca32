package taps

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestQUICDatagramsHandedToACloneWhenTheFirstStreamCloses: QUIC datagrams
// belong to the session, not to a stream. When the first stream (the one
// that read them) closes while a Clone of its group lives, the clone
// receives the peer's datagrams; on the peer's side, once its first stream
// closed too, the connection of the clone's stream receives and sends
// them. Before, only the first stream read them (and only it sent them):
// the clone never received the datagram.
func TestQUICDatagramsHandedToACloneWhenTheFirstStreamCloses(t *testing.T) {
	dt := &datagramTrace{}
	sys := newTestSystem(t, dt.option())
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	require.NoError(t, tp.Require(PerMsgReliability))
	ctx := testCtx(t)
	ln := quicListen(t, ctx, sys, pki, tp)
	accept := streamAccepter(t, ctx, ln)
	// the first stream's Close does not wait for the peer's end of
	// stream: the server's first stream stays open
	ap := listenerAddr(t, ln)
	cli := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(ap.Port())),
		WithResolver(loopbackOnly), WithLingerTimeout(time.Millisecond))
	cli.AddFramer(framers.NewLengthPrefix())
	c, err := cli.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	s := accept(c, "first")
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { clone.Abort(); <-clone.Done() })
	s2 := accept(clone, "clone")
	unreliable := func() *MessageContext { return NewMessageContext().Reliable(false).Ordered(false) }
	exchange := func(from, to *Connection, text string) {
		t.Helper()
		require.NoError(t, from.Send(ctx, []byte(text), unreliable()))
		m, err := to.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, text, string(m.Data))
	}

	// the client's first stream closes; the server's first stream sends
	require.NoError(t, c.Close())
	<-c.Done()
	exchange(s, clone, "to the client's clone")
	sent, received := dt.counts()
	require.Equal(t, 1, sent, "sent as a QUIC datagram")
	require.Equal(t, 1, received, "received as a QUIC datagram")

	// the server's first stream closes too: the clone's streams exchange
	// datagrams
	require.NoError(t, s.Close())
	<-s.Done()
	exchange(clone, s2, "to the server's clone")
	exchange(s2, clone, "from the server's clone")
	sent, received = dt.counts()
	require.Equal(t, 3, sent, "sent as QUIC datagrams")
	require.Equal(t, 3, received, "received as QUIC datagrams")
}

// quicDatagramGroup is a client group of two members (the first stream c
// and its clone) on a QUIC session with datagrams, and the server's
// connections s (c's) and s2 (the clone's), both Listener-accepted.
func quicDatagramGroup(t *testing.T) (c, clone, s, s2 *Connection) {
	t.Helper()
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	require.NoError(t, tp.Require(PerMsgReliability))
	ctx := testCtx(t)
	ln := quicListen(t, ctx, sys, pki, tp)
	accept := streamAccepter(t, ctx, ln)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx) // the default linger: 5 s
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	s = accept(c, "first")
	clone, err = c.Clone(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { clone.Abort(); <-clone.Done() })
	s2 = accept(clone, "clone")
	return c, clone, s, s2
}

// requireDatagramReaches sends datagrams from from until one reaches to
// (a datagram may be lost), within 2 s.
func requireDatagramReaches(t *testing.T, from, to *Connection, text string) {
	t.Helper()
	ctx := testCtx(t)
	got := make(chan string, 1)
	go func() {
		if m, err := to.Receive(ctx); err == nil {
			got <- string(m.Data)
		}
	}()
	bound := time.After(2 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		require.NoError(t, from.Send(ctx, []byte(text), NewMessageContext().Reliable(false).Ordered(false)))
		select {
		case m := <-got:
			require.Equal(t, text, m)
			return
		case <-tick.C:
		case <-bound:
			t.Fatalf("no datagram reached connection %d", to.ID())
		}
	}
}

// TestQUICDatagramsGoToACloneWhileTheFirstStreamClosing: a member whose
// Close waits for the peer's end of stream (the linger, up to 5 s, while
// the peer keeps its stream open) discards what arrives; the session's
// datagrams go to the group's members that still receive from the Close
// on. Before, the closing member kept its turn to read them until its
// transport closed, and discarded them all: the live clone received none
// for as long as the close lingered.
func TestQUICDatagramsGoToACloneWhileTheFirstStreamClosing(t *testing.T) {
	c, clone, s, _ := quicDatagramGroup(t)
	// the first stream closes; the server's stays open, so the close
	// lingers for its end of stream
	require.NoError(t, c.Close())
	requireDatagramReaches(t, s, clone, "to the clone")
	require.Equal(t, StateClosing, c.State(), "the first stream still lingers")
}

// TestQUICDatagramsGoToACloneOnceTheFirstStreamIsHalfClosed: once the
// peer's end of stream reached a member (half-closed: its Receive fails
// from then on), the session's datagrams go to the group's members that
// still receive. Before, the half-closed member kept its turn to read
// them, and they were lost behind its end of stream: the live clone
// received none for as long as the first member stayed half-closed.
func TestQUICDatagramsGoToACloneOnceTheFirstStreamIsHalfClosed(t *testing.T) {
	c, clone, s, s2 := quicDatagramGroup(t)
	ctx := testCtx(t)
	require.NoError(t, s.Close()) // the server's first stream ends: c is half-closed
	_, err := c.Receive(ctx)
	require.ErrorIs(t, err, ErrClosed, "the peer's end of stream")
	requireDatagramReaches(t, s2, clone, "to the clone")
	require.Equal(t, StateEstablished, c.State(), "c is half-closed, still Established")
}

// streamAccepter returns accept: c sends text, which makes its stream
// known to ln's side (QUIC: the peer sees a stream once data arrive), and
// accept returns the connection ln received for it, checked to read text
// first and aborted when t ends.
func streamAccepter(t *testing.T, ctx context.Context, ln *Listener) func(c *Connection, text string) *Connection {
	return func(c *Connection, text string) *Connection {
		t.Helper()
		require.NoError(t, c.Send(ctx, []byte(text), nil))
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { s.Abort(); <-s.Done() })
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, text, string(m.Data))
		return s
	}
}
