package taps

import (
	"bytes"
	"context"
	"github.com/gotaps/gotaps/framers"
	"go.uber.org/goleak"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQUICPeerStreamsStillArriveAfterTheFirstStreamClosed: on the
// listening side, the session's first stream is the member that accepted
// the peer's later streams. Closing it (Close of one member) must not end
// the others, nor the session's acceptance of new streams: a Clone the
// peer makes afterwards on the same session still arrives as
// ConnectionReceived, and is answered.
func TestQUICPeerStreamsStillArriveAfterTheFirstStreamClosed(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	c, cl, first, second, accepted := quicSession(t, sys)

	// the first stream ends on both sides; the session lives on in the
	// second
	require.NoError(t, c.Close())
	require.NoError(t, first.Close())
	<-c.Done()
	<-first.Done()
	roundTrip(t, cl, "second stream still up")

	third, err := cl.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, third.Send(ctx, []byte("third stream"), nil))
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := third.Receive(bounded)
	require.NoError(t, err, "the peer accepts a stream opened after its first stream closed")
	require.Equal(t, "third stream", string(m.Data))
	var peer *Connection
	select {
	case peer = <-accepted:
	case <-bounded.Done():
		t.Fatal("the third stream never arrived as ConnectionReceived")
	}
	group, err := second.GroupedConnections(ctx)
	require.NoError(t, err)
	// (first may still be listed: a member leaves its group as its actor
	// stops, just after Done)
	var ids []uint64
	for _, g := range group {
		ids = append(ids, g.ID())
	}
	require.Contains(t, ids, peer.ID(), "the new stream joined the session's group")
	require.Contains(t, ids, second.ID())

	cl.AbortGroup()
	<-cl.Done()
	<-third.Done()
	<-second.Done()
	<-peer.Done()
}

// quicSessionOfTwo is a client QUIC connection and its clone (two streams
// of one session) and the server's two members for them.
func quicSessionOfTwo(t *testing.T, sys *System) (c, cl, first, second *Connection) {
	t.Helper()
	c, cl, first, second, _ = quicSession(t, sys)
	return c, cl, first, second
}

// quicSession is quicSessionOfTwo with the server's channel of accepted
// connections, for the streams that come next.
func quicSession(t *testing.T, sys *System) (c, cl, first, second *Connection, accepted <-chan *Connection) {
	t.Helper()
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ln, accepted := quicEchoServer(t, sys, pki, tp)
	ctx := testCtx(t)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	roundTrip(t, c, "first stream")
	first = <-accepted
	cl, err = c.Clone(ctx)
	require.NoError(t, err)
	roundTrip(t, cl, "second stream")
	second = <-accepted
	return c, cl, first, second, accepted
}

// TestQUICPeerAbortOfOneStreamIsAConnectionErrorOfItsMemberOnly: the
// peer's Abort of one member resets its stream (RESET_STREAM,
// STOP_SENDING): that member alone ends with a ConnectionError; the other
// stream of the session carries on.
func TestQUICPeerAbortOfOneStreamIsAConnectionErrorOfItsMemberOnly(t *testing.T) {
	sys := newTestSystem(t)
	c, cl, first, second := quicSessionOfTwo(t, sys)
	ctx := testCtx(t)
	first.Abort()
	<-first.Done()
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := c.Receive(bounded)
	require.Error(t, err)
	select {
	case <-c.Done():
	case <-bounded.Done():
		t.Fatal("the member whose stream the peer reset did not end")
	}
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce, "a reset stream is a ConnectionError")
	roundTrip(t, cl, "the other stream carries on")
	cl.AbortGroup()
	<-cl.Done()
	<-second.Done()
}

// TestQUICPeerAbortGroupEndsEveryMemberWithAConnectionError: the peer's
// AbortGroup ends the session: every member gets a ConnectionError.
func TestQUICPeerAbortGroupEndsEveryMemberWithAConnectionError(t *testing.T) {
	sys := newTestSystem(t)
	c, cl, first, second := quicSessionOfTwo(t, sys)
	first.AbortGroup()
	<-first.Done()
	<-second.Done()
	bounded, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	defer cancel()
	for _, m := range []*Connection{c, cl} {
		select {
		case <-m.Done():
		case <-bounded.Done():
			t.Fatal("a member outlived the peer's AbortGroup")
		}
		var ce *ConnectionError
		require.ErrorAs(t, m.Err(), &ce)
	}
}

// TestQUICMessageLargerThanTheFlowControlWindow: a message larger than
// quic-go's largest stream and connection receive windows (6 and 15 MB)
// goes through and back, on a clone while the first stream is idle.
func TestQUICMessageLargerThanTheFlowControlWindow(t *testing.T) {
	sys := newTestSystem(t)
	c, cl, first, second := quicSessionOfTwo(t, sys)
	ctx := testCtx(t)
	big := make([]byte, 16<<20-64)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, cl.Send(ctx, big, nil))
	m, err := cl.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, len(big), len(m.Data))
	require.True(t, bytes.Equal(big, m.Data))
	roundTrip(t, c, "the first stream meanwhile")
	c.AbortGroup()
	for _, x := range []*Connection{c, cl, first, second} {
		<-x.Done()
	}
}

// TestQUICSessionsLeaveNothingBehind: sessions of two streams, ended in
// every order (Close of each member, an Abort among them, CloseGroup,
// AbortGroup), leave no socket or goroutine behind on either side: the
// last member's end closes the session.
func TestQUICSessionsLeaveNothingBehind(t *testing.T) {
	ln, pre := quicPair(t)
	ctx := testCtx(t)
	endings := map[string]func(c, cl *Connection){
		"close first, then clone":  func(c, cl *Connection) { _ = c.Close(); <-c.Done(); _ = cl.Close() },
		"close clone, then first":  func(c, cl *Connection) { _ = cl.Close(); <-cl.Done(); _ = c.Close() },
		"abort first, close clone": func(c, cl *Connection) { c.Abort(); <-c.Done(); _ = cl.Close() },
		"close first, abort clone": func(c, cl *Connection) { _ = c.Close(); <-c.Done(); cl.Abort() },
		"CloseGroup":               func(c, _ *Connection) { c.CloseGroup() },
		"AbortGroup":               func(_, cl *Connection) { cl.AbortGroup() },
	}
	once := func(end func(c, cl *Connection)) {
		c, err := pre.Initiate(ctx)
		require.NoError(t, err)
		roundTrip(t, c, "first stream")
		cl, err := c.Clone(ctx)
		require.NoError(t, err)
		roundTrip(t, cl, "second stream")
		end(c, cl)
		<-c.Done()
		<-cl.Done()
	}
	once(endings["CloseGroup"]) // warm up
	ignore := goleak.IgnoreCurrent()
	fds := countFDs(t)
	for name, end := range endings {
		for range 3 {
			once(end)
		}
		require.Eventually(t, func() bool { return countFDs(t) <= fds }, 5*time.Second, 10*time.Millisecond,
			"%s: fds %d before, %d after", name, fds, countFDs(t))
	}
	ln.Stop()
	<-ln.Done()
	require.NoError(t, goleak.Find(ignore), "no goroutine left")
}

// TestQUICClonesGivenUpLeaveNoStream: Clones whose ctx ends at any point
// of their way (before, while or after the stream is opened, before or
// after the group started the member) leave no stream behind that would
// keep the session open once every member has ended.
func TestQUICClonesGivenUpLeaveNoStream(t *testing.T) {
	ln, pre := quicPair(t)
	ctx := testCtx(t)
	once := func(i int) {
		c, err := pre.Initiate(ctx)
		require.NoError(t, err)
		roundTrip(t, c, "first stream")
		var clones []*Connection
		for j := range 50 {
			short, cancel := context.WithTimeout(ctx, time.Duration((i*50+j)%60)*500*time.Nanosecond)
			cl, err := c.Clone(short)
			cancel()
			if err == nil {
				clones = append(clones, cl)
			}
		}
		c.AbortGroup()
		<-c.Done()
		for _, cl := range clones {
			<-cl.Done()
		}
	}
	once(0) // warm up
	ignore := goleak.IgnoreCurrent()
	fds := countFDs(t)
	for i := range 10 {
		once(i)
	}
	require.Eventually(t, func() bool { return countFDs(t) <= fds }, 5*time.Second, 10*time.Millisecond,
		"fds %d before, %d after", fds, countFDs(t))
	ln.Stop()
	<-ln.Done()
	require.NoError(t, goleak.Find(ignore), "no goroutine left")
}

// TestQUICFinalOnACloneEndsItsStreamOnly: a clone's first and Final
// message (its stream's data and FIN together) reaches the peer as a new
// member, half-closed; its reply comes back, both sides of that stream end
// cleanly, and the first stream of the session carries on.
func TestQUICFinalOnACloneEndsItsStreamOnly(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := quicOnly(t)
	lpre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	lpre.AddFramer(framers.NewLengthPrefix())
	ctx := testCtx(t)
	ln, err := lpre.Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("first"), nil))
	first, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := first.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))

	cl, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, cl.Send(ctx, []byte("request"), NewMessageContext().Final(true)))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err = s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "request", string(m.Data))
	_, err = s.Receive(ctx) // the clone's FIN: half-closed
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, s.Send(ctx, []byte("reply"), nil))
	m, err = cl.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "reply", string(m.Data))
	require.NoError(t, s.Close())
	<-s.Done()
	require.NoError(t, s.Err())
	<-cl.Done()
	require.NoError(t, cl.Err())

	require.NoError(t, first.Send(ctx, []byte("still up"), nil))
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "still up", string(m.Data))
	require.NoError(t, c.Send(ctx, []byte("both ways"), nil))
	m, err = first.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "both ways", string(m.Data))
	c.AbortGroup()
	<-c.Done()
	<-first.Done()
}

// TestQUICAbortGroupEndsACloneWaitingAtTheStreamLimit: AbortGroup while
// a Clone waits for the peer's stream limit ends the session, and with it
// the wait: the Clone fails at once with a CloneError, and every member
// ends.
func TestQUICAbortGroupEndsACloneWaitingAtTheStreamLimit(t *testing.T) {
	ctx := testCtx(t)
	ln, c, clones := quicAtStreamLimit(t, ctx)
	defer ln.Stop()
	next := cloneAsync(ctx, c)
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c.AbortGroup()
	for _, cl := range append(clones, c) {
		select {
		case <-cl.Done():
		case <-bounded.Done():
			t.Fatal("a member outlived AbortGroup")
		}
	}
	select {
	case r := <-next:
		var ce *CloneError
		require.ErrorAs(t, r.err, &ce)
	case <-bounded.Done():
		t.Fatal("the waiting Clone outlived its group's session")
	}
}

// TestQUICAbortOfTheOriginalWhileItsCloneWaitsAtTheStreamLimit: the
// original's Abort while its Clone waits for the peer's stream limit ends
// the original at once (its actor does not wait for the Clone's wait);
// the session lives on in the other members, and the Clone ends either
// way (a stream, or a CloneError) once its stream limit lets a stream go;
// nothing is left behind.
func TestQUICAbortOfTheOriginalWhileItsCloneWaitsAtTheStreamLimit(t *testing.T) {
	ctx := testCtx(t)
	ln, c, clones := quicAtStreamLimit(t, ctx)
	defer ln.Stop()
	// the peer learns of every clone's stream (the last one's data
	// announce those before it), so that its side of the session does
	// not end with the original's stream
	roundTrip(t, clones[len(clones)-1], "announces the clones' streams")
	next := cloneAsync(ctx, c)
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c.Abort()
	select {
	case <-c.Done():
	case <-bounded.Done():
		t.Fatal("the original did not end")
	}
	roundTrip(t, clones[0], "the session lives on")
	var r cloneResult
	select {
	case r = <-next:
	case <-bounded.Done():
		t.Fatal("the Clone still waits after the original's stream was freed")
	}
	if r.err == nil {
		roundTrip(t, r.c, "the clone of an aborted original")
		clones = append(clones, r.c)
	}
	clones[0].AbortGroup()
	for _, cl := range clones {
		<-cl.Done()
	}
}

// TestQUICPeerClosingItsLastKnownStreamKeepsAnUnannouncedClone: a Clone
// that has not sent yet is a stream the peer does not know of (QUIC
// announces a stream with its first data). When the original's stream
// ends gracefully on both sides, the peer's side of the session has no
// stream left; the clone, a member of its own, must not end with it.
func TestQUICPeerClosingItsLastKnownStreamKeepsAnUnannouncedClone(t *testing.T) {
	ln, pre := quicPair(t)
	defer ln.Stop()
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	roundTrip(t, c, "first stream")
	cl, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Close()) // the echo server closes its side at our FIN
	<-c.Done()
	require.NoError(t, c.Err())
	// the peer's linger (three probe timeouts, at least 100 ms) is over
	// long before this round trip ends if it closes the session
	bounded, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	select {
	case <-cl.Done():
		t.Fatalf("the clone ended with the original's stream: %v", cl.Err())
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, cl.Send(bounded, []byte("the clone's first message"), nil))
	m, err := cl.Receive(bounded)
	require.NoError(t, err)
	require.Equal(t, "the clone's first message", string(m.Data))
	require.NoError(t, cl.Close())
	<-cl.Done()
}
