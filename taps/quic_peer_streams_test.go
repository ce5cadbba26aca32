package taps

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// quicInitiated is a gotaps QUIC connection initiated to a gotaps
// Listener, and the Listener's connection for it (both with a
// length-prefix framer): the initiator's first message announced the
// stream.
func quicInitiated(t *testing.T, sys *System) (c, s *Connection) {
	t.Helper()
	_, c, s = quicInitiatedTo(t, sys)
	return c, s
}

// quicInitiatedTo is quicInitiated with the Listener.
func quicInitiatedTo(t *testing.T, sys *System) (ln *Listener, c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln = quicListen(t, ctx, sys, pki, quicOnly(t))
	c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(c.AbortGroup)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err = ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(s.AbortGroup)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	return ln, c, s
}

// cloneSend clones from (a new stream of its session) and sends text on
// the clone.
func cloneSend(t *testing.T, ctx context.Context, from *Connection, text string) *Connection {
	t.Helper()
	cl, err := from.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, cl.Send(ctx, []byte(text), nil))
	return cl
}

// awaitReceived returns the next connection the handler got.
func awaitReceived(t *testing.T, ch <-chan *Connection) *Connection {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-testCtx(t).Done():
		t.Fatal("the peer's stream never reached OnConnectionReceived")
		return nil
	}
}

// awaitDone waits for c's end, bounded: not a hang.
func awaitDone(t *testing.T, c *Connection, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}

// TestQUICInitiatorReceivesThePeersClone: a Clone made on the accepting
// side is a stream the initiator takes in through its group's
// OnConnectionReceived handler: an Established member of the initiator's
// group, messages flow both ways, and CloseGroup on the initiator closes
// it too.
func TestQUICInitiatorReceivesThePeersClone(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s := quicInitiated(t, sys)
	// entangled: a connection property set on the group before the
	// peer's stream came applies to it
	require.NoError(t, c.SetProperty(ConnScheduler, FCFS))
	got := make(chan *Connection, 4)
	c.OnConnectionReceived(func(group, received *Connection) {
		require.Same(t, c, group)
		got <- received
	})

	sc := cloneSend(t, ctx, s, "from the peer's clone")
	r := awaitReceived(t, got)
	require.Equal(t, StateEstablished, r.State(), "no Ready: Established at once")
	p := r.GetProperties()
	require.Equal(t, "quic", p.Stack)
	require.True(t, p.CanSend)
	require.True(t, p.CanReceive)
	m, err := r.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "from the peer's clone", string(m.Data), "a framer of its own (length prefix)")
	require.NoError(t, r.Send(ctx, []byte("reply"), nil))
	m, err = sc.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "reply", string(m.Data))
	roundTripPair(t, c, s, "the first stream carries on")

	mine, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{c, r}, mine, "the received connection joined the initiator's group")
	theirs, err := s.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{s, sc}, theirs)

	v, _ := r.GetProperties().Get(ConnScheduler)
	require.Equal(t, FCFS, v, "the group's entangled connScheduler")

	// CloseGroup on the initiator closes the received one too; the peer
	// answers each end of stream with its own
	c.CloseGroup()
	for _, x := range []*Connection{s, sc} {
		_, err := x.Receive(ctx)
		require.ErrorIs(t, err, ErrClosed, "the initiator's end of stream")
		require.NoError(t, x.Close())
	}
	for _, x := range []*Connection{c, r, s, sc} {
		awaitDone(t, x, "a member")
	}
	require.NoError(t, c.Err())
	require.NoError(t, r.Err())
}

// roundTripPair sends text from a to b and back.
func roundTripPair(t *testing.T, a, b *Connection, text string) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, a.Send(ctx, []byte(text), nil))
	m, err := b.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, text, string(m.Data))
	require.NoError(t, b.Send(ctx, []byte(text), nil))
	m, err = a.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, text, string(m.Data))
}

// TestQUICInitiatorReceivesAPeersUnidirectionalStream: a unidirectional
// stream the peer opens on a session a Bidirectional connection initiated
// is a received connection that only receives.
func TestQUICInitiatorReceivesAPeersUnidirectionalStream(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	// the peer: the QUIC stack itself, to open a unidirectional stream
	ln, err := stacks.QUIC().Listen(ctx, stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0"),
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}, NextProtos: []string{"gotaps-test"}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	port := ln.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(quicOnly(t)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(c.AbortGroup)
	got := make(chan *Connection, 1)
	c.OnConnectionReceived(func(_, received *Connection) { got <- received })
	require.NoError(t, c.Send(ctx, []byte("hi"), nil))
	first, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Abort() })

	uni, err := first.(stacks.UniStreams).OpenSendStream(ctx)
	require.NoError(t, err)
	msg := binary.BigEndian.AppendUint32(nil, 3)
	_, err = uni.Write(append(msg, "one"...))
	require.NoError(t, err)
	r := awaitReceived(t, got)
	requireReceiveOnly(t, r)
	mine, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{c, r}, mine)
	m, err := r.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "one", string(m.Data))
	require.NoError(t, uni.Close()) // FIN: the end of the peer's stream
	_, err = r.Receive(ctx)
	require.ErrorIs(t, err, ErrClosed)
	awaitDone(t, r, "the receive-only connection")
	require.NoError(t, r.Err())
}

// TestQUICInitiatorRefusesPeerStreamsWithoutAHandler: with no
// OnConnectionReceived handler (or after it was removed), the initiator
// refuses the peer's streams at once: the peer's Clone ends with a
// ConnectionError instead of sending into a stream nobody reads, and the
// session carries on.
func TestQUICInitiatorRefusesPeerStreamsWithoutAHandler(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s := quicInitiated(t, sys)
	requireCloneRefused(t, s, "nobody takes this")
	roundTripPair(t, c, s, "the session carries on")
	mine, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.Equal(t, []*Connection{c}, mine)

	// set, then removed: refused again
	c.OnConnectionReceived(func(_, r *Connection) { r.Abort() })
	c.OnConnectionReceived(nil)
	requireCloneRefused(t, s, "nobody takes this either")
	roundTripPair(t, c, s, "still")
}

// requireCloneRefused clones from (a QUIC connection) and sends what on
// the clone, whose stream the peer must refuse: the clone's Receive fails
// at once, not when its ctx ends, and the clone ends with a
// ConnectionError unwrapping to stacks.ErrStreamRefused.
func requireCloneRefused(t *testing.T, from *Connection, what string) {
	t.Helper()
	ctx := testCtx(t)
	sc, err := from.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, sc.Send(ctx, []byte(what), nil))
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = sc.Receive(bounded)
	require.Error(t, err, what)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "%s: refused, not left hanging", what)
	awaitDone(t, sc, what)
	var ce *ConnectionError
	require.ErrorAs(t, sc.Err(), &ce, what)
	require.ErrorIs(t, sc.Err(), stacks.ErrStreamRefused, what)
}

// TestQUICInitiatorReceivedHandlerPanicIsContained: a panic in the
// handler ends only the received connection (a ConnectionError wrapping
// the *PanicError); the group, and the next received connection, go on.
func TestQUICInitiatorReceivedHandlerPanicIsContained(t *testing.T) {
	reported := make(chan *PanicError, 1)
	sys := newTestSystem(t, WithHandlerPanic(func(pe *PanicError) { reported <- pe }))
	ctx := testCtx(t)
	c, s := quicInitiated(t, sys)
	got := make(chan *Connection, 2)
	n := 0
	c.OnConnectionReceived(func(_, r *Connection) {
		got <- r
		if n++; n == 1 {
			panic("handler bug")
		}
	})
	bad := cloneSend(t, ctx, s, "first")
	r := awaitReceived(t, got)
	awaitDone(t, r, "the connection whose handler panicked")
	var pe *PanicError
	require.ErrorAs(t, r.Err(), &pe)
	require.Equal(t, "handler bug", pe.Value)
	select {
	case rp := <-reported:
		require.Same(t, pe, rp, "the panic is reported to WithHandlerPanic too")
		require.Equal(t, r.ID(), rp.ConnectionID)
	case <-ctx.Done():
		t.Fatal("the handler's panic was not reported")
	}
	awaitDone(t, bad, "the peer's side of the aborted stream")
	require.Error(t, bad.Err())

	cloneSend(t, ctx, s, "second")
	r2 := awaitReceived(t, got)
	m, err := r2.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "second", string(m.Data))
	roundTripPair(t, c, s, "the group carries on")
}

// TestQUICGroupHandlerTakesPeerStreamsOnTheAcceptingSide: on the side
// that accepted the session, a group handler takes the peer's new streams
// instead of the Listener; removed, they go to the Listener again.
func TestQUICGroupHandlerTakesPeerStreamsOnTheAcceptingSide(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln, c, s := quicInitiatedTo(t, sys)
	got := make(chan *Connection, 1)
	s.OnConnectionReceived(func(_, r *Connection) { got <- r })
	cloneSend(t, ctx, c, "to the handler")
	r := awaitReceived(t, got)
	m, err := r.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "to the handler", string(m.Data))
	theirs, err := s.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{s, r}, theirs)

	s.OnConnectionReceived(nil)
	cloneSend(t, ctx, c, "to the listener")
	a, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err = a.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "to the listener", string(m.Data))
	require.Empty(t, got)
}
