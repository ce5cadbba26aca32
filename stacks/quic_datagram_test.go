package stacks

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQUICDatagramsHandedOverWhenTheReadingStreamCloses: the datagrams
// belong to the connection; every stream Transport may send them, the
// oldest live one reads them, and when it closes (or aborts) the next one
// does. Before, only the first stream Transport had them: once it closed,
// they were read by nobody.
func TestQUICDatagramsHandedOverWhenTheReadingStreamCloses(t *testing.T) {
	ctx := testCtx(t)
	_, accepted, first := quicDial(t, ctx, Options{QUICDatagrams: true})
	_, err := first.Write([]byte("s"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the first stream")
	second, err := first.(MultiStream).OpenStream(ctx)
	require.NoError(t, err)
	third, err := first.(MultiStream).OpenStream(ctx)
	require.NoError(t, err)
	type received struct {
		p   []byte
		err error
	}
	receive := func(tr Transport) <-chan received {
		dg, ok := tr.(Datagrams)
		require.True(t, ok, "every stream Transport has the datagrams: %T", tr)
		ch := make(chan received, 1)
		go func() {
			p, err := dg.ReceiveDatagram(ctx)
			ch <- received{p, err}
		}()
		return ch
	}
	send := func(p string) { require.NoError(t, srv.(Datagrams).SendDatagram([]byte(p))) }

	secondGot := receive(second) // waits for its turn
	send("one")
	r := <-receive(first)
	require.NoError(t, r.err)
	require.Equal(t, "one", string(r.p), "the oldest stream Transport reads")

	require.NoError(t, first.Close())
	r = <-receive(first)
	require.ErrorIs(t, r.err, net.ErrClosed, "a closed stream Transport reads no more")
	send("two")
	r = <-secondGot
	require.NoError(t, r.err)
	require.Equal(t, "two", string(r.p), "the next one reads once the first closed")

	require.NoError(t, third.(Datagrams).SendDatagram([]byte("from the third")), "every stream Transport sends")
	r = <-receive(srv)
	require.NoError(t, r.err)
	require.Equal(t, "from the third", string(r.p))

	thirdGot := receive(third)
	require.NoError(t, second.Abort())
	send("three")
	r = <-thirdGot
	require.NoError(t, r.err)
	require.Equal(t, "three", string(r.p), "an abort hands them over too")
	abortQUICPair(t, third, srv)
}

// TestQUICRequireDatagramsFailsDialWithoutThePeers: with
// Options.RequireDatagrams (perMsgReliability Require), a Dial whose peer
// did not enable datagrams fails once the handshake tells, with
// ErrDatagramsNotNegotiated (and errors.ErrUnsupported), and leaves no
// connection behind; after a 0-RTT Dial (it returned before the
// handshake) WaitHandshake fails so. Before, both went on without
// datagrams.
func TestQUICRequireDatagramsFailsDialWithoutThePeers(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln := quicEarlyListener(t, ctx, pki) // no datagrams
	opts := Options{TLS: pki.clientConfig(), QUICDatagrams: true, RequireDatagrams: true}
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), opts)
	if err == nil {
		_ = cli.Abort()
		waitQUICDone(t, cli)
		t.Fatal("Dial Requiring datagrams succeeded with a peer without them")
	}
	require.ErrorIs(t, err, ErrDatagramsNotNegotiated)
	require.ErrorIs(t, err, errors.ErrUnsupported)

	t.Run("0-RTT", func(t *testing.T) {
		skipUnderRace(t)
		cache := tls.NewLRUClientSessionCache(4)
		cacheQUICTicket(t, ctx, pki, ln, cache)
		hold := newServerHold(t, ln.Addr())
		opts := earlyOptions(pki, cache)
		opts.QUICDatagrams, opts.RequireDatagrams = true, true
		cli, err := QUIC().Dial(ctx, hold.addr(), opts)
		require.NoError(t, err, "a 0-RTT Dial returns before the handshake")
		hw := pendingHandshake(t, cli)
		hold.release()
		next, err := hw.WaitHandshake(ctx)
		if next != nil {
			_ = next.Abort()
		}
		require.ErrorIs(t, err, ErrDatagramsNotNegotiated)
		require.ErrorIs(t, err, errors.ErrUnsupported)
		_ = cli.Abort()
		waitQUICDone(t, cli)
	})
}
