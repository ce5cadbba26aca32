package taps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// BUG (unbounded setup of an accepted connection): an accepted
// connection whose framer waits for the peer before MakeConnectionReady
// (a framer with a handshake) was never bounded in time: a peer that
// connected and sent nothing held its file descriptor, its actors and a
// place in the accept backlog for ever, and WithAcceptBacklog such peers
// (128 by default) stopped the Listener from accepting anyone else. The
// setup is bounded now: by the Listener's Preconnection's
// WithEstablishmentTimeout, else by DefaultAcceptSetupTimeout (10 s),
// after which the connection is aborted, never delivered.

// helloLineFramer is a framer with a handshake: its connection is Ready once
// the peer sent the line "hello\n"; after that, what the peer sends is
// delivered as it comes.
type helloLineFramer struct{}

func (helloLineFramer) Start(*framers.Instance) {}
func (helloLineFramer) Stop(*framers.Instance)  {}
func (helloLineFramer) NewSentMessage(inst *framers.Instance, data []byte, _ framers.Metadata, _ bool) {
	inst.Send(data)
}

func (helloLineFramer) HandleReceivedData(inst *framers.Instance) {
	if !inst.IsReady() {
		b, ok := inst.Parse(len("hello\n"), len("hello\n"))
		if !ok {
			return
		}
		if !bytes.Equal(b, []byte("hello\n")) {
			inst.FailConnection(errors.New("no hello"))
			return
		}
		inst.AdvanceReceiveCursor(len(b))
		inst.MakeConnectionReady()
	}
	if b, ok := inst.Parse(1, -1); ok {
		inst.DeliverAndAdvanceReceiveCursor(nil, len(b), true)
	}
}

// setupTimeouts counts the Listener's SetupTimeout trace records.
type setupTimeouts struct {
	mu sync.Mutex
	n  int
}

func (s *setupTimeouts) trace(r *TraceRecord) {
	if r.Kind == "listener" && r.Event == "SetupTimeout" {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
}

func (s *setupTimeouts) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// helloListen starts a TCP Listener on loopback with a helloLineFramer.
func helloListen(t *testing.T, st *setupTimeouts, opts ...PreconnectionOption) *Listener {
	t.Helper()
	sys := newTestSystem(t, WithTracer(st.trace))
	opts = append([]PreconnectionOption{WithSystem(sys), WithProtocols("tcp"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))}, opts...)
	pre := NewPreconnection(opts...)
	pre.AddFramer(helloLineFramer{})
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln
}

// dialSilent dials ln with net.Dial; the client is closed at the test's end.
func dialSilent(t *testing.T, ln *Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireEnded checks that the Listener ended c's connection: a read
// returns the end of the stream or a reset, not a timeout.
func requireEnded(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.ReadAll(c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the Listener did not end the silent connection: %v", err)
}

// Two silent peers fill a backlog of 2 while their handshake framer
// waits; once the establishment timeout (300 ms) ends their setup, they
// are aborted (never delivered) and the peer that says hello is accepted
// and received.
func TestAcceptSetupTimeoutFreesBacklog(t *testing.T) {
	st := &setupTimeouts{}
	ln := helloListen(t, st, WithAcceptBacklog(2), WithEstablishmentTimeout(300*time.Millisecond))
	silent := []net.Conn{dialSilent(t, ln), dialSilent(t, ln)}
	c := dialSilent(t, ln)
	_, err := c.Write([]byte("hello\nping"))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := ln.Accept(ctx)
	require.NoError(t, err, "the silent peers kept the backlog full: the third peer was never received")
	defer s.Abort()
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(m.Data))

	for _, sc := range silent {
		requireEnded(t, sc)
	}
	require.Equal(t, 2, st.count(), "one SetupTimeout record per silent peer")
	// nothing else was delivered
	actx, acancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer acancel()
	_, err = ln.Accept(actx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// Without WithEstablishmentTimeout (or with d <= 0) the setup of an
// accepted connection is bounded by DefaultAcceptSetupTimeout, 10 s, as
// the TLS handshake of an accepted connection is; a timeout set bounds it
// instead. The Listener's timers run on real time beside real sockets,
// whose I/O a synctest bubble cannot wait for durably: the mechanism is
// tested with an explicit timeout (above and below), the default here.
func TestAcceptSetupTimeoutDefault(t *testing.T) {
	require.Equal(t, 10*time.Second, DefaultAcceptSetupTimeout)
	for _, d := range []time.Duration{0, -time.Second} {
		require.Equal(t, DefaultAcceptSetupTimeout, actors.AcceptSetupTimeout(d), "%v", d)
	}
	for _, d := range []time.Duration{time.Millisecond, 300 * time.Millisecond, time.Minute} {
		require.Equal(t, d, actors.AcceptSetupTimeout(d))
	}
}

// A peer that completes the handshake shortly before the deadline is
// delivered, and its connection stays up after the deadline has passed:
// the timer stopped at Ready.
func TestAcceptSetupTimeoutStopsAtReady(t *testing.T) {
	const timeout, hello = 1500 * time.Millisecond, time.Second
	st := &setupTimeouts{}
	ln := helloListen(t, st, WithEstablishmentTimeout(timeout))
	c := dialSilent(t, ln)
	dialed := time.Now()
	// the connection's setup starts after the dial returned: the hello
	// arrives at most `hello` into it, `timeout-hello` before its end
	time.Sleep(hello)
	_, err := c.Write([]byte("hello\n"))
	require.NoError(t, err)
	ctx := testCtx(t)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer s.Abort()

	// past the deadline, with margin
	<-time.After(time.Until(dialed.Add(timeout + 500*time.Millisecond)))
	select {
	case <-s.Done():
		t.Fatal("the connection ended after Ready: the setup deadline was not stopped")
	default:
	}
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(m.Data))
	require.NoError(t, s.Send(ctx, []byte("pong"), nil))
	b := make([]byte, 4)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	require.Equal(t, "pong", string(b))
	require.Zero(t, st.count())
}

// TestListenerStopEndsConnectionsInSetup: a connection whose handshake
// framer still waits for its peer when the Listener stops can never be
// delivered: Stop aborts it at once instead of leaving it to its setup
// timeout (a minute here, longer than the test's ctx). A connection
// received before the Stop is not touched.
func TestListenerStopEndsConnectionsInSetup(t *testing.T) {
	st := &setupTimeouts{}
	ln := helloListen(t, st, WithEstablishmentTimeout(time.Minute))
	silent := dialSilent(t, ln)
	// the listener has accepted silent once a later peer is received
	hello := dialSilent(t, ln)
	_, err := hello.Write([]byte("hello\n"))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer s.Abort()
	ln.Stop()
	<-ln.Done()
	requireEnded(t, silent)
	require.Zero(t, st.count(), "ended by the Stop, not by its setup timeout")
	require.Equal(t, StateEstablished, s.State(), "the connection received before the Stop lives on")
}
