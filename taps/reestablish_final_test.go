package taps

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Under a re-establishment policy the peer's end of stream ends only the
// transport (the Receive doc comment): nothing received before it is
// final, no empty final message marks it, and what the next transport
// brings continues the stream; when the policy gives up, Receive ends with
// the connection's error.

// reestReceived is what a receive loop got, in order.
type reestReceived struct {
	data  string
	final bool
	eom   bool
	err   error
}

// receiveEach receives on c until it fails, sending each result to out.
func receiveEach(c *Connection, out chan<- reestReceived) {
	ctx := context.Background() // the loop ends with its connection
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			out <- reestReceived{err: err}
			return
		}
		out <- reestReceived{data: string(m.Data), final: m.Context.IsFinal(), eom: m.EndOfMessage}
	}
}

// collectUntil reads results until want bytes arrived, checking that no
// message is empty and final, that nothing follows a final message, and
// that no receive failed on the way. It returns the bytes, in order.
func collectUntil(t *testing.T, got <-chan reestReceived, want int) (string, []reestReceived) {
	t.Helper()
	ctx := testCtx(t)
	var data string
	var all []reestReceived
	for len(data) < want {
		select {
		case r := <-got:
			if n := len(all); n > 0 && all[n-1].final {
				t.Fatalf("a receive event after a final message: %+v (so far %+v)", r, all)
			}
			all = append(all, r)
			require.NoError(t, r.err, "received so far: %+v", all)
			require.False(t, r.final && r.data == "", "an empty final message: %+v", all)
			data += r.data
		case <-ctx.Done():
			t.Fatalf("received so far: %+v", all)
		}
	}
	return data, all
}

// reestAcrossPeerFIN initiates a connection (with fs) under a fast
// re-establishment policy to a raw TCP peer, which writes first and
// closes; once the connection re-established, the next peer writes
// second. got has what the connection received.
func reestAcrossPeerFIN(t *testing.T, first, second []byte, fs ...framers.Framer) (*Connection, <-chan reestReceived) {
	t.Helper()
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: time.Millisecond}))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	ev := watchReest(c)
	got := make(chan reestReceived, 100)
	go receiveEach(c, got)

	peer, err := ln.Accept()
	require.NoError(t, err)
	_, err = peer.Write(first)
	require.NoError(t, err)
	require.NoError(t, peer.Close())
	require.Equal(t, "reestablishing", <-ev.ch)
	peer2, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer2.Close() })
	require.Equal(t, "reestablished", <-ev.ch)
	_, err = peer2.Write(second)
	require.NoError(t, err)
	return c, got
}

// abortReceiving aborts c and requires its receive loop (got) to end
// with an error.
func abortReceiving(t *testing.T, c *Connection, got <-chan reestReceived) {
	t.Helper()
	c.Abort()
	<-c.Done()
	require.Error(t, (<-got).err)
}

// The bug: an unframed byte stream got an empty message marked final at
// the peer's FIN, and then the data of the re-established transport.
func TestReestablishedUnframedStreamHasNoFinalAtPeerEndOfStream(t *testing.T) {
	c, got := reestAcrossPeerFIN(t, []byte("before"), []byte("after"))

	data, all := collectUntil(t, got, len("beforeafter"))
	require.Equal(t, "beforeafter", data, "received: %+v", all)
	for _, m := range all {
		require.False(t, m.final, "no message is final: %+v", all)
	}
	abortReceiving(t, c, got)
}

// The framed case: the last message before the peer's FIN is not final
// under a re-establishment policy; the next transport's messages follow.
func TestReestablishedFramedStreamHasNoFinalAtPeerEndOfStream(t *testing.T) {
	c, got := reestAcrossPeerFIN(t, frame("one", "two"), frame("three"), framers.NewLengthPrefix())

	_, all := collectUntil(t, got, len("onetwothree"))
	var msgs []string
	for _, m := range all {
		require.True(t, m.eom)
		require.False(t, m.final, "no message is final: %+v", all)
		msgs = append(msgs, m.data)
	}
	require.Equal(t, []string{"one", "two", "three"}, msgs)
	abortReceiving(t, c, got)
}

// When the policy gives up after the peer's FIN, the bytes received before
// it are not final, and Receive then fails with the connection's error.
func TestReestablishGivingUpAfterPeerEndOfStreamHasNoFinal(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
		WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 2}))
	ctx := testCtx(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	_, err = peer.Write([]byte("data"))
	require.NoError(t, err)
	require.NoError(t, ln.Close()) // every attempt is refused
	require.NoError(t, peer.Close())
	<-c.Done()
	var ce *ConnectionError
	require.ErrorAs(t, c.Err(), &ce)

	var data string
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			var re *ReceiveError
			require.ErrorAs(t, err, &re)
			require.NotErrorIs(t, err, ErrClosed, "not a clean end: %v", err)
			break
		}
		require.False(t, m.Context.IsFinal(), "no message is final")
		data += string(m.Data)
	}
	require.Equal(t, "data", data)
}

// The QUIC case: the peer's FIN on the connection's stream (its Final
// message) ends the transport under a re-establishment policy; the
// unframed stream goes on over the next one with nothing final.
func TestReestablishedQUICStreamHasNoFinalAtPeerEndOfStream(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ctx := testCtx(t)
	lpre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(quicOnly(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := lpre.Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithTransportProperties(quicOnly(t)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(ap.Port())),
		WithResolver(loopbackOnly),
		WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: time.Millisecond}))
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	ev := watchReest(c)
	got := make(chan reestReceived, 100)
	go receiveEach(c, got)
	// the client's stream reaches the listener with its first bytes
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))

	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(ctx, []byte("before"), NewMessageContext().Final(true)))
	require.Equal(t, "reestablishing", <-ev.ch)
	require.Equal(t, "reestablished", <-ev.ch)
	require.NoError(t, c.Send(ctx, []byte("again"), nil))
	s2, err := ln.Accept(ctx)
	require.NoError(t, err)
	require.NoError(t, s2.Send(ctx, []byte("after"), nil))

	data, all := collectUntil(t, got, len("beforeafter"))
	require.Equal(t, "beforeafter", data, "received: %+v", all)
	for _, m := range all {
		require.False(t, m.final, "no message is final: %+v", all)
	}
	abortReceiving(t, c, got)
	s.Abort()
	s2.Abort()
}
