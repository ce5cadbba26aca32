package stacks

import (
	"io"
	"testing"

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
