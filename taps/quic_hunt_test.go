package taps

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// QUIC as a user sees it through the taps API: streams, groups, idle
// timeout and keep-alive, properties, clones on ended sessions.

// quicHuntPair is a QUIC connection (tp on both sides) to an echo
// listener, a first round trip done, and the listener's connection.
func quicHuntPair(t *testing.T, sys *System, tp *TransportProperties) (c, s *Connection, accepted <-chan *Connection) {
	t.Helper()
	pki := newTestPKI(t)
	ctx := testCtx(t)
	ln, acc := quicHuntEchoServer(t, ctx, sys, pki, tp)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.AbortGroup(); <-c.Done() })
	require.Equal(t, "quic", c.GetProperties().Stack)
	roundTrip(t, c, "first")
	select {
	case s = <-acc:
	case <-ctx.Done():
		t.Fatal("the listener never received the connection")
	}
	return c, s, acc
}

// quicHuntEchoServer is a QUIC Listener whose connections echo each
// message and close when the peer's stream ends (as an application that
// answers the end of stream with its own), each sent on accepted.
func quicHuntEchoServer(t *testing.T, ctx context.Context, sys *System, pki *testPKI, tp *TransportProperties, onMessage ...func(*Message)) (*Listener, <-chan *Connection) {
	t.Helper()
	ln := quicListen(t, ctx, sys, pki, tp)
	accepted := make(chan *Connection, 16)
	ln.OnConnectionReceived(func(_ *Listener, s *Connection) {
		select {
		case accepted <- s:
		case <-ctx.Done(): // the test ended with the buffer full
			s.Abort()
			return
		}
		go func() {
			for {
				m, err := s.Receive(ctx)
				if err != nil {
					_ = s.Close()
					return
				}
				for _, fn := range onMessage {
					fn(m)
				}
				if s.Send(ctx, m.Data, nil) != nil {
					return
				}
			}
		}()
	})
	return ln, accepted
}

// TestQUICHuntCloseGroupClosesEveryMemberGracefully: CloseGroup on the
// initiating side closes the original and its clones gracefully
// (Closed, no ConnectionError), and each of the peer's members sees the
// end of its stream.
func TestQUICHuntCloseGroupClosesEveryMemberGracefully(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s, acc := quicHuntPair(t, sys, quicOnly(t))
	cl1, err := c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl1, "clone 1")
	cl2, err := c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl2, "clone 2")
	peers := []*Connection{s, <-acc, <-acc}
	closed := make(chan *Connection, 3)
	for _, m := range []*Connection{c, cl1, cl2} {
		m.OnClosed(func(x *Connection) { closed <- x })
	}
	c.CloseGroup()
	for _, m := range []*Connection{c, cl1, cl2} {
		awaitDone(t, m, "a member after CloseGroup")
		require.NoError(t, m.Err(), "CloseGroup is graceful")
		require.Equal(t, StateClosed, m.State())
	}
	require.Len(t, closed, 3, "each member reports Closed")
	for _, p := range peers {
		awaitDone(t, p, "the peer's member")
	}
}

// TestQUICHuntKeepAliveOutlivesTheIdleTimeout: with keepAliveTimeout
// shorter than connTimeout, an idle QUIC connection stays up well past
// connTimeout (PINGs); without keep-alives the same idle connection
// ends once connTimeout passes, with a ConnectionError.
func TestQUICHuntKeepAliveOutlivesTheIdleTimeout(t *testing.T) {
	sys := newTestSystem(t)
	const idle = 600 * time.Millisecond
	ka := quicOnly(t)
	require.NoError(t, ka.Set(ConnTimeout, idle))
	require.NoError(t, ka.Set(KeepAliveTimeout, 150*time.Millisecond))
	require.NoError(t, ka.Require(KeepAlive))
	c, _, _ := quicHuntPair(t, sys, ka)
	v, _ := c.GetProperties().Get(ConnTimeout)
	require.Equal(t, idle, v)
	v, _ = c.GetProperties().Get(KeepAliveTimeout)
	require.Equal(t, 150*time.Millisecond, v)
	select {
	case <-c.Done():
		t.Fatalf("the kept-alive connection ended: %v", c.Err())
	case <-time.After(4 * idle):
	}
	roundTrip(t, c, "still up")

	noKA := quicOnly(t)
	require.NoError(t, noKA.Set(ConnTimeout, idle))
	require.NoError(t, noKA.Avoid(KeepAlive))
	d, _, _ := quicHuntPair(t, sys, noKA)
	select {
	case <-d.Done():
	case <-time.After(10 * idle):
		t.Fatal("the idle connection outlived connTimeout")
	}
	var ce *ConnectionError
	require.ErrorAs(t, d.Err(), &ce, "an idle timeout is a ConnectionError")
}

// TestQUICHuntCloneOfAClosedConnectionFails: Clone on a connection that
// has closed fails at once (no stream on an ended session, no hang).
func TestQUICHuntCloneOfAClosedConnectionFails(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s, _ := quicHuntPair(t, sys, quicOnly(t))
	require.NoError(t, c.Close())
	awaitDone(t, c, "the closed connection")
	awaitDone(t, s, "the peer")
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := c.Clone(bounded)
	require.Error(t, err)
	require.Nil(t, cl)
	require.False(t, errors.Is(err, context.DeadlineExceeded), "Clone failed at once: %v", err)
}

// TestQUICHuntCloneAfterThePeerEndedTheSessionFails: once the peer ended
// the session (its AbortGroup), a Clone of a member fails rather than
// hanging or returning a connection on a dead session.
func TestQUICHuntCloneAfterThePeerEndedTheSessionFails(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s, _ := quicHuntPair(t, sys, quicOnly(t))
	s.AbortGroup()
	awaitDone(t, c, "the member of the session the peer aborted")
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := c.Clone(bounded)
	if err == nil {
		// a Clone may be a new session: then it must work
		t.Cleanup(func() { cl.Abort(); <-cl.Done() })
		roundTrip(t, cl, "new")
		return
	}
	require.False(t, errors.Is(err, context.DeadlineExceeded), "Clone failed at once: %v", err)
}

// TestQUICHuntClosingTheOriginalKeepsItsClones: Close of the stream
// Initiate opened leaves the session to its clones: they carry on.
func TestQUICHuntClosingTheOriginalKeepsItsClones(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, s, acc := quicHuntPair(t, sys, quicOnly(t))
	cl, err := c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl, "clone")
	<-acc
	require.NoError(t, c.Close())
	awaitDone(t, c, "the original")
	require.NoError(t, c.Err())
	awaitDone(t, s, "the peer's first member")
	for i := range 3 {
		roundTrip(t, cl, "after the original closed "+string(rune('a'+i)))
	}
	cl2, err := cl.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl2, "a clone of the clone")
}

// TestQUICHuntPropertiesOfAQUICConnection: GetProperties on QUIC reads
// back what QUIC is: multistreaming, reliable, ordered, secure.
func TestQUICHuntPropertiesOfAQUICConnection(t *testing.T) {
	sys := newTestSystem(t)
	c, s, _ := quicHuntPair(t, sys, quicOnly(t))
	for _, x := range []*Connection{c, s} {
		p := x.GetProperties()
		require.Equal(t, StateEstablished, p.State)
		require.True(t, p.CanSend)
		require.True(t, p.CanReceive)
		for _, prop := range []Property{Multistreaming, Reliability, PreserveOrder, CongestionControl} {
			v, ok := p.Get(prop)
			require.True(t, ok, "%s read back", prop)
			require.Equal(t, true, v, "%s on QUIC", prop)
		}
	}
}

// TestQUICHuntListenerStopKeepsItsConnections: Stop only stops
// accepting (RFC 9622 §7.2): the QUIC connections received before it
// carry on.
func TestQUICHuntListenerStopKeepsItsConnections(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ln, acc := quicHuntEchoServer(t, ctx, sys, pki, tp)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.AbortGroup(); <-c.Done() })
	roundTrip(t, c, "before")
	<-acc
	ln.Stop()
	select {
	case <-ln.Done():
	case <-ctx.Done():
		t.Fatal("the Listener did not stop")
	}
	for i := range 3 {
		roundTrip(t, c, "after Stop "+string(rune('a'+i)))
	}
}

// TestQUICHuntNewConnectionLimitHoldsSessions: with the Listener's limit
// spent, a second QUIC session is not delivered until the limit is
// raised; then it is, with its first message.
func TestQUICHuntNewConnectionLimitHoldsSessions(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ln := quicListen(t, ctx, sys, pki, tp)
	require.NoError(t, ln.SetNewConnectionLimit(1))
	pre := securePre(sys, ln, pki.clientSec(), tp)
	c1, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c1.AbortGroup(); <-c1.Done() })
	require.NoError(t, c1.Send(ctx, []byte("one"), nil))
	s1, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { s1.AbortGroup(); <-s1.Done() })
	c2, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c2.AbortGroup(); <-c2.Done() })
	require.NoError(t, c2.Send(ctx, []byte("two"), nil))
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = ln.Accept(short)
	cancel()
	require.Error(t, err, "the limit is spent")
	require.NoError(t, ln.SetNewConnectionLimit(1))
	s2, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { s2.AbortGroup(); <-s2.Done() })
	m, err := s2.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "two", string(m.Data))
	m, err = s1.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "one", string(m.Data))
}

// TestQUICHuntInitiateWithSendNotReplayable: InitiateWithSend of a
// message that is not safely replayable over QUIC: the message arrives,
// its Sent event reaches OnFirstMessageSent, and no early data was used.
func TestQUICHuntInitiateWithSendNotReplayable(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ln, acc := quicHuntEchoServer(t, ctx, sys, pki, tp)
	pre := securePre(sys, ln, pki.clientSec(), tp)
	sent := make(chan error, 1)
	pre.OnFirstMessageSent(func(_ *Connection, err error) { sent <- err })
	c, err := pre.InitiateWithSend(ctx, []byte("first"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.AbortGroup(); <-c.Done() })
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("no Sent for the first message")
	}
	<-acc
	require.False(t, c.GetProperties().Socket.Used0RTT)
}

// TestQUICHuntInitiateWithSendToNobody: InitiateWithSend to a port
// where no QUIC listener answers: an EstablishmentError only, the first
// message's handler is not called (RFC 9622 §9.2.5).
func TestQUICHuntInitiateWithSendToNobody(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ln := quicListen(t, ctx, sys, pki, tp)
	pre := securePre(sys, ln, pki.clientSec(), tp)
	ln.Stop()
	<-ln.Done()
	called := make(chan error, 1)
	pre.OnFirstMessageSent(func(_ *Connection, err error) { called <- err })
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := pre.InitiateWithSend(short, []byte("first"), NewMessageContext().SafelyReplayable(true))
	require.Error(t, err)
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	select {
	case err := <-called:
		t.Fatalf("the first message's handler was called: %v", err)
	default:
	}
}

// TestQUICHuntPartialReceiveWithoutFramer: without a framer a QUIC stream
// is a byte stream: Receive with a maximum length returns parts no
// longer than it, in order, the bytes all there.
func TestQUICHuntPartialReceiveWithoutFramer(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := srv.Listen(ctx)
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.AbortGroup(); <-c.Done() })
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i)
	}
	require.NoError(t, c.Send(ctx, data, nil))
	require.NoError(t, c.Close())
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { s.Abort(); <-s.Done() })
	var got []byte
	for {
		m, err := s.Receive(ctx, MaxLength(1000))
		if errors.Is(err, ErrClosed) {
			break
		}
		require.NoError(t, err)
		require.LessOrEqual(t, len(m.Data), 1000)
		got = append(got, m.Data...)
	}
	require.Equal(t, data, got)
}

// TestQUICHuntPerMsgReliabilityReadsBackWhetherDatagramsRun: perMsgReliability
// read back on a QUIC connection says whether unreliable messages can
// really go unreliably (RFC 9622 §8: what the connection provides): true
// when both ends enabled QUIC datagrams, false when this side did not
// ask for them or the peer did not enable them (msgReliable=false
// messages then go on the stream, reliably).
func TestQUICHuntPerMsgReliabilityReadsBackWhetherDatagramsRun(t *testing.T) {
	sys := newTestSystem(t)
	perMsg := func(c *Connection) any {
		v, ok := c.GetProperties().Get(PerMsgReliability)
		require.True(t, ok)
		return v
	}
	c, s := quicDatagramPair(t, sys, Require)
	require.Equal(t, true, perMsg(c), "both ends run datagrams")
	require.Equal(t, true, perMsg(s))

	c, s = quicDatagramPair(t, sys, NoPreference)
	require.Equal(t, false, perMsg(c), "the peer did not enable datagrams")
	require.Equal(t, false, perMsg(s), "this side did not enable datagrams")

	plain, _, _ := quicHuntPair(t, sys, quicOnly(t))
	require.Equal(t, false, perMsg(plain), "no side asked for datagrams")
}

// TestQUICHuntCloseDuringZeroRTTSendsWhatWasQueued: a message the server
// sends (SendAsync) while its session is still in 0-RTT (its handshake
// held back), not safely replayable, goes at once as 0.5-RTT data; a
// Close right after it is graceful (RFC 9622 §10): the message is sent
// (Sent, not a SendError) and reaches the peer before the end of stream.
// (The initiating side never meets this: its InitiateWithSend returns
// once the handshake has completed.)
func TestQUICHuntCloseDuringZeroRTTSendsWhatWasQueued(t *testing.T) {
	skip0RTTUnderRace(t)
	sys := newTestSystem(t)
	ctx := testCtx(t)
	h := newHeldZeroRTT(t, sys, "zero-rtt")
	sent := make(chan error, 1)
	h.s.SendAsync([]byte("after the handshake"), nil, func(_ *Connection, err error) { sent <- err })
	require.NoError(t, h.s.Close())
	c := h.release()
	select {
	case err := <-sent:
		require.NoError(t, err, "a message accepted before Close is sent")
	case <-ctx.Done():
		t.Fatal("no event for the held message")
	}
	roundTripAfter(t, c, "after the handshake")
	_, err := c.Receive(ctx)
	require.ErrorIs(t, err, ErrClosed, "the server's end of stream follows")
	require.NoError(t, c.Close())
	awaitDone(t, h.s, "the closed connection")
	require.NoError(t, h.s.Err())
}

// roundTripAfter receives want on c (the echo of a message sent before).
func roundTripAfter(t *testing.T, c *Connection, want string) {
	t.Helper()
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, want, string(m.Data))
}
