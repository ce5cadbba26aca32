package taps

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// A blocking Receive reads for itself (actors/readside.go). These tests
// hold the behaviours that reading on demand must keep.

// demandConn returns a framed connection to a raw peer after one message
// went through a blocking Receive (the connection now reads on demand).
func demandConn(t *testing.T, opts ...SystemOption) (*Connection, net.Conn) {
	t.Helper()
	sys := newTestSystem(t, opts...)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	_, err := peer.Write(frame("first"))
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	return c, peer
}

// A Receive whose ctx ends while it reads for itself returns the ctx error
// and loses nothing: half a frame read before, the rest after, and the
// next Receive gets the whole message.
func TestInlineReceiveCancelledLosesNothing(t *testing.T) {
	c, peer := demandConn(t)
	whole := frame("second, split across a cancelled Receive")
	_, err := peer.Write(whole[:7])
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Receive(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing complete: the ctx ends the Receive")

	_, err = peer.Write(whole[7:])
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "second, split across a cancelled Receive", string(m.Data))

	// the socket's read deadline was reset: later reads still block and work
	go func() { _, _ = peer.Write(frame("third")) }()
	m, err = c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "third", string(m.Data))
	c.Abort()
	<-c.Done()
}

// peerEndOfStream returns a System option whose tracer closes the returned
// channel when a connection notices its peer's end of stream.
func peerEndOfStream() (SystemOption, <-chan struct{}) {
	seen := make(chan struct{})
	var once sync.Once
	return WithTracer(func(r *TraceRecord) {
		if r.Event == "PeerEndOfStream" {
			once.Do(func() { close(seen) })
		}
	}), seen
}

// After a blocking Receive the connection reads on demand; when the
// application stops receiving, the reader goroutine takes over and the
// peer's end of stream is still noticed without a Receive: the connection
// half-closes (canReceive false, still Established), and a Receive that
// never reads (its ctx has ended) gets the end of stream.
func TestPeerCloseNoticedWithoutReceiveAfterDemand(t *testing.T) {
	opt, seen := peerEndOfStream()
	c, peer := demandConn(t, opt)
	require.NoError(t, peer.Close())
	select {
	case <-seen:
	case <-testCtx(t).Done():
		t.Fatal("the peer's close was never noticed without a Receive")
	}
	p := c.GetProperties()
	require.False(t, p.CanReceive)
	require.True(t, p.CanSend)
	require.Equal(t, StateEstablished, c.State())
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Receive(ended)
	var re *ReceiveError
	require.ErrorAs(t, err, &re, "the end of stream is queued: a Receive that does not read gets it")
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, c.Close())
	<-c.Done()
	require.Equal(t, StateClosed, c.State())
	require.NoError(t, c.Err())
}

// A Closed handler set after the connection went to reading on demand
// makes it read ahead again: the peer's end of stream is noticed without
// any Receive, and the handler runs once this side closes too.
func TestClosedHandlerMakesTheConnectionReadAhead(t *testing.T) {
	opt, seen := peerEndOfStream()
	c, peer := demandConn(t, opt)
	closed := make(chan struct{})
	c.OnClosed(func(*Connection) { close(closed) })
	require.NoError(t, peer.Close())
	select {
	case <-seen:
	case <-testCtx(t).Done():
		t.Fatal("the peer's end of stream was never noticed")
	}
	select {
	case <-closed:
		t.Fatal("the peer's end of stream alone closed the connection")
	default:
	}
	require.NoError(t, c.Close())
	select {
	case <-closed:
	case <-testCtx(t).Done():
		t.Fatal("Closed handler never ran")
	}
}

// Two goroutines blocked in Receive at once: one reads for itself, the
// other waits; each message reaches exactly one of them, none is lost.
func TestConcurrentBlockingReceives(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())

	const n = 200
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := c.Receive(testCtx(t))
				if err != nil {
					return
				}
				mu.Lock()
				got[string(m.Data)]++
				done := len(got) == n
				mu.Unlock()
				if done {
					c.Abort()
					return
				}
			}
		}()
	}
	for i := range n {
		_, err := peer.Write(frame(string(rune('A'+i%26)) + time.Duration(i).String()))
		require.NoError(t, err)
	}
	wg.Wait()
	<-c.Done()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, n)
	for k, v := range got {
		require.Equal(t, 1, v, "message %q delivered %d times", k, v)
	}
}

// A Receive with a ctx already ended returns at once with what is queued,
// and never reads (net.Conn adapters rely on it to drain).
func TestReceiveWithEndedContextDoesNotRead(t *testing.T) {
	c, peer := demandConn(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Receive(ctx)
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	// the connection still works: nothing was half-read
	_, err = peer.Write(frame("b"))
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "b", string(m.Data))
	c.Abort()
	<-c.Done()
}

// chanCtx is a ctx that is not one of package context's own: registering
// for its end (context.AfterFunc) starts a goroutine that waits for it, so
// a registration left behind shows as a leaked goroutine.
type chanCtx struct {
	context.Context
	done chan struct{}
}

func (c chanCtx) Done() <-chan struct{} { return c.done }
func (c chanCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// Receives with the same ctx keep one registration for its end (from the
// second read on); it still interrupts a blocked Receive, loses nothing,
// and is released when the connection ends.
func TestInlineReceiveKeptCtxRegistration(t *testing.T) {
	c, peer := demandConn(t)
	ctx := chanCtx{Context: context.Background(), done: make(chan struct{})}
	for _, m := range []string{"a", "b", "c"} {
		_, err := peer.Write(frame(m))
		require.NoError(t, err)
		got, err := c.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, m, string(got.Data))
	}
	// the kept registration interrupts a Receive blocked in its read
	errs := make(chan error, 1)
	go func() {
		_, err := c.Receive(ctx)
		errs <- err
	}()
	whole := frame("d, after the interrupted read")
	_, err := peer.Write(whole[:3]) // a partial frame: the Receive reads it and goes on waiting
	require.NoError(t, err)
	close(ctx.done)
	require.ErrorIs(t, <-errs, context.Canceled)
	_, err = peer.Write(whole[3:])
	require.NoError(t, err)
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "d, after the interrupted read", string(m.Data))

	// a new long-lived ctx: kept from its second read, released at the end
	before := goleak.IgnoreCurrent()
	ctx2 := chanCtx{Context: context.Background(), done: make(chan struct{})}
	defer close(ctx2.done)
	for _, m := range []string{"e", "f"} {
		_, err := peer.Write(frame(m))
		require.NoError(t, err)
		got, err := c.Receive(ctx2)
		require.NoError(t, err)
		require.Equal(t, m, string(got.Data))
	}
	require.NoError(t, peer.Close())
	_, err = c.Receive(ctx2) // the peer's end of stream ends the stream: the registration goes
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, c.Close())
	<-c.Done()
	goleak.VerifyNone(t, before) // no goroutine waits for ctx2 any more
}
