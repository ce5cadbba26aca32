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
	_, accepted, cli := quicDial(t, ctx, Options{})
	_, err := cli.Write([]byte("first"))
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
	_, accepted, cli := quicDial(t, ctx, Options{QUICDatagrams: true})
	_, err := cli.Write([]byte("s"))
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
	abortQUICPair(t, cli, srv)
}

// quicPair dials a QUIC connection to a fresh listener; the client writes
// one byte first so that the listener sees the stream, and the server
// consumes it. It returns both first streams.
func quicPair(t *testing.T) (cli, srv *quicStream) {
	t.Helper()
	ctx := testCtx(t)
	_, accepted, c := quicDial(t, ctx, Options{})
	_, err := c.Write([]byte{0})
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
	abortQUICPair(t, cli, srv)
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
	abortQUICPair(t, cli, srv)
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

// TestQUICPassiveCloserLingersForItsPeer: the dialing side closes first
// without having read the peer's FIN: the peer still reads everything it
// sent, then the connection ends after the dialing side's linger. (The
// accepting side never closes the connection with its last graceful
// stream: TestQUICAcceptedConnectionOutlivesItsLastStream.)
func TestQUICPassiveCloserLingersForItsPeer(t *testing.T) {
	cli, srv := quicPair(t)
	payload := bytes.Repeat([]byte("z"), 256<<10)
	_, err := cli.Write(payload)
	require.NoError(t, err)
	require.NoError(t, cli.Close())
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, payload, got)
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, srv), &appErr, "the client's linger closes the connection")
	require.True(t, appErr.Remote)
	require.Equal(t, quicCodeNoError, appErr.ErrorCode)
	require.NoError(t, srv.Close())
	waitQUICDone(t, cli)
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

// uniID reports whether id is a client-initiated unidirectional stream's
// (RFC 9000 §2.1: the two low bits are 0b10).
func uniID(id quic.StreamID) bool { return id%4 == 2 }

// receiveOnly checks that tr is the peer's unidirectional stream: it only
// receives, and writes fail.
func receiveOnly(t *testing.T, tr Transport) *quic.ReceiveStream {
	t.Helper()
	s, ok := tr.(*quicStream)
	require.True(t, ok, "%T", tr)
	rs, ok := s.rcv.(*quic.ReceiveStream)
	require.True(t, ok, "a unidirectional stream (%T)", s.rcv)
	require.True(t, uniID(rs.StreamID()), "stream %d", rs.StreamID())
	require.Nil(t, s.Stream)
	require.False(t, tr.(Directional).Sends())
	require.True(t, tr.(Directional).Receives())
	_, err := tr.Write([]byte("x"))
	require.ErrorIs(t, err, ErrReceiveOnlyStream)
	b := net.Buffers{[]byte("x")}
	_, err = tr.(interface {
		TryWriteBuffers(*net.Buffers) (bool, error)
	}).TryWriteBuffers(&b)
	require.ErrorIs(t, err, ErrReceiveOnlyStream)
	require.NoError(t, tr.CloseWrite(), "nothing to end")
	return rs
}

// TestQUICMakeSendOnlyOpensAUnidirectionalStream: Dial's stream, nothing
// written on it yet, becomes a unidirectional stream; a read in progress
// returns io.EOF, and the listener accepts the stream as receive only.
func TestQUICMakeSendOnlyOpensAUnidirectionalStream(t *testing.T) {
	ctx := testCtx(t)
	_, accepted, cli := quicDial(t, ctx, Options{})
	read := make(chan error, 1)
	go func() { // a reader reading ahead, as the connection's does
		_, err := cli.Read(make([]byte, 8))
		read <- err
	}()
	require.True(t, cli.(UniStreams).MakeSendOnly())
	require.ErrorIs(t, <-read, io.EOF)
	n, err := cli.Read(make([]byte, 8))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "a send-only stream reads its end at once")
	require.True(t, cli.(Directional).Sends())
	require.False(t, cli.(Directional).Receives())
	require.NoError(t, cli.(interface{ CloseRead() error }).CloseRead(), "nothing to stop")
	_, err = cli.Write([]byte("one way"))
	require.NoError(t, err)
	require.NoError(t, cli.CloseWrite())

	srv := awaitAccepted(t, ctx, accepted, "the unidirectional stream")
	receiveOnly(t, srv)
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, "one way", string(got))
	// the accepting side keeps the connection (the peer may open more
	// streams); the dialing side's close ends it
	require.NoError(t, srv.Close())
	require.NoError(t, cli.Close())
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, srv.(*quicStream)), &appErr)
	require.True(t, appErr.Remote, "closed by the sender, the dialing side")
	waitQUICDone(t, cli)
}

// TestQUICDialSendOnlyOpensAUnidirectionalStream: with Options.SendOnly,
// Dial's stream is unidirectional from the start: the peer accepts it as
// receive only, and the connection's first bidirectional stream reaches
// the peer's AcceptStream with its data (no unused stream was taken
// before it, as MakeSendOnly's exchange would have).
func TestQUICDialSendOnlyOpensAUnidirectionalStream(t *testing.T) {
	ctx := testCtx(t)
	_, accepted, cli := quicDial(t, ctx, Options{SendOnly: true})
	require.True(t, cli.(Directional).Sends())
	require.False(t, cli.(Directional).Receives())
	require.True(t, cli.(UniStreams).MakeSendOnly(), "already unidirectional")
	_, err := cli.Write([]byte("one way"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the unidirectional stream")
	rs := receiveOnly(t, srv)
	require.Equal(t, quic.StreamID(2), rs.StreamID(), "the client's first unidirectional stream")
	got := make([]byte, len("one way"))
	_, err = io.ReadFull(srv, got)
	require.NoError(t, err)
	require.Equal(t, "one way", string(got))

	bidi, err := cli.(MultiStream).OpenStream(ctx)
	require.NoError(t, err)
	_, err = bidi.Write([]byte("both ways"))
	require.NoError(t, err)
	next, err := srv.(MultiStream).AcceptStream(ctx)
	require.NoError(t, err)
	require.True(t, next.(Directional).Sends())
	require.Equal(t, quic.StreamID(0), next.(*quicStream).Stream.StreamID(), "the first bidirectional stream is the one written on")
	got = make([]byte, len("both ways"))
	_, err = io.ReadFull(next, got)
	require.NoError(t, err)
	require.Equal(t, "both ways", string(got))
	require.NoError(t, bidi.Abort())
	require.NoError(t, next.Abort())
	abortQUICPair(t, cli, srv)
}

// TestQUICMakeSendOnlyAfterWriteKeepsTheStream: once written on, Dial's
// stream is known to the peer and stays bidirectional.
func TestQUICMakeSendOnlyAfterWriteKeepsTheStream(t *testing.T) {
	cli, srv := quicPair(t)
	require.False(t, cli.MakeSendOnly())
	require.True(t, cli.Receives())
	require.False(t, srv.MakeSendOnly(), "an accepted stream cannot")
	_, err := srv.Write([]byte("back"))
	require.NoError(t, err)
	_, err = io.ReadFull(cli, make([]byte, 4))
	require.NoError(t, err)
	abortQUICPair(t, cli, srv)
}

// TestQUICAcceptStreamTakesBothKinds: the peer's unidirectional and
// bidirectional streams both reach AcceptStream.
func TestQUICAcceptStreamTakesBothKinds(t *testing.T) {
	ctx := testCtx(t)
	cli, srv := quicPair(t)
	uni, err := cli.OpenSendStream(ctx)
	require.NoError(t, err)
	require.False(t, uni.(Directional).Receives())
	_, err = uni.Write([]byte("uni"))
	require.NoError(t, err)
	require.NoError(t, uni.Close())
	bidi, err := cli.OpenStream(ctx)
	require.NoError(t, err)
	_, err = bidi.Write([]byte("bidi"))
	require.NoError(t, err)
	require.NoError(t, bidi.CloseWrite())

	got := map[string]Transport{}
	for range 2 {
		s, err := srv.AcceptStream(ctx)
		require.NoError(t, err)
		b, err := io.ReadAll(s)
		require.NoError(t, err)
		got[string(b)] = s
	}
	require.Len(t, got, 2)
	receiveOnly(t, got["uni"])
	require.True(t, got["bidi"].(Directional).Sends())
	_, err = got["bidi"].Write([]byte("answer"))
	require.NoError(t, err)
	require.NoError(t, got["bidi"].Close())
	b, err := io.ReadAll(bidi)
	require.NoError(t, err)
	require.Equal(t, "answer", string(b))
	for _, s := range []Transport{got["uni"], got["bidi"], bidi} {
		require.NoError(t, s.Close())
	}
	abortQUICPair(t, cli, srv)
}

// TestQUICTryOpenStreamStopsAtThePeersLimit: TryOpenStream opens streams
// without waiting while the peer's limits leave room, bidirectional and
// unidirectional, and then fails with ErrStreamLimit (where OpenStream
// would wait) instead of blocking.
func TestQUICTryOpenStreamStopsAtThePeersLimit(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	srvTLS := pki.serverConfig()
	srvTLS.NextProtos = []string{DefaultQUICALPN}
	// the peer allows two bidirectional streams (Dial's and one more) and
	// one unidirectional stream
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()
	ln, err := tr.Listen(srvTLS, &quic.Config{MaxIncomingStreams: 2, MaxIncomingUniStreams: 1})
	require.NoError(t, err)
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	defer cli.Abort()
	so, ok := cli.(StreamOpener)
	require.True(t, ok, "a QUIC stream opens streams without waiting")

	bidi, err := so.TryOpenStream(false)
	require.NoError(t, err)
	require.True(t, bidi.(Directional).Sends() && bidi.(Directional).Receives())
	_, err = so.TryOpenStream(false)
	require.ErrorIs(t, err, ErrStreamLimit, "a third bidirectional stream exceeds the peer's limit")

	uni, err := so.TryOpenStream(true)
	require.NoError(t, err)
	require.True(t, uni.(Directional).Sends())
	require.False(t, uni.(Directional).Receives(), "sendOnly opens a unidirectional stream")
	_, err = so.TryOpenStream(true)
	require.ErrorIs(t, err, ErrStreamLimit)
	require.NoError(t, bidi.Abort())
	require.NoError(t, uni.Abort())
}
