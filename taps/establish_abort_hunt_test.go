package taps

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// --- a panic in the connection actor during establishment ---

var errEstablishHuntBug = errors.New("establish hunt: transport bug")

// panickyHandshakeStack dials with its Stack and hands out transports whose
// HandshakeComplete panics: the connection actor calls it while it takes
// the transport, before Ready (no user callback runs in the connection
// actor during establishment: framers run in actors of their own, TLS
// callbacks and stacks are contained where they run; this internal hook
// stands for any bug there).
type panickyHandshakeStack struct{ stacks.Stack }

type panickyHandshakeTransport struct{ stacks.Transport }

func (s panickyHandshakeStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.Stack.Dial(ctx, r, o)
	if err != nil {
		return nil, err
	}
	return panickyHandshakeTransport{t}, nil
}

func (panickyHandshakeTransport) HandshakeComplete() <-chan struct{} { panic(errEstablishHuntBug) }

// A panic inside the connection actor before Ready is an EstablishmentError
// wrapping the *PanicError (as a framer's panic in Start is), not a bare
// ErrClosed.
func TestEstablishHuntConnectionActorPanicIsEstablishmentError(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(drainListener(t))))
	pre.stackList = []stacks.Stack{panickyHandshakeStack{Stack: stacks.TCP()}}
	handlerErr := make(chan error, 1)
	pre.OnEstablishmentError(func(_ *Connection, err error) { handlerErr <- err })
	pre.OnConnectionError(func(_ *Connection, err error) { t.Errorf("ConnectionError before Ready: %v", err) })
	c, err := pre.Initiate(testCtx(t))
	require.Nil(t, c)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	var pe *PanicError
	require.ErrorAs(t, err, &pe, "the panic is kept: %v", err)
	require.ErrorIs(t, err, errEstablishHuntBug)
	select {
	case err = <-handlerErr:
		require.ErrorAs(t, err, &pe, "the EstablishmentError handler gets the panic too")
	case <-testCtx(t).Done():
		t.Fatal("no EstablishmentError event")
	}
}

// --- the peer aborts a half-closed connection ---

// waitEnded waits (at most bound) for s to end, and returns how long it
// took.
func waitEnded(t *testing.T, s *Connection, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-s.Done():
	case <-timer.C:
		t.Fatalf("the half-closed connection did not end within %v of the peer's Abort (state %v)", bound, s.State())
	}
	return time.Since(start)
}

// requireAbortEndsHalfClosed takes the server's half-closed Connection
// (after c's Final "request"), aborts c, and requires the server's
// Connection to end at once with a ConnectionError.
func requireAbortEndsHalfClosed(t *testing.T, ln *Listener, seen <-chan struct{}, c *Connection) {
	t.Helper()
	s := halfClosedServer(t, ln, seen, "request")
	c.Abort()
	<-c.Done()
	took := waitEnded(t, s, 2*time.Second)
	t.Logf("the server's connection ended %v after the client's Abort: %v", took, s.Err())
	var ce *ConnectionError
	require.ErrorAs(t, s.Err(), &ce, "a reset after FIN is a failure: %v", s.Err())
}

// abortAfterSecureFinal: a client over stack (selected by props) sends a
// Final "request" to a secure Listener, then aborts; the server's
// half-closed Connection must end at once with a ConnectionError.
func abortAfterSecureFinal(t *testing.T, props func(*testing.T) *TransportProperties, stack string) {
	t.Helper()
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	ctx := testCtx(t)
	ln := quicListen(t, ctx, sys, pki, props(t))
	c, err := securePre(sys, ln, pki.clientSec(), props(t)).Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, stack, c.GetProperties().Stack)
	require.NoError(t, c.Send(ctx, []byte("request"), NewMessageContext().Final(true)))

	requireAbortEndsHalfClosed(t, ln, seen, c)
}

// Over QUIC: the client's Final message is its stream's FIN (the server's
// Connection half-closes), then the client aborts (RESET_STREAM,
// STOP_SENDING, and the session's CONNECTION_CLOSE as it was its last
// stream). The server's Connection ends at once with a ConnectionError:
// a reset is a failure, not a clean close.
func TestAbortHuntQUICFinalThenAbortEndsHalfClosedPeer(t *testing.T) {
	abortAfterSecureFinal(t, quicOnly, "quic")
}

// The same with a QUIC session that carries another stream: the client's
// Abort resets only its stream (no CONNECTION_CLOSE), and the server's
// half-closed Connection on it still ends at once.
func TestAbortHuntQUICFinalThenAbortOneOfTwoStreams(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	ln := quicListen(t, testCtx(t), sys, pki, quicOnly(t))
	ctx := testCtx(t)
	other, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, other.Send(ctx, []byte("keep the session"), nil))
	otherSrv, err := ln.Accept(ctx)
	require.NoError(t, err)
	c, err := other.Clone(ctx) // a second stream of the same session
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("request"), NewMessageContext().Final(true)))

	requireAbortEndsHalfClosed(t, ln, seen, c)
	require.Equal(t, StateEstablished, otherSrv.State(), "the session's other stream goes on")
	other.Abort()
	otherSrv.Abort()
}

// Over TCP: the client's Final message is its FIN, its Abort an RST. The
// server's half-closed Connection ends at once with a ConnectionError.
func TestAbortHuntTCPFinalThenAbortEndsHalfClosedPeer(t *testing.T) {
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	defer ln.Stop()
	ctx := testCtx(t)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	require.Equal(t, "tcp", c.GetProperties().Stack)
	require.NoError(t, c.Send(ctx, []byte("request"), NewMessageContext().Final(true)))

	requireAbortEndsHalfClosed(t, ln, seen, c)
}

// Over TLS: the client's Final message is its close_notify, its Abort an
// RST of the TCP connection under TLS. The server's half-closed
// Connection ends at once with a ConnectionError.
func TestAbortHuntTLSFinalThenAbortEndsHalfClosedPeer(t *testing.T) {
	abortAfterSecureFinal(t, tlsOnlyProps, "tls")
}
