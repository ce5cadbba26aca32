package stacks

import (
	"io"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// TestQUICDialedSideAcceptsAndRefusesPeerStreams: the side that dialed a
// connection takes the streams the peer opens (AcceptStream, both kinds);
// Refuse resets one, and the peer's read reports ErrStreamRefused, while
// the other streams carry on. Refusing the last stream ends the
// connection as a graceful close does (no CONNECTION_CLOSE with the abort
// code), so the last data of the stream closed before it still arrive.
func TestQUICDialedSideAcceptsAndRefusesPeerStreams(t *testing.T) {
	ctx := testCtx(t)
	cli, srv := quicPair(t)

	// a bidirectional stream of the peer's, taken and answered
	s1, err := srv.OpenStream(ctx)
	require.NoError(t, err)
	_, err = s1.Write([]byte("bidi"))
	require.NoError(t, err)
	c1, err := cli.AcceptStream(ctx)
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c1, buf)
	require.NoError(t, err)
	require.Equal(t, "bidi", string(buf))
	_, err = c1.Write([]byte("back"))
	require.NoError(t, err)
	_, err = io.ReadFull(s1, buf)
	require.NoError(t, err)
	require.Equal(t, "back", string(buf))

	// a unidirectional one only receives
	u, err := srv.OpenSendStream(ctx)
	require.NoError(t, err)
	_, err = u.Write([]byte("uni"))
	require.NoError(t, err)
	cu, err := cli.AcceptStream(ctx)
	require.NoError(t, err)
	d := cu.(Directional)
	require.False(t, d.Sends())
	require.True(t, d.Receives())
	_, err = cu.Write([]byte("x"))
	require.ErrorIs(t, err, ErrReceiveOnlyStream)

	// refused: the peer's read fails with ErrStreamRefused
	require.NoError(t, c1.(Refuser).Refuse())
	_, err = io.ReadAll(s1)
	require.ErrorIs(t, err, ErrStreamRefused)
	var se *quic.StreamError
	require.ErrorAs(t, err, &se)
	require.True(t, se.Remote)
	require.NoError(t, s1.Abort())
	require.NoError(t, cu.(Refuser).Refuse())

	// the first streams carry on
	_, err = cli.Write([]byte("more"))
	require.NoError(t, err)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)
	require.Equal(t, "more", string(buf))

	// the dialing side closes its first stream, then refuses a last
	// peer's stream: the connection ends as after a graceful close, and
	// the data the closed stream sent reach the peer
	s2, err := srv.OpenStream(ctx)
	require.NoError(t, err)
	_, err = s2.Write([]byte("late"))
	require.NoError(t, err)
	c2, err := cli.AcceptStream(ctx)
	require.NoError(t, err)
	_, err = cli.Write([]byte("last"))
	require.NoError(t, err)
	require.NoError(t, cli.Close())
	require.NoError(t, c2.(Refuser).Refuse())
	got, err := io.ReadAll(srv)
	require.NoError(t, err)
	require.Equal(t, "last", string(got))
	require.NoError(t, srv.Close())
	require.NoError(t, s2.Close())
	var appErr *quic.ApplicationError
	require.ErrorAs(t, closeCause(t, cli), &appErr)
	require.Equal(t, quicCodeNoError, appErr.ErrorCode, "not closed as an abort")
	waitQUICDone(t, srv)
}
