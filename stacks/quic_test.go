package stacks

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/stretchr/testify/require"
)

func TestQUICSecondStreamReachesAcceptStream(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptAsync(ln)
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	_, err = cli.Write([]byte("first"))
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	srv := r.t
	buf := make([]byte, 5)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)
	require.Equal(t, "first", string(buf))

	info, err := cli.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, DefaultQUICALPN, info.ALPN)
	require.False(t, info.Datagrams)

	cli2, err := cli.(MultiStream).OpenStream(ctx)
	require.NoError(t, err)
	_, err = cli2.Write([]byte("second"))
	require.NoError(t, err)
	require.NoError(t, cli2.CloseWrite())
	srv2, err := srv.(MultiStream).AcceptStream(ctx)
	require.NoError(t, err)
	got, err := io.ReadAll(srv2)
	require.NoError(t, err)
	require.Equal(t, "second", string(got))

	// closing one stream keeps the connection for the other
	require.NoError(t, srv2.Close())
	require.NoError(t, cli2.Close())
	_, err = srv.Write([]byte("still"))
	require.NoError(t, err)
	_, err = io.ReadFull(cli, buf)
	require.NoError(t, err)
	require.Equal(t, "still", string(buf))
	require.NoError(t, cli.Close())
	require.NoError(t, srv.Close())
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}

func TestQUICDatagrams(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig(), QUICDatagrams: true})
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptAsync(ln)
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig(), QUICDatagrams: true})
	require.NoError(t, err)
	_, err = cli.Write([]byte("s"))
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	srv := r.t
	info, err := cli.(SocketInfo).Info()
	require.NoError(t, err)
	require.True(t, info.Datagrams)
	require.NoError(t, cli.(Datagrams).SendDatagram([]byte("dgram")))
	got, err := srv.(Datagrams).ReceiveDatagram(ctx)
	require.NoError(t, err)
	require.Equal(t, "dgram", string(got))
	require.Error(t, cli.(Datagrams).SendDatagram(make([]byte, 5000)), "larger than a packet")
	require.NoError(t, cli.Abort())
	require.NoError(t, srv.Abort())
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}

// quicPair dials a QUIC connection to a fresh listener; the client writes
// one byte first so that the listener sees the stream, and the server
// consumes it. It returns both first streams.
func quicPair(t *testing.T) (cli, srv *quicStream) {
	t.Helper()
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := acceptAsync(ln)
	c, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	_, err = c.Write([]byte{0})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	_, err = io.ReadFull(r.t, make([]byte, 1))
	require.NoError(t, err)
	return c.(*quicStream), r.t.(*quicStream)
}

func TestQUICTryWriteBuffersQueuesSmallBatches(t *testing.T) {
	cli, srv := quicPair(t)
	// a small batch of several pieces is queued at once, in order
	b := net.Buffers{[]byte("head:"), []byte("body"), nil, []byte("!")}
	blocked, err := cli.TryWriteBuffers(&b)
	require.NoError(t, err)
	require.False(t, blocked)
	require.Empty(t, b)
	got := make([]byte, len("head:body!"))
	_, err = io.ReadFull(srv, got)
	require.NoError(t, err)
	require.Equal(t, "head:body!", string(got))

	// a batch larger than quicTryWriteMax is left to a blocking write
	large := bytes.Repeat([]byte("x"), quicTryWriteMax+1)
	b = net.Buffers{[]byte("hdr"), large}
	blocked, err = cli.TryWriteBuffers(&b)
	require.NoError(t, err)
	require.True(t, blocked)
	require.Len(t, b, 2, "nothing taken")
	done := make(chan error, 1)
	go func() { _, err := b.WriteTo(cli); done <- err }()
	got = make([]byte, 3+len(large))
	_, err = io.ReadFull(srv, got)
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Empty(t, b)
	require.Equal(t, "hdr", string(got[:3]))
	require.Equal(t, large, got[3:])
	require.NoError(t, cli.Abort())
	require.NoError(t, srv.Abort())
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}

func TestQUICTryWriteBuffersBlocksWithoutFlowControlCredit(t *testing.T) {
	cli, srv := quicPair(t)
	chunk := bytes.Repeat([]byte("y"), quicTryWriteMax)
	queued := 0
	for {
		b := net.Buffers{chunk}
		blocked, err := cli.TryWriteBuffers(&b)
		require.NoError(t, err)
		if blocked {
			require.Len(t, b, 1, "a blocked batch is taken whole or not at all")
			break
		}
		queued += len(chunk)
		require.Less(t, queued, 64<<20, "the peer's receive window never ran out")
	}
	// what was queued arrives once the peer reads
	_, err := io.ReadFull(srv, make([]byte, queued))
	require.NoError(t, err)
	require.NoError(t, cli.Abort())
	require.NoError(t, srv.Abort())
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}

// closeCause is why the QUIC connection under s ended.
func closeCause(t *testing.T, s *quicStream) error {
	t.Helper()
	waitQUICDone(t, s)
	return context.Cause(s.c.conn.Context())
}

func TestQUICActiveCloserClosesTheConnection(t *testing.T) {
	cli, srv := quicPair(t)
	// the client closes its side first; the server reads to the end,
	// answers and closes (the passive closer: it lingers)
	_, err := cli.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, cli.CloseWrite())
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, "request", string(got))
	_, err = srv.Write([]byte("response"))
	require.NoError(t, err)
	require.NoError(t, srv.CloseWrite())
	require.NoError(t, srv.Close())
	select {
	case <-srv.c.done:
		t.Fatal("the passive closer closed the connection before its peer read the response")
	default:
	}
	// the client reads the response to the end, so its Close ends the
	// connection at once: the server learns it from the client, not from
	// its own linger timer
	got, err = io.ReadAll(cli)
	require.NoError(t, err)
	require.Equal(t, "response", string(got))
	require.NoError(t, cli.Close())
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, srv), &appErr)
	require.True(t, appErr.Remote, "closed by the active closer")
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	require.ErrorAs(t, closeCause(t, cli), &appErr)
	require.False(t, appErr.Remote)
}

func TestQUICPassiveCloserLingersForItsPeer(t *testing.T) {
	cli, srv := quicPair(t)
	// the server closes first without having read the client's FIN: the
	// client still reads everything it sent, then the connection ends
	// after the server's linger
	payload := bytes.Repeat([]byte("z"), 256<<10)
	_, err := srv.Write(payload)
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	got, err := io.ReadAll(cli)
	require.NoError(t, err)
	require.Equal(t, payload, got)
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, cli), &appErr, "the server's linger closes the connection")
	require.True(t, appErr.Remote)
	require.NoError(t, cli.Close())
	waitQUICDone(t, srv)
}

func TestQUICListenerDropsConnectionsWithoutStream(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig()})
	require.NoError(t, err)
	// the stream is never written, so the listener never sees it; the
	// client's abort ends the listener's wait for a first stream
	c, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	require.NoError(t, c.Abort())
	waitQUICDone(t, c)
	l := ln.(*quicListener)
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.refs == 1 // only the listener's own reference is left
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, ln.Close())
}
