//go:build linux

package stacks

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBoundDeviceOfQUIC: the route of a QUIC stream is looked up out of
// the interface its UDP socket is bound to, as a TCP socket's is.
func TestBoundDeviceOfQUIC(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := QUIC().Listen(ctx, Options{Local: loopback4, TLS: pki.serverConfig(), Interface: "lo"})
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptAsync(ln)
	cli, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig(), Interface: "lo"})
	require.NoError(t, err)
	_, err = cli.Write([]byte{0})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	require.Equal(t, "lo", boundDevice(cli), "the dialled stream's socket")
	require.Equal(t, "lo", boundDevice(r.t), "the accepted stream's socket")
	plain, err := QUIC().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	require.Empty(t, boundDevice(plain))
	require.NoError(t, plain.Abort())
	require.NoError(t, cli.Abort())
	require.NoError(t, r.t.Abort())
	waitQUICDone(t, plain)
	waitQUICDone(t, cli)
	waitQUICDone(t, r.t)
}
