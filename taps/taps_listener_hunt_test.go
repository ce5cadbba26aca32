package taps

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// receivedTracer returns a System option that signals on the returned
// channel each time a listener delivers a connection (ConnectionReceived:
// the connection is in the Accept queue, or on its way to the handler).
func receivedTracer() (SystemOption, <-chan struct{}) {
	ch := make(chan struct{}, 16)
	return WithTracer(func(r *TraceRecord) {
		if r.Kind == "listener" && r.Event == "ConnectionReceived" {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}), ch
}

func waitChan(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A panic in the ConnectionReceived handler ends only that Connection,
// with a ConnectionError wrapping a PanicError (doc.go: "A panic in a
// handler ends only its Connection"); the listener goes on delivering.
// It was recovered and dropped: the connection stayed open, unreported
// and unowned.
func TestListenerHuntReceivedHandlerPanicEndsTheConnection(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	got := make(chan *Connection, 2)
	release := make(chan struct{})
	n := 0
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
		n++ // handlers are called one at a time
		got <- c
		if n == 1 {
			<-release // once the client has its connection
			panic("received handler bug")
		}
	})
	c1 := dial(t, sys, ln)
	s1 := <-got
	close(release)
	select {
	case <-s1.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection whose ConnectionReceived handler panicked is still open")
	}
	var pe *PanicError
	require.ErrorAs(t, s1.Err(), &pe)
	require.Equal(t, "received handler bug", pe.Value)
	// the peer sees the end
	_, err := c1.Receive(testCtx(t))
	require.Error(t, err)

	// the listener goes on
	c2 := dial(t, sys, ln)
	s2 := <-got
	for _, c := range []*Connection{c1, c2, s2} {
		c.Abort()
		<-c.Done()
	}
	ln.Stop()
	<-ln.Done()
}

// net.Listener: after Close, Accept returns an error wrapping
// net.ErrClosed even when a received connection was waiting (NetListener
// documents "pending and later Accepts return an error wrapping
// net.ErrClosed"), and that connection is closed, as the kernel resets
// the connections left in a closed listener's backlog: it used to be
// returned by the next Accept, or to stay open and unowned.
func TestListenerHuntNetListenerCloseDropsQueued(t *testing.T) {
	opt, received := receivedTracer()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	nl := ln.NetListener()
	c := dial(t, sys, ln)
	waitChan(t, received, "ConnectionReceived")
	require.NoError(t, nl.Close())
	conn, err := nl.Accept()
	if conn != nil {
		_ = conn.Close()
	}
	require.ErrorIs(t, err, net.ErrClosed, "Accept after Close returned a queued connection")
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))

	// the connection nobody accepted is ended: the client sees it
	ctx := testCtx(t)
	_, err = c.Receive(ctx)
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "the unaccepted connection stayed open")
	c.Abort()
	<-c.Done()
}

// A connection the listener accepted before Stop but that becomes Ready
// after it (here: its framer's handshake completes late) is not
// delivered, and must not stay open: RFC 9622 §7.2, no ConnectionReceived
// after Stopped. It was left open and unowned (its ConnectionReceived went
// to the stopped listener's dead letters), the peer waiting forever.
func TestListenerHuntConnectionReadyAfterStopIsEnded(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, &helloFramer{inner: framers.NewLengthPrefix()})
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	// the server's connection exists: its framer sent its half of the
	// handshake
	buf := make([]byte, 5)
	_, err = io.ReadFull(raw, buf)
	require.NoError(t, err)
	require.Equal(t, "HELLO", string(buf))

	ln.Stop()
	<-ln.Done()
	// the handshake completes (Ready) unless the Stop has already ended
	// the connection in its setup (TestListenerStopEndsConnectionsInSetup):
	// then the write meets its reset
	if _, err = raw.Write([]byte("HELLO")); err != nil {
		require.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "%v", err)
		return
	}
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = raw.Read(buf)
	require.Error(t, err)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the connection Ready after Stop stayed open: %v", err)
}

// The new-connection limit is a decrementing budget (RFC 9622 §7.2) for
// the ConnectionReceived handler too; after Stop, setting it fails at
// once.
func TestListenerHuntLimitBudgetWithHandler(t *testing.T) {
	opt, received := receivedTracer()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys)
	require.NoError(t, ln.SetNewConnectionLimit(2))
	got := make(chan *Connection, 4)
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) { got <- c })
	var clients []*Connection
	for i := 0; i < 3; i++ {
		clients = append(clients, dial(t, sys, ln))
	}
	var servers []*Connection
	for i := 0; i < 2; i++ {
		waitChan(t, received, "ConnectionReceived")
		servers = append(servers, <-got)
	}
	// the budget is spent: the third waits until it is raised
	select {
	case c := <-got:
		t.Fatalf("a connection beyond the budget was delivered: %v", c)
	default:
	}
	require.NoError(t, ln.SetNewConnectionLimit(1))
	servers = append(servers, <-got)
	for _, c := range append(clients, servers...) {
		c.Abort()
		<-c.Done()
	}
	ln.Stop()
	<-ln.Done()
	start := time.Now()
	require.Error(t, ln.SetNewConnectionLimit(5))
	require.Less(t, time.Since(start), 2*time.Second)
}

// OnConnectionReceived(nil) removes the handler: connections go to Accept
// again. They went to a nil function (a panic, recovered), neither
// delivered nor closed.
func TestListenerHuntNilReceivedHandlerRestoresAccept(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	ln.OnConnectionReceived(func(*Listener, *Connection) { t.Error("the removed handler was called") })
	ln.OnConnectionReceived(nil)
	c := dial(t, sys, ln)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	for _, c := range []*Connection{c, s} {
		c.Abort()
		<-c.Done()
	}
	ln.Stop()
	<-ln.Done()
}
