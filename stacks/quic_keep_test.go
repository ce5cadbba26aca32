package stacks

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/stretchr/testify/require"
)

// TestQUICAcceptedConnectionOutlivesItsLastStream: the dialing side opens
// a stream it does not write on yet (the peer does not know of it), and
// the connection's first stream ends gracefully on both sides, the
// accepting side as the active closer (which closes a dialed connection at
// once). The accepting side keeps the connection: the stream arrives with
// its first data, later, and is answered.
func TestQUICAcceptedConnectionOutlivesItsLastStream(t *testing.T) {
	ctx := testCtx(t)
	cli, srv := quicPair(t)
	late, err := cli.OpenStream(ctx) // unannounced: nothing written
	require.NoError(t, err)
	require.NoError(t, srv.CloseWrite())
	_, err = io.ReadAll(cli)
	require.NoError(t, err)
	require.NoError(t, cli.Close()) // the dialing side keeps late
	_, err = io.ReadAll(srv)
	require.NoError(t, err)
	require.NoError(t, srv.Close()) // active closer, and the last stream this side knows of
	select {
	case <-srv.c.done:
		t.Fatal("the accepting side closed the connection with its last known stream")
	default:
	}

	_, err = late.Write([]byte("late"))
	require.NoError(t, err)
	require.NoError(t, late.CloseWrite())
	srv2, err := srv.AcceptStream(ctx)
	require.NoError(t, err, "the accepting side takes the peer's stream after its last one closed")
	answerStream(t, srv2, late, "late", "answer")
	// the dialing side's last stream, as the active closer, ends the
	// connection at once
	require.NoError(t, late.Close())
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, srv), &appErr)
	require.True(t, appErr.Remote, "closed by the dialing side")
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	waitQUICDone(t, cli)
}

// answerStream reads srv to its end, which must be request, answers with
// response and closes srv; cli, the peer's end, must then read response to
// its end.
func answerStream(t *testing.T, srv Transport, cli io.Reader, request, response string) {
	t.Helper()
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, request, string(got))
	_, err = srv.Write([]byte(response))
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	got, err = io.ReadAll(cli)
	require.NoError(t, err)
	require.Equal(t, response, string(got))
}

// TestQUICAcceptedConnectionWithoutStreamsEndsAfterTheIdleTimeout: a raw
// quic-go peer that keeps its connection open without streams, with
// keep-alives, as the accepting side does (neither side's idle timeout
// can pass): the accepting side still closes the connection once it has
// had no stream for the idle timeout (Options.ConnTimeout), not before,
// and a stream the peer opens meanwhile restarts that wait.
func TestQUICAcceptedConnectionWithoutStreamsEndsAfterTheIdleTimeout(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	const idle = 600 * time.Millisecond
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig(),
		ConnTimeout: idle, KeepAlive: idle / 6})
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptAsync(ln)
	tlsConf := pki.clientConfig()
	tlsConf.NextProtos = []string{DefaultQUICALPN}
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), tlsConf,
		&quic.Config{KeepAlivePeriod: idle / 6, MaxIdleTimeout: idle})
	require.NoError(t, err)
	defer conn.CloseWithError(0, "")

	// roundTrip opens a stream, which the accepting side answers and
	// closes; it returns when the accepting side's stream has closed
	roundTrip := func(accept func() Transport) {
		str, err := conn.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = str.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, str.Close())
		answerStream(t, accept(), str, "ping", "pong")
	}
	var first Transport
	roundTrip(func() Transport {
		first = awaitAccepted(t, ctx, accepted, "the first stream")
		return first
	})
	roundTrip(func() Transport { // the connection outlived its last stream
		s, err := first.(MultiStream).AcceptStream(ctx)
		require.NoError(t, err)
		return s
	})
	streamless := time.Now()
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * idle):
		t.Fatal("the accepting side keeps a connection without streams past its idle timeout")
	}
	// the accepting side's timer started when its stream closed, a little
	// before roundTrip returned here: a tenth of the timeout of slack
	require.GreaterOrEqual(t, time.Since(streamless), idle*9/10, "closed before the idle timeout")
	var appErr *quic.ApplicationError
	require.ErrorAs(t, context.Cause(conn.Context()), &appErr, "closed by the accepting side, not idle")
	require.True(t, appErr.Remote)
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	waitQUICDone(t, first)
}

// TestQUICListenerCloseEndsItsStreamlessConnections: once the listener is
// closed, an accepted connection without streams is not kept for the
// peer's next stream: it ends after the linger (well within the idle
// timeout, quic-go's default 30 s here). One that still has a stream
// carries on, and ends with its last stream as a dialed one does (the
// linger of the passive closer here).
func TestQUICListenerCloseEndsItsStreamlessConnections(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	defer ln.Close()
	dial := func(what string) (cli, srv *quicStream) {
		c, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
		require.NoError(t, err)
		_, err = c.Write([]byte{0})
		require.NoError(t, err)
		s := awaitAccepted(t, ctx, acceptAsync(ln), what)
		_, err = io.ReadFull(s, make([]byte, 1))
		require.NoError(t, err)
		return c.(*quicStream), s.(*quicStream)
	}
	idleCli, idleSrv := dial("the connection that goes without streams")
	busyCli, busySrv := dial("the connection that keeps its stream")

	// the accepting side's only stream closes; the connection is kept for
	// the peer's next stream while the listener is open
	require.NoError(t, idleSrv.Close())
	next, err := idleCli.OpenStream(ctx)
	require.NoError(t, err)
	_, err = next.Write([]byte("next"))
	require.NoError(t, err)
	require.NoError(t, next.Close())
	s, err := idleSrv.AcceptStream(ctx)
	require.NoError(t, err, "the connection outlived its last stream")
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	require.Equal(t, "next", string(got))
	require.NoError(t, s.Close())

	require.NoError(t, ln.Close())
	select {
	case <-idleCli.c.done:
	case <-time.After(5 * time.Second): // the linger is at most quicMaxLinger
		t.Fatal("the connection without streams outlived its listener")
	}
	var appErr *quic.ApplicationError
	require.ErrorAs(t, context.Cause(idleCli.c.conn.Context()), &appErr)
	require.True(t, appErr.Remote, "closed by the accepting side")
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	require.NoError(t, idleCli.Close())
	waitQUICDone(t, idleSrv)

	// the other connection carries on, and its last stream's close ends it
	_, err = busyCli.Write([]byte("busy"))
	require.NoError(t, err)
	got = make([]byte, 4)
	_, err = io.ReadFull(busySrv, got)
	require.NoError(t, err)
	require.Equal(t, "busy", string(got))
	require.NoError(t, busySrv.Close())
	_, err = io.ReadAll(busyCli)
	require.NoError(t, err)
	require.ErrorAs(t, closeCause(t, busyCli), &appErr, "the accepting side's linger closes the connection")
	require.True(t, appErr.Remote)
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	require.NoError(t, busyCli.Close())
	waitQUICDone(t, busySrv)
}
