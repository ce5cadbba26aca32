package taps

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQUICCloneWaitsForThePeersStreamLimit: with the peer's limit of
// bidirectional streams (quic-go's 100) taken by the first stream and 99
// clones, the next Clone cannot open its stream at once; it waits
// (openStream's goroutine), and gets one when a clone closes, and works.
func TestQUICCloneWaitsForThePeersStreamLimit(t *testing.T) {
	ctx := testCtx(t)
	ln, c, clones := quicAtStreamLimit(t, ctx)
	next := cloneAsync(ctx, c)
	freeAStreamForTheWaiter(t, ln, c, clones, next)
}

// TestQUICSendOnlyCloneWaitsForThePeersUniStreamLimit: the same for the
// unidirectional streams of a UnidirectionalSend connection (Initiate's
// stream exchanged for one, and 99 clones).
func TestQUICSendOnlyCloneWaitsForThePeersUniStreamLimit(t *testing.T) {
	ctx := testCtx(t)
	ln, cli := sendOnlyQUIC(t, ctx)
	c, err := cli.Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("first"), nil))
	first, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := first.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	clones := cloneToLimit(t, ctx, c)
	next := cloneAsync(ctx, c)
	// (the peer learns of a stream with its first data, and of every
	// lower-numbered one with it: clones[0]'s is the next)
	require.NoError(t, clones[0].Send(ctx, []byte("frees a stream when closed"), nil))
	require.NoError(t, clones[0].Close())
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err = s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "frees a stream when closed", string(m.Data))
	<-s.Done()
	<-clones[0].Done()
	r := <-next
	require.NoError(t, r.err)
	requireSendOnly(t, r.c)
	require.NoError(t, r.c.Send(ctx, []byte("the clone that waited"), nil))
	// its stream comes after those of clones[1:], which it makes known
	peers := []*Connection{first}
	for range clones[1:] {
		s, err = ln.Accept(ctx)
		require.NoError(t, err)
		peers = append(peers, s)
	}
	s, err = ln.Accept(ctx)
	require.NoError(t, err)
	peers = append(peers, s)
	m, err = s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "the clone that waited", string(m.Data))
	for _, cl := range append(append(clones[1:], r.c, c), peers...) {
		cl.Abort()
	}
	for _, cl := range append(append(clones[1:], r.c, c), peers...) {
		<-cl.Done()
	}
}

// TestQUICCloneGivenUpAtTheStreamLimitTakesNoStream: a Clone that gives up
// (its ctx ends) while waiting for the peer's stream limit leaves nothing
// waiting behind it: the stream freed next goes to the next Clone. Before,
// the abandoned wait went on, took that stream and sent it to a requester
// that was gone, and the next Clone waited in vain.
func TestQUICCloneGivenUpAtTheStreamLimitTakesNoStream(t *testing.T) {
	ctx := testCtx(t)
	ln, c, clones := quicAtStreamLimit(t, ctx)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := c.Clone(short)
	cancel()
	require.Error(t, err, "no stream while the limit is reached")
	var ce *CloneError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, ReasonTimeout, ce.Reason, "its ctx ended: a timeout, as while it waits for Ready")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	roundTrip(t, clones[0], "frees a stream when closed")
	require.NoError(t, clones[0].Close())
	<-clones[0].Done()
	// bounded, so that a stream taken by the abandoned wait fails the
	// test instead of hanging it
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	next, err := c.Clone(bounded)
	require.NoError(t, err, "the freed stream goes to this Clone")
	roundTrip(t, next, "the clone after the abandoned one")
	for _, cl := range append(clones[1:], next, c) {
		require.NoError(t, cl.Close())
	}
	for _, cl := range append(clones[1:], next, c) {
		<-cl.Done()
	}
	ln.Stop()
}

// cloneToLimit makes the 99 clones of c that, with c's own stream, reach
// quic-go's default limit of 100 streams of their kind.
func cloneToLimit(t *testing.T, ctx context.Context, c *Connection) []*Connection {
	t.Helper()
	clones := make([]*Connection, 0, 99)
	for range 99 {
		cl, err := c.Clone(ctx)
		require.NoError(t, err)
		clones = append(clones, cl)
	}
	return clones
}

type cloneResult struct {
	c   *Connection
	err error
}

// cloneAsync clones c in a goroutine of its own.
func cloneAsync(ctx context.Context, c *Connection) <-chan cloneResult {
	next := make(chan cloneResult, 1)
	go func() {
		cl, err := c.Clone(ctx)
		next <- cloneResult{cl, err}
	}()
	return next
}

// quicAtStreamLimit is a QUIC connection to a listener, with the clones
// that reach the peer's limit of bidirectional streams (cloneToLimit).
func quicAtStreamLimit(t *testing.T, ctx context.Context) (*Listener, *Connection, []*Connection) {
	t.Helper()
	ln, pre := quicPair(t)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	roundTrip(t, c, "first stream")
	return ln, c, cloneToLimit(t, ctx, c)
}

// TestQUICCloneWaitsAtTheStreamLimitAsLongAsItsCtx: a Clone's stream open
// waits while the peer's stream limit is reached as long as its ctx lets
// it (CloneAsync's doc: "bounded by ctx"). The connection also bounded the
// wait by a fixed 10 s: a Clone whose ctx had 20 s left failed at 10 s
// with a CloneError (ReasonNotCloneable) wrapping context.DeadlineExceeded,
// though its ctx had not ended, and a stream freed later went to nobody.
func TestQUICCloneWaitsAtTheStreamLimitAsLongAsItsCtx(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, c, clones := quicAtStreamLimit(t, ctx)
	next := cloneAsync(ctx, c)
	select {
	case r := <-next:
		t.Fatalf("Clone returned while the limit was reached and its ctx ran: %v", r.err)
	case <-time.After(11 * time.Second): // past the connection's former bound
	}
	freeAStreamForTheWaiter(t, ln, c, clones, next)
}

// freeAStreamForTheWaiter closes the first of clones, which frees a stream
// of the peer's limit, requires the clone waiting on next to get it and
// echo, and closes everything.
func freeAStreamForTheWaiter(t *testing.T, ln *Listener, c *Connection, clones []*Connection, next <-chan cloneResult) {
	t.Helper()
	roundTrip(t, clones[0], "frees a stream when closed")
	require.NoError(t, clones[0].Close())
	<-clones[0].Done()
	r := <-next
	require.NoError(t, r.err)
	roundTrip(t, r.c, "the clone that waited")
	for _, cl := range append(clones[1:], r.c, c) {
		require.NoError(t, cl.Close())
	}
	for _, cl := range append(clones[1:], r.c, c) {
		<-cl.Done()
	}
	ln.Stop()
}
