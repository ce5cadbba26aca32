package taps

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// BUG (the TLS handshake of an accepted connection ignored the
// establishment timeout): WithEstablishmentTimeout on a Listener bounds
// the setup of each connection it accepts (its framers' handshakes), but
// the TLS handshake before it (and QUIC's) kept the stack's fixed 10 s:
// a TLS peer that connected and sent nothing, or stopped halfway through
// its ClientHello, held its socket and one of the TLS listener's
// handshake places for 10 s whatever the Listener asked for. The
// Listener's establishment timeout (else DefaultAcceptSetupTimeout, 10 s)
// now bounds those handshakes too.
func TestListenerTLSHandshakeBoundedByEstablishmentTimeout(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln, err := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithProtocols("tls"),
		WithEstablishmentTimeout(300*time.Millisecond),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })

	start := time.Now()
	silent := dialSilent(t, ln)
	// a TLS record header announcing a ClientHello, and nothing after it
	halfway := dialSilent(t, ln)
	_, err = halfway.Write([]byte{0x16, 0x03, 0x01, 0x01, 0x00})
	require.NoError(t, err)
	// requireEnded waits 5 s, half the stack's own 10 s
	requireEnded(t, silent)
	requireEnded(t, halfway)
	require.Less(t, time.Since(start), 5*time.Second)

	// a client that completes its handshake is still received
	c, err := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithProtocols("tls"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(listenerAddr(t, ln).Port())),
		WithResolver(loopbackOnly)).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	require.Equal(t, "tls", s.GetProperties().Stack)
}

// The QUIC handshake of an accepted connection is bounded likewise: a
// client that stalls before its Finished (its certificate check blocks,
// so it sends nothing) for longer than the Listener's establishment
// timeout (300 ms) is dropped by the Listener, which never receives its
// stream; with the stack's 10 s bound it completed the handshake once the
// client went on, and its stream was delivered.
func TestListenerQUICHandshakeBoundedByEstablishmentTimeout(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	ln, err := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithEstablishmentTimeout(300*time.Millisecond),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })

	ctx := testCtx(t)
	stalled := make(chan struct{})
	release := make(chan struct{})
	conf := &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "localhost",
		VerifyConnection: func(tls.ConnectionState) error {
			close(stalled)
			<-release
			return nil
		}}
	type dialed struct {
		qc  *quic.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		qc, err := quic.DialAddr(ctx, listenerAddr(t, ln).String(), conf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
		done <- dialed{qc, err}
	}()
	<-stalled
	// longer than the Listener's handshake bound, well within the stack's
	time.AfterFunc(1500*time.Millisecond, func() { close(release) })
	d := <-done
	if d.err == nil {
		defer d.qc.CloseWithError(0, "")
		if str, err := d.qc.OpenStreamSync(ctx); err == nil {
			_, _ = str.Write([]byte("hello"))
		}
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := ln.Accept(actx)
	if err == nil {
		s.Abort()
		<-s.Done()
	}
	require.ErrorIs(t, err, context.DeadlineExceeded, "the Listener received a connection whose handshake outlasted its establishment timeout")
}

// TestListenerTLSHandshakesAheadOfTheBacklog pins what the docs of
// WithAcceptBacklog and Listener say of TLS (they said new peers wait in
// the kernel's listen backlog at the bound, costing the process nothing):
// the TLS listener completes the handshakes of further peers ahead of the
// bound (up to 128), so with a backlog of 1 and nothing taken, three
// peers all complete their handshake while the Listener holds one
// connection and accepts no more; Accept then takes all three in turn.
func TestListenerTLSHandshakesAheadOfTheBacklog(t *testing.T) {
	opt, received := receivedTracer()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	ln, err := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithProtocols("tls"),
		WithAcceptBacklog(1),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })
	ctx := testCtx(t)
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "localhost"}}
	for i := range 3 {
		c, err := d.DialContext(ctx, "tcp", listenerAddr(t, ln).String())
		require.NoError(t, err, "peer %d: its handshake completes ahead of the backlog", i)
		t.Cleanup(func() { _ = c.Close() })
	}
	waitChan(t, received, "the first ConnectionReceived")
	held, accepting := ln.q.Held()
	require.Equal(t, 1, held)
	require.False(t, accepting, "at the bound")
	for i := range 3 {
		s, err := ln.Accept(ctx)
		require.NoError(t, err, "connection %d", i)
		require.Equal(t, "tls", s.GetProperties().Stack)
		s.Abort()
		<-s.Done()
	}
}
