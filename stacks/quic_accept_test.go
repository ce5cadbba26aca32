package stacks

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQUICAcceptStreamCancelLosesNoStream: an AcceptStream whose ctx ends
// while the peer opens streams of both kinds loses none of them: each is
// returned by that AcceptStream or by a later one.
func TestQUICAcceptStreamCancelLosesNoStream(t *testing.T) {
	ctx := testCtx(t)
	cli, srv := quicPair(t)
	const n = 40
	got := 0
	for i := range n {
		actx, cancel := context.WithCancel(ctx)
		res := make(chan Transport, 1)
		go func() {
			s, err := srv.AcceptStream(actx)
			if err != nil {
				s = nil
			}
			res <- s
		}()
		var s Transport
		var err error
		if i%2 == 0 {
			s, err = cli.OpenSendStream(ctx)
		} else {
			s, err = cli.OpenStream(ctx)
		}
		require.NoError(t, err)
		_, err = s.Write([]byte{byte(i)})
		require.NoError(t, err)
		require.NoError(t, s.CloseWrite())
		cancel() // races the arrival of the stream
		if a := <-res; a != nil {
			got++
			b, err := io.ReadAll(a)
			require.NoError(t, err)
			require.Equal(t, []byte{byte(i)}, b)
			require.NoError(t, a.Close())
		} else {
			a, err := srv.AcceptStream(ctx)
			require.NoError(t, err, "stream %d lost", i)
			b, err := io.ReadAll(a)
			require.NoError(t, err)
			require.Equal(t, []byte{byte(i)}, b)
			require.NoError(t, a.Close())
		}
		require.NoError(t, s.Close())
	}
	t.Logf("%d of %d accepted before the cancel", got, n)
	abortQUICPair(t, cli, srv)
}

// TestQUICListenerFirstStreamBacklog: the peer opens a unidirectional and
// a bidirectional stream at once; the listener returns one, and the other
// (accepted meanwhile) is the next AcceptStream's.
func TestQUICListenerFirstStreamBacklog(t *testing.T) {
	ctx := testCtx(t)
	_, accepted, cli := quicDial(t, ctx, Options{})
	uni, err := cli.(UniStreams).OpenSendStream(ctx)
	require.NoError(t, err)
	_, err = uni.Write([]byte("u"))
	require.NoError(t, err)
	require.NoError(t, uni.CloseWrite())
	_, err = cli.Write([]byte("b"))
	require.NoError(t, err)
	require.NoError(t, cli.CloseWrite())
	r := <-accepted
	require.NoError(t, r.err)
	second, err := r.t.(MultiStream).AcceptStream(ctx)
	require.NoError(t, err)
	got := map[string]bool{}
	for _, s := range []Transport{r.t, second} {
		b, err := io.ReadAll(s)
		require.NoError(t, err)
		got[string(b)] = true
	}
	require.Equal(t, map[string]bool{"u": true, "b": true}, got)
	require.NoError(t, uni.Close())
	require.NoError(t, second.Close())
	require.NoError(t, r.t.Close())
	require.NoError(t, cli.Close())
	waitQUICDone(t, cli)
	waitQUICDone(t, r.t)
}
