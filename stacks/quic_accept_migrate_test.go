package stacks

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// movedCounter is a PeerMoveWatcher callback that passes each call on.
func movedCounter() (func(), <-chan struct{}) {
	ch := make(chan struct{}, 8)
	return func() { ch <- struct{}{} }, ch
}

func awaitMoved(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("%s was not told of the peer's move", what)
	}
}

func requireNotMoved(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: told of a move (again)", what)
	default:
	}
}

// TestQUICPeerMoveWatchersLearnOfTheMigration: the stream Transports of a
// session this side accepted learn of the peer's migration (a move from
// 127.0.0.1 to 127.0.0.2) at the session's next read, or next write, on
// any of its streams once quic-go has switched: every watcher once, a
// stopped one never; nothing is told before (no read or write since the
// switch) nor after.
func TestQUICPeerMoveWatchersLearnOfTheMigration(t *testing.T) {
	for _, by := range []string{"read", "write"} {
		t.Run(by, func(t *testing.T) {
			ctx := testCtx(t)
			_, accepted, cli := quicDial(t, ctx, Options{})
			_, err := cli.Write([]byte("a"))
			require.NoError(t, err)
			srv1 := awaitAccepted(t, ctx, accepted, "the first stream")
			buf := make([]byte, 8)
			_, err = io.ReadFull(srv1, buf[:1])
			require.NoError(t, err)
			cli2, err := cli.(*quicStream).OpenStream(ctx)
			require.NoError(t, err)
			_, err = cli2.Write([]byte("b"))
			require.NoError(t, err)
			srv2, err := srv1.(*quicStream).AcceptStream(ctx)
			require.NoError(t, err)
			_, err = io.ReadFull(srv2, buf[:1])
			require.NoError(t, err)
			t.Cleanup(func() {
				_ = cli2.Abort()
				_ = srv2.Abort()
				abortQUICPair(t, cli, srv1)
			})

			f1, moved1 := movedCounter()
			stop1, ok := srv1.(PeerMoveWatcher).WatchPeerMoves(f1)
			require.True(t, ok)
			defer stop1()
			f2, moved2 := movedCounter()
			stop2, ok := srv2.(PeerMoveWatcher).WatchPeerMoves(f2)
			require.True(t, ok)
			defer stop2()
			f3, moved3 := movedCounter()
			stop3, ok := srv2.(PeerMoveWatcher).WatchPeerMoves(f3)
			require.True(t, ok)
			stop3()

			local, err := cli.(*quicStream).Migrate(ctx, netip.MustParseAddrPort("127.0.0.2:0"), "")
			require.NoError(t, err)
			_, err = cli.Write([]byte("after"))
			require.NoError(t, err)
			require.Eventually(t, func() bool { return srv1.RemoteAddr().String() == local.String() },
				10*time.Second, 5*time.Millisecond, "quic-go switched to the peer's new path")
			requireNotMoved(t, moved1, "before any read or write")
			requireNotMoved(t, moved2, "before any read or write")

			if by == "read" {
				_, err = io.ReadFull(srv1, buf[:5])
				require.NoError(t, err)
				require.Equal(t, "after", string(buf[:5]))
			} else {
				_, err = srv2.Write([]byte("down")) // the other stream
				require.NoError(t, err)
				_, err = io.ReadFull(cli2, buf[:4])
				require.NoError(t, err)
				require.Equal(t, "down", string(buf[:4]))
			}
			awaitMoved(t, ctx, moved1, "the first stream")
			awaitMoved(t, ctx, moved2, "the second stream")
			if by == "write" {
				_, err = io.ReadFull(srv1, buf[:5])
				require.NoError(t, err)
				require.Equal(t, "after", string(buf[:5]))
			}

			// data flows both ways on both streams; nothing more is told
			for _, p := range [][2]Transport{{cli, srv1}, {cli2, srv2}, {srv1, cli}, {srv2, cli2}} {
				_, err = p[0].Write([]byte("more"))
				require.NoError(t, err)
				_, err = io.ReadFull(p[1], buf[:4])
				require.NoError(t, err)
				require.Equal(t, "more", string(buf[:4]))
			}
			requireNotMoved(t, moved1, "once per move")
			requireNotMoved(t, moved2, "once per move")
			requireNotMoved(t, moved3, "a stopped watch")
			require.Equal(t, local.String(), srv2.RemoteAddr().String())
		})
	}
}

// TestQUICDialedSessionHasNoPeerMoves: the peer of a session this side
// dialed (a server) does not migrate: nothing is watched.
func TestQUICDialedSessionHasNoPeerMoves(t *testing.T) {
	ctx := testCtx(t)
	_, accepted, cli := quicDial(t, ctx, Options{})
	_, err := cli.Write([]byte("x"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the stream")
	stop, ok := cli.(PeerMoveWatcher).WatchPeerMoves(func() { t.Error("called") })
	require.False(t, ok)
	require.Nil(t, stop)
	require.Nil(t, cli.(*quicStream).c.moves.Load(), "the data path checks nothing")
	abortQUICPair(t, cli, srv)
}
