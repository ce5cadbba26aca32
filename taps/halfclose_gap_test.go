package taps

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// A half-closed connection (the peer's end of stream is in, this side may
// still send) learns of the peer's full close where the stack shows it:
// it is Closed when the peer ended gracefully, a ConnectionError when it
// reset. (On TCP and TLS a peer that closes its socket after its FIN sends
// nothing: that is known only from the next write, see the README.)

// requireEndsWith waits for c's terminal event, which must come without
// a write or Close from this side, and checks it: Closed when wantErr is
// false, a ConnectionError otherwise.
func requireEndsWith(t *testing.T, c *Connection, closed <-chan struct{}, connErr <-chan error, wantErr bool) {
	t.Helper()
	select {
	case <-closed:
		require.False(t, wantErr, "Closed, not a ConnectionError")
		require.NoError(t, c.Err())
	case err := <-connErr:
		require.True(t, wantErr, "a ConnectionError, not Closed: %v", err)
		var ce *ConnectionError
		require.ErrorAs(t, err, &ce)
	case <-time.After(5 * time.Second):
		t.Fatalf("the peer's full close left the half-closed connection %v", c.State())
	}
	requireDone(t, c)
	require.Equal(t, StateClosed, c.State())
	err := c.Send(testCtx(t), []byte("too late"), nil)
	var se *SendError
	require.ErrorAs(t, err, &se, "no send after the terminal event")
}

// terminalEvents sets c's Closed and ConnectionError handlers.
func terminalEvents(c *Connection) (<-chan struct{}, <-chan error) {
	closed, connErr := make(chan struct{}, 1), make(chan error, 1)
	c.OnClosed(func(*Connection) { closed <- struct{}{} })
	c.OnConnectionError(func(_ *Connection, err error) { connErr <- err })
	return closed, connErr
}

// rawQUICHalfClose dials the QUIC listener ln with quic-go, sends request
// on a stream and ends it (FIN), and returns the session and the stream
// once the gotaps side has half-closed (s).
func rawQUICHalfClose(t *testing.T, ln *Listener, pki *testPKI, seen <-chan struct{}) (*quic.Conn, *quic.Stream, *Connection) {
	t.Helper()
	return rawQUICHalfCloseWith(t, ln, pki, seen, nil)
}

func rawQUICHalfCloseWith(t *testing.T, ln *Listener, pki *testPKI, seen <-chan struct{}, conf *quic.Config) (*quic.Conn, *quic.Stream, *Connection) {
	t.Helper()
	ctx := testCtx(t)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	qc, err := quic.DialAddr(ctx, ap.String(), &tls.Config{RootCAs: pki.pool, NextProtos: []string{"gotaps-test"}, ServerName: "localhost"}, conf)
	require.NoError(t, err)
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	str, err := qc.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, str.Close()) // FIN
	s := halfClosedServer(t, ln, seen, "request")
	return qc, str, s
}

func quicHalfCloseListener(t *testing.T) (*Listener, *testPKI, <-chan struct{}) {
	t.Helper()
	return quicHalfCloseListenerWith(t, quicOnly(t))
}

func quicHalfCloseListenerWith(t *testing.T, tp *TransportProperties) (*Listener, *testPKI, <-chan struct{}) {
	t.Helper()
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln, pki, seen
}

// QUIC: the peer closes its session gracefully (CONNECTION_CLOSE without
// error) after its stream's FIN: the half-closed connection is Closed.
func TestQUICPeerSessionCloseAfterItsFINClosesTheHalfClosedConnection(t *testing.T) {
	ln, pki, seen := quicHalfCloseListener(t)
	qc, _, s := rawQUICHalfClose(t, ln, pki, seen)
	closed, connErr := terminalEvents(s)
	require.NoError(t, qc.CloseWithError(0, ""))
	requireEndsWith(t, s, closed, connErr, false)
}

// QUIC: the peer closes its session with an error code after its FIN: a
// ConnectionError (as before; the reset watch of the half-closed stream).
func TestQUICPeerSessionErrorAfterItsFINIsAConnectionError(t *testing.T) {
	ln, pki, seen := quicHalfCloseListener(t)
	qc, _, s := rawQUICHalfClose(t, ln, pki, seen)
	closed, connErr := terminalEvents(s)
	require.NoError(t, qc.CloseWithError(7, "failed"))
	requireEndsWith(t, s, closed, connErr, true)
}

// QUIC: the peer stops reading gracefully (STOP_SENDING with the code of
// gotaps's own graceful end, as its Close sends once its linger is over)
// after its FIN, its session staying open: the half-closed connection is
// Closed.
func TestQUICPeerGracefulStopSendingAfterItsFINClosesTheHalfClosedConnection(t *testing.T) {
	ln, pki, seen := quicHalfCloseListener(t)
	_, str, s := rawQUICHalfClose(t, ln, pki, seen)
	closed, connErr := terminalEvents(s)
	str.CancelRead(3) // stacks.quicStreamStopped
	requireEndsWith(t, s, closed, connErr, false)
}

// QUIC with datagrams: after the peer's graceful STOP_SENDING the
// half-closed connection may still send datagrams on the session, so it
// stays Established (and they arrive); the session's graceful close then
// closes it.
func TestQUICDatagramsHalfClosedConnectionEndsWithThePeersSession(t *testing.T) {
	tp := quicOnly(t)
	require.NoError(t, tp.Require(PerMsgReliability))
	ln, pki, seen := quicHalfCloseListenerWith(t, tp)
	qc, str, s := rawQUICHalfCloseWith(t, ln, pki, seen, &quic.Config{EnableDatagrams: true})
	closed, connErr := terminalEvents(s)
	str.CancelRead(3) // stacks.quicStreamStopped
	ctx := testCtx(t)
	// datagrams sent after the STOP_SENDING still arrive (retried: they
	// may be lost), and the connection stays Established (nothing this
	// side shows tells that the STOP_SENDING is in: it was sent first)
	for i := 0; ; i++ {
		require.NoError(t, s.Send(ctx, []byte("datagram"), NewMessageContext().Reliable(false).Ordered(false)))
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		d, err := qc.ReceiveDatagram(rctx)
		cancel()
		if err == nil {
			require.Contains(t, string(d), "datagram")
			break
		}
		require.Less(t, i, 50, "no datagram from the half-closed connection")
	}
	require.Equal(t, StateEstablished, s.State())
	require.True(t, s.GetProperties().CanSend)
	require.NoError(t, qc.CloseWithError(0, ""))
	requireEndsWith(t, s, closed, connErr, false)
}

// QUIC between gotaps ends: the accepting side's Close sends its FIN and,
// when the initiating side has not replied with its own before the linger
// timeout, ends its stream (STOP_SENDING): the initiating side, half-closed
// meanwhile, is Closed without writing or closing.
func TestQUICPeerCloseLingerOverClosesTheHalfClosedConnection(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	lpre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(quicOnly(t)), WithLingerTimeout(50*time.Millisecond),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	lpre.AddFramer(framers.NewLengthPrefix())
	ln, err := lpre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ctx := testCtx(t)
	c, err := securePre(sys, ln, pki.clientSec(), quicOnly(t)).Initiate(ctx)
	require.NoError(t, err)
	closed, connErr := terminalEvents(c)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	require.NoError(t, s.Close())
	_, err = c.Receive(ctx) // the server's end of stream: half-closed
	require.ErrorIs(t, err, ErrClosed)
	requireEndsWith(t, c, closed, connErr, false)
	<-s.Done()
}

// unixHalfClosed dials the Unix listener ln with a raw socket, sends
// request and ends its sending side, and returns it once the gotaps side
// has half-closed (s).
func unixHalfClosed(t *testing.T) (*net.UnixConn, *Connection) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the peer's full close of a Unix socket is watched on Linux")
	}
	opt, seen := peerEndOfStream()
	sys := newTestSystem(t, opt)
	path, ln := unixListenTemp(t, sys, "halfclose.sock")
	t.Cleanup(ln.Stop)
	var d net.Dialer
	raw, err := d.DialContext(testCtx(t), "unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	_, err = raw.Write(frame("request"))
	require.NoError(t, err)
	require.NoError(t, raw.(*net.UnixConn).CloseWrite())
	s := halfClosedServer(t, ln, seen, "request")
	require.Equal(t, "unix", s.GetProperties().Stack)
	return raw.(*net.UnixConn), s
}

// Unix: the peer closes its socket after its end of stream, having read
// everything sent to it: the half-closed connection is Closed.
func TestUnixPeerCloseAfterItsEndOfStreamClosesTheHalfClosedConnection(t *testing.T) {
	raw, s := unixHalfClosed(t)
	closed, connErr := terminalEvents(s)
	require.NoError(t, s.Send(testCtx(t), []byte("reply"), nil))
	got, err := readFrame(raw)
	require.NoError(t, err)
	require.Equal(t, "reply", got)
	require.NoError(t, raw.Close())
	requireEndsWith(t, s, closed, connErr, false)
}

// Unix: the peer closes its socket after its end of stream with data sent
// to it unread (the kernel's ECONNRESET): a ConnectionError.
func TestUnixPeerCloseWithUnreadDataAfterItsEndOfStreamIsAConnectionError(t *testing.T) {
	raw, s := unixHalfClosed(t)
	closed, connErr := terminalEvents(s)
	// Sent: written, so on a Unix socket in the peer's receive queue
	require.NoError(t, s.Send(testCtx(t), []byte("never read"), nil))
	require.NoError(t, raw.Close())
	requireEndsWith(t, s, closed, connErr, true)
}
