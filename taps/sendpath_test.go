package taps

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// countingStack is TCP whose transports count their writes (one
// WriteBuffers call is one writev system call) and can hold the first
// write until released.
type countingStack struct {
	stacks.Stack
	writes  atomic.Int64
	hold    chan struct{} // when set, the first write waits for it to close
	holding chan struct{} // closed when the first write is being held
	once    sync.Once
}

func (s *countingStack) Dial(ctx context.Context, remote netip.AddrPort, opts stacks.Options) (stacks.Transport, error) {
	t, err := s.Stack.Dial(ctx, remote, opts)
	if err != nil {
		return nil, err
	}
	return &countingTransport{Transport: t, s: s}, nil
}

type countingTransport struct {
	stacks.Transport
	s *countingStack
}

func (t *countingTransport) WriteBuffers(b *net.Buffers) (int64, error) {
	if t.s.hold != nil {
		t.s.once.Do(func() { close(t.s.holding); <-t.s.hold })
	}
	t.s.writes.Add(1)
	return b.WriteTo(t.Transport)
}

func (t *countingTransport) Write(p []byte) (int, error) {
	t.s.writes.Add(1)
	return t.Transport.Write(p)
}

func initiateWith(t *testing.T, sys *System, st stacks.Stack, r *RemoteEndpoint, fs ...framers.Framer) *Connection {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	pre.stackList = []stacks.Stack{st}
	for _, f := range fs {
		pre.AddFramer(f)
	}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	return c
}

func TestBatchIsOneWrite(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	st := &countingStack{Stack: stacks.TCP()}
	c := initiateWith(t, sys, st, r, framers.NewLengthPrefix())
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	var wg sync.WaitGroup
	wg.Add(10)
	c.Batch(func() {
		for i := 0; i < 10; i++ {
			c.SendAsync([]byte(fmt.Sprint("m", i)), nil, func(_ *Connection, err error) {
				require.NoError(t, err)
				wg.Done()
			})
		}
	})
	wg.Wait()
	require.Equal(t, int64(1), st.writes.Load(), "a batch of 10 messages leaves in one write")
	for i := 0; i < 10; i++ {
		m, err := readFrame(peer)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("m", i), m)
	}
	c.Abort()
	<-c.Done()
}

// TestQueuedMessagesLeaveByPriorityFinalLast: messages with msgOrdered
// false queued behind a blocked write leave by msgPriority, the final one
// last; a send after the final one is a SendError.
func TestQueuedMessagesLeaveByPriorityFinalLast(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	st := &countingStack{Stack: stacks.TCP(), hold: make(chan struct{}), holding: make(chan struct{})}
	c := initiateWith(t, sys, st, r, framers.NewLengthPrefix())
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	var wg sync.WaitGroup
	var afterFinal error
	send := func(data string, mc *MessageContext) {
		wg.Add(1)
		c.SendAsync([]byte(data), mc, func(_ *Connection, err error) {
			if data == "normal" {
				afterFinal = err
			} else if err != nil {
				t.Errorf("send %s: %v", data, err)
			}
			wg.Done()
		})
	}
	send("first", nil) // its write is held: the others queue up behind it
	<-st.holding
	c.Batch(func() { // one actor message: all of them queue behind the held write together
		// msgOrdered false: on TCP only unordered messages move by priority
		send("low", NewMessageContext().Ordered(false).Priority(200))
		send("high", NewMessageContext().Ordered(false).Priority(1))
		send("bye", NewMessageContext().Ordered(false).Final(true).Priority(0)) // final: after everything, whatever its priority
		send("normal", nil)                                                     // after a final: SendError
	})

	close(st.hold)
	wg.Wait()
	require.ErrorIs(t, afterFinal, ErrFinalSent)
	var got []string
	for i := 0; i < 4; i++ {
		m, err := readFrame(peer)
		require.NoError(t, err)
		got = append(got, m)
	}
	require.Equal(t, []string{"first", "high", "low", "bye"}, got)
	// after a final message further sends fail and the peer sees end of stream
	err = c.Send(testCtx(t), []byte("after final"), nil)
	require.ErrorIs(t, err, ErrFinalSent)
	_, err = peer.Read(make([]byte, 1))
	require.Error(t, err)
	c.Abort()
	<-c.Done()
}

func TestSlowReceiverKeepsMemoryBounded(t *testing.T) {
	sys := newTestSystem(t)
	const limit = 256 << 10
	srv := NewPreconnection(WithSystem(sys), WithReceiveBuffer(limit),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	cli := NewPreconnection(WithSystem(sys), WithSendBuffer(limit),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
	cli.AddFramer(framers.NewLengthPrefix())
	c, err := cli.Initiate(testCtx(t))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)

	// the receiver never calls Receive: the sender must end up waiting
	chunk := make([]byte, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sent := 0
	for sent < 256<<20 {
		if err := c.Send(ctx, chunk, nil); err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		sent += len(chunk)
	}
	require.Less(t, sent, 64<<20, "the sender was never held back")
	// what the receiving side holds for the application stays bounded
	s.link.Submit(func() {}) // no-op: the link is quiescent enough to inspect
	buffered := s.link.BufferedForTest()
	require.LessOrEqual(t, buffered, limit+2*len(chunk)+64<<10, "receive side holds %d bytes", buffered)
	// SendAsync reports a full queue instead of buffering forever
	full := make(chan error, 1)
	c.SendAsync(make([]byte, 2*limit), nil, func(_ *Connection, err error) { full <- err })
	require.ErrorIs(t, <-full, ErrSendQueueFull)
	// consuming resumes the flow
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Len(t, m.Data, len(chunk))
	c.Abort()
	s.Abort()
	<-c.Done()
	<-s.Done()
}

func TestUnsupportedMessagePropertiesAreSendErrors(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	ctx := testCtx(t)
	for _, mc := range []*MessageContext{
		NewMessageContext().NoSegmentation(true), // TCP segments a byte stream
		NewMessageContext().Reliable(false),      // TCP cannot deliver unreliably
		NewMessageContext().ChecksumLen(8),       // TCP checksums everything
	} {
		err := c.Send(ctx, []byte("x"), mc)
		var se *SendError
		require.ErrorAs(t, err, &se)
		require.ErrorIs(t, err, ErrPropertyNotSupported)
	}
	roundTrip(t, c, "the connection is unharmed")
	c.Abort()
	<-c.Done()
}

// Sends from several goroutines keep each goroutine's order on the wire
// while the framer is also busy with received data on other goroutines: a
// send's framed bytes are written where it was posted only when nothing
// the framer framed before is still queued at the connection
// (connActor.send, framerActor.flushOut).
func TestConcurrentSendsKeepEachSendersOrderWhileReceiving(t *testing.T) {
	const senders, per = 4, 400
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	a := dial(t, sys, ln, framers.NewLengthPrefix())
	b, err := ln.Accept(ctx)
	require.NoError(t, err)
	// a reads ahead (its handler runs the framer on the reader goroutine)
	// while its senders send
	var aGot atomic.Int64
	aDone := make(chan struct{})
	var recv func(*Connection, *Message, error)
	recv = func(c *Connection, m *Message, err error) {
		if err != nil {
			return
		}
		if aGot.Add(1) == senders*per {
			close(aDone)
			return
		}
		c.ReceiveAsync(recv)
	}
	a.ReceiveAsync(recv)
	var wg sync.WaitGroup
	wg.Go(func() { // b floods a
		for i := 0; i < senders*per; i++ {
			if err := b.Send(ctx, []byte("from b"), nil); err != nil {
				return
			}
		}
	})
	for g := 0; g < senders; g++ {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				if err := a.Send(ctx, fmt.Appendf(nil, "%d %d", g, i), nil); err != nil {
					return
				}
			}
		})
	}
	next := make([]int, senders)
	for n := 0; n < senders*per; n++ {
		m, err := b.Receive(ctx)
		require.NoError(t, err)
		var g, i int
		_, err = fmt.Sscanf(string(m.Data), "%d %d", &g, &i)
		require.NoError(t, err, "message %q", m.Data)
		require.Equal(t, next[g], i, "sender %d's messages arrive in order", g)
		next[g]++
	}
	wg.Wait()
	select {
	case <-aDone:
	case <-ctx.Done():
		t.Fatalf("a got %d of %d messages", aGot.Load(), senders*per)
	}
	require.NoError(t, a.Close())
	<-a.Done()
	b.Abort()
	<-b.Done()
}
