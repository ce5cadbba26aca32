package taps

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// shutdownHuntCtx is a short ctx for calls that must not hang.
func shutdownHuntCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// requireShutdownErr: err is the documented error of a call on a shut-down
// System, or of one on an object that has ended: ErrSystemShutdown or
// ErrClosed, never a timeout.
func requireShutdownErr(t *testing.T, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	require.False(t, errors.Is(err, context.DeadlineExceeded), "%s: %v (waited for its ctx)", what, err)
	require.True(t, errors.Is(err, ErrSystemShutdown) || errors.Is(err, ErrClosed),
		"%s: %v, want ErrSystemShutdown or ErrClosed", what, err)
}

// TestShutdownHuntUseAfterShutdown: every call on a Preconnection, a
// Listener and a Connection of a shut-down System returns at once with a
// typed error (or, for the ones without an error, returns), never hangs or
// panics.
func TestShutdownHuntUseAfterShutdown(t *testing.T) {
	sys := NewSystem()
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	lpre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	require.NoError(t, sys.Shutdown(testCtx(t)))

	ctx := shutdownHuntCtx(t, 2*time.Second)
	_, err := pre.Initiate(ctx)
	requireShutdownErr(t, err, "Initiate")
	_, err = pre.InitiateWithSend(ctx, []byte("x"), nil)
	requireShutdownErr(t, err, "InitiateWithSend")
	_, err = lpre.Listen(ctx)
	requireShutdownErr(t, err, "Listen")
	_, err = ln.Accept(ctx)
	requireShutdownErr(t, err, "Accept")
	require.Error(t, ln.SetNewConnectionLimit(3), "SetNewConnectionLimit")
	ln.Stop()
	for _, conn := range []*Connection{c, s} {
		requireShutdownErr(t, conn.Send(ctx, []byte("x"), nil), "Send")
		_, err = conn.Receive(ctx)
		requireShutdownErr(t, err, "Receive")
		_, err = conn.Clone(ctx)
		require.Error(t, err, "Clone")
		require.False(t, errors.Is(err, context.DeadlineExceeded), "Clone: %v", err)
		require.Error(t, conn.SetProperty(ConnPriority, 3), "SetProperty")
		_, err = conn.GetPropertiesContext(ctx)
		requireShutdownErr(t, err, "GetPropertiesContext")
		require.NotNil(t, conn.GetProperties())
		_, err = conn.GroupedConnections(ctx)
		requireShutdownErr(t, err, "GroupedConnections")
		sent := make(chan error, 1)
		conn.SendAsync([]byte("x"), nil, func(_ *Connection, err error) { sent <- err })
		select {
		case err := <-sent:
			requireShutdownErr(t, err, "SendAsync")
		case <-ctx.Done():
			t.Fatal("SendAsync's handler never ran")
		}
		_ = conn.Close()
		conn.Abort()
		conn.CloseGroup()
		conn.AbortGroup()
		require.Equal(t, StateClosed, conn.State())
	}
	require.NoError(t, ctx.Err(), "the calls waited for their ctx")
}

// TestShutdownHuntConcurrentCallsWait: Shutdown "waits until none of its
// goroutines is left", whoever calls it: a second call, made while the
// first is still closing a Connection whose peer reads nothing, returns
// only once the System is down, not at once with nil.
func TestShutdownHuntConcurrentCallsWait(t *testing.T) {
	sys := NewSystem()
	sps := newStalledPeers(t, sys, 1)
	conn := sps[0].conn
	first := make(chan error, 1)
	ctx1, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started := make(chan struct{})
	go func() {
		close(started)
		first <- sys.Shutdown(ctx1)
	}()
	<-started
	for !sys.s.IsShutdown() {
		// the first call has begun once the System says so
		select {
		case <-first:
			t.Fatal("the first Shutdown returned before the System was down")
		default:
		}
		runtime.Gosched()
	}
	require.NoError(t, sys.Shutdown(testCtx(t)))
	select {
	case <-conn.Done():
	default:
		t.Fatal("the second Shutdown returned while a Connection of the System was still open")
	}
	err := <-first
	if err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
}

// TestShutdownHuntCancelledCtxAbortsAndReports: Shutdown with a ctx that
// has ended already, while a peer that reads nothing keeps a Connection's
// graceful close from finishing, aborts what is left (the Connection ends
// with an error, its peer sees the end), reports ctx's error, and leaves
// the Listener's port free.
func TestShutdownHuntCancelledCtxAbortsAndReports(t *testing.T) {
	sys := NewSystem()
	sp := newStalledPeers(t, sys, 1)[0]
	ln := listenLoopback(t, sys)
	lap := listenerAddr(t, ln)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := sys.Shutdown(ctx)
	require.ErrorIs(t, err, context.Canceled, "Shutdown tells that it aborted")
	select {
	case <-sp.conn.Done():
	default:
		t.Fatal("Shutdown returned, the Connection is not Closed")
	}
	require.Error(t, sp.conn.Err(), "an aborted Connection")
	<-ln.Done()
	// the peer sees the end once it reads what was sent
	require.NoError(t, sp.peer.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = io.Copy(io.Discard, sp.peer)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the peer still holds an open connection: %v", err)
	l2, err := net.Listen("tcp", lap.String())
	require.NoError(t, err, "the Listener's port is free again")
	l2.Close()
	require.NoError(t, sys.Shutdown(ctx), "a later Shutdown returns nil")
}

// huntEnds counts each Connection's terminal events (Closed,
// ConnectionError, EstablishmentError).
type huntEnds struct {
	mu sync.Mutex
	n  map[uint64]int
}

func (e *huntEnds) end(c *Connection) {
	e.mu.Lock()
	e.n[c.ID()]++
	e.mu.Unlock()
}

func (e *huntEnds) install(p *Preconnection) *Preconnection {
	p.OnClosed(e.end)
	p.OnConnectionError(func(c *Connection, _ error) { e.end(c) })
	p.OnEstablishmentError(func(c *Connection, _ error) { e.end(c) })
	return p
}

// TestShutdownHuntEverythingAtOnce: Shutdown of a System with, at the
// same time, a TLS Initiate racing toward a peer that never answers, a
// blocked Receive, a blocked Send (peer not reading), a lingering Close,
// a half-closed Connection, one re-establishing in its backoff, TCP, TLS,
// QUIC and UDP Listeners with queued unaccepted connections, a
// Rendezvous in progress and a QUIC session with several streams: every
// blocked call returns at once with a typed error, every Connection's
// terminal event fires exactly once, no fd is left and the ports are free
// again (TestMain checks the goroutines).
func TestShutdownHuntEverythingAtOnce(t *testing.T) {
	baseFDs := openFDs(t)
	sys := NewSystem()
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ends := &huntEnds{n: map[uint64]int{}}
	var conns []*Connection
	type blocked struct {
		what string
		err  chan error
	}
	var calls []blocked
	block := func(what string, fn func() error) {
		b := blocked{what, make(chan error, 1)}
		calls = append(calls, b)
		go func() { b.err <- fn() }()
	}
	var raws []io.Closer
	defer func() {
		for _, r := range raws {
			r.Close()
		}
	}()
	rawTCP := func() (net.Listener, *RemoteEndpoint) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		raws = append(raws, l)
		return l, loopbackRemote(l.Addr().(*net.TCPAddr).AddrPort())
	}

	// Establishing: TLS toward a listening socket that never accepts
	_, silent := rawTCP()
	tlsPre := ends.install(NewPreconnection(WithSystem(sys), WithRemoteEndpoint(silent),
		WithSecurityParameters(pki.clientSec()), WithTransportProperties(prohibit(t, Multistreaming)),
		WithEstablishmentTimeout(time.Minute)))
	block("Initiate (establishing)", func() error { _, err := tlsPre.Initiate(ctx); return err })

	// a TCP Listener: a blocked Receive, a half-closed pair, a queued
	// connection nobody accepts
	lnPre := ends.install(NewPreconnection(WithSystem(sys),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))))
	lnPre.AddFramer(framers.NewLengthPrefix())
	ln, err := lnPre.Listen(ctx)
	require.NoError(t, err)
	tcpAP := listenerAddr(t, ln)
	dialPre := ends.install(NewPreconnection(WithSystem(sys), WithRemoteEndpoint(loopbackRemote(tcpAP))))
	dialPre.AddFramer(framers.NewLengthPrefix())
	c1, err := dialPre.Initiate(ctx)
	require.NoError(t, err)
	s1, err := ln.Accept(ctx)
	require.NoError(t, err)
	block("Receive (established)", func() error { _, err := c1.Receive(ctx); return err })
	c2, err := dialPre.Initiate(ctx)
	require.NoError(t, err)
	s2, err := ln.Accept(ctx)
	require.NoError(t, err)
	require.NoError(t, c2.Send(ctx, []byte("bye"), NewMessageContext().Final(true)))
	_, err = s2.Receive(ctx)
	require.NoError(t, err)
	block("Receive (half-closed)", func() error { _, err := c2.Receive(ctx); return err })
	c3, err := dialPre.Initiate(ctx) // queued at ln
	require.NoError(t, err)
	conns = append(conns, c1, s1, c2, s2, c3)

	// a peer that reads nothing: a blocked Send, a lingering Close
	rawLn, rawR := rawTCP()
	stallPre := ends.install(NewPreconnection(WithSystem(sys), WithRemoteEndpoint(rawR),
		WithSendBuffer(64<<10), WithLingerTimeout(time.Hour)))
	c4, err := stallPre.Initiate(ctx)
	require.NoError(t, err)
	c5, err := stallPre.Initiate(ctx)
	require.NoError(t, err)
	for range 2 {
		p, err := rawLn.Accept()
		require.NoError(t, err)
		raws = append(raws, p)
	}
	big := make([]byte, 16<<20)
	block("Send (peer not reading)", func() error { return c4.Send(ctx, big, nil) })
	c5.SendAsync(big, nil, func(*Connection, error) {})
	require.NoError(t, c5.Close())
	require.Equal(t, StateClosing, c5.State())
	conns = append(conns, c4, c5)

	// re-establishing, in a long backoff
	reLn, reR := rawTCP()
	rePre := ends.install(NewPreconnection(WithSystem(sys), WithRemoteEndpoint(reR),
		WithReestablishment(ReestablishPolicy{Initial: time.Minute})))
	reing := make(chan struct{}, 1)
	c6, err := rePre.Initiate(ctx)
	require.NoError(t, err)
	c6.OnReestablishing(func(*Connection, error, int) {
		select {
		case reing <- struct{}{}:
		default:
		}
	})
	p6, err := reLn.Accept()
	require.NoError(t, err)
	p6.Close()
	<-reing
	block("Receive (re-establishing)", func() error { _, err := c6.Receive(ctx); return err })
	conns = append(conns, c6)

	// TLS and QUIC Listener (one port), queued connections on both, and a
	// QUIC session with three streams
	secLnPre := ends.install(NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))))
	secLnPre.AddFramer(framers.NewLengthPrefix())
	secLn, err := secLnPre.Listen(ctx)
	require.NoError(t, err)
	secAP := listenerAddr(t, secLn)
	for _, tp := range []*TransportProperties{prohibit(t, Multistreaming), quicOnly(t)} {
		p := ends.install(securePre(sys, secLn, pki.clientSec(), tp))
		c, err := p.Initiate(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	q := conns[len(conns)-1]
	for range 2 {
		cl, err := q.Clone(ctx)
		require.NoError(t, err)
		// a clone has no handlers of its own: set here, while it is open
		cl.OnClosed(ends.end)
		cl.OnConnectionError(func(c *Connection, _ error) { ends.end(c) })
		conns = append(conns, cl)
		block("Receive (QUIC stream)", func() error { _, err := cl.Receive(ctx); return err })
	}

	// a UDP Listener with a queued peer
	udpLn, udpAP := udpListen(t, sys)
	pc := rawUDP(t)
	_, err = pc.WriteToUDPAddrPort([]byte("hi"), udpAP)
	require.NoError(t, err)

	// a Rendezvous toward nobody
	rvPorts := freeTCPPorts(t, 2)
	rvPre := ends.install(NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(rvPorts[0])),
		WithRemoteEndpoint(rvRemote(rvPorts[1])), WithEstablishmentTimeout(time.Minute)))
	block("Rendezvous", func() error { _, err := rvPre.Rendezvous(ctx); return err })
	block("Accept (TCP)", func() error {
		// c3 is queued: take it, then wait for one more
		if _, err := ln.Accept(ctx); err != nil {
			return err
		}
		_, err := ln.Accept(ctx)
		return err
	})

	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = sys.Shutdown(sctx)
	took := time.Since(start)
	if err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.Less(t, took, 3*time.Second, "Shutdown took %v", took)
	for _, b := range calls {
		select {
		case err := <-b.err:
			requireShutdownErr(t, err, b.what)
			if b.what == "Initiate (establishing)" {
				require.ErrorIs(t, err, ErrSystemShutdown, "an establishment the Shutdown ended says so")
			}
		case <-shutdownHuntCtx(t, 2*time.Second).Done():
			t.Fatalf("%s still blocked after Shutdown", b.what)
		}
	}
	for _, l := range []*Listener{ln, secLn, udpLn} {
		<-l.Done()
	}
	for i, c := range conns {
		// Done closes after the terminal handler, which Shutdown waits
		// for (TestShutdownHuntWaitsForHandlers)
		select {
		case <-c.Done():
		default:
			t.Fatalf("connection %d (%d) not Done when Shutdown returned", i, c.ID())
		}
	}
	ends.mu.Lock()
	for i, c := range conns {
		require.Equal(t, 1, ends.n[c.ID()], "terminal events of connection %d (%d)", i, c.ID())
	}
	for id, n := range ends.n {
		require.Equal(t, 1, n, "terminal events of connection %d", id)
	}
	ends.mu.Unlock()

	for _, addr := range []string{tcpAP.String(), secAP.String(), net.JoinHostPort("127.0.0.1", itoa(rvPorts[0]))} {
		l, err := net.Listen("tcp", addr)
		require.NoError(t, err, "TCP port %s free again", addr)
		l.Close()
	}
	for _, addr := range []string{secAP.String(), udpAP.String()} {
		u, err := net.ListenPacket("udp", addr)
		require.NoError(t, err, "UDP port %s free again", addr)
		u.Close()
	}
	for _, r := range raws {
		r.Close()
	}
	raws = nil
	pc.Close()
	require.LessOrEqual(t, openFDs(t), baseFDs, "fds left")
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestShutdownHuntWaitsForHandlers: Shutdown "waits until none of its
// goroutines is left", so a Connection's terminal handler has run (and its
// Done is closed) when Shutdown returns. It returned while the handler
// goroutine (actors.serialExec) still ran: the System did not count it.
func TestShutdownHuntWaitsForHandlers(t *testing.T) {
	sys := NewSystem()
	raw, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	release := make(chan struct{})
	ran := make(chan struct{})
	pre.OnConnectionError(func(*Connection, error) { close(ran); <-release })
	pre.OnClosed(func(*Connection) { close(ran); <-release })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	peer, err := raw.Accept()
	require.NoError(t, err)
	defer peer.Close()
	done := make(chan error, 1)
	go func() { done <- sys.Shutdown(testCtx(t)) }()
	<-ran
	select {
	case <-done:
		close(release)
		t.Fatal("Shutdown returned while a terminal handler of its Connection was still running")
	case <-shutdownHuntCtx(t, 200*time.Millisecond).Done():
	}
	close(release)
	require.NoError(t, <-done)
	<-c.Done()
}

// TestShutdownHuntFromAHandler: a handler that shuts its System down (an
// application ending when its last connection closes) does not wait for
// itself: Shutdown returns, and the other connection's handler has run.
func TestShutdownHuntFromAHandler(t *testing.T) {
	sys := NewSystem()
	raw, r := rawListener(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	otherRan := make(chan struct{})
	other, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	other.OnClosed(func(*Connection) { close(otherRan) })
	other.OnConnectionError(func(*Connection, error) { close(otherRan) })
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	for range 2 {
		peer, err := raw.Accept()
		require.NoError(t, err)
		defer peer.Close()
	}
	shut := make(chan error, 1)
	c.OnConnectionError(func(*Connection, error) { shut <- sys.Shutdown(testCtx(t)) })
	c.Abort()
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-testCtx(t).Done():
		t.Fatal("Shutdown called from a handler did not return")
	}
	select {
	case <-otherRan:
	default:
		t.Fatal("Shutdown returned before the other connection's terminal handler ran")
	}
	<-c.Done()
}
