package taps

// Tests of claims of the public API's doc comments found false by the
// twenty-first session's doc contract audit (doc_contract_test.go has the
// earlier ones): each pins the behaviour the doc now states.

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocContractNetConnUnixAddrs: a NetConn over a Unix domain socket
// reports the socket's path as a *net.UnixAddr, as net.UnixConn does (and
// as Listener.Addr and NetListener.Addr do), not the zero *net.TCPAddr
// the doc reserves for an unknown address: before, both ends read ":0".
func TestDocContractNetConnUnixAddrs(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "s")
	ln, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path))).Listen(ctx)
	require.NoError(t, err)
	defer func() { ln.Stop(); <-ln.Done() }()
	c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path))).Initiate(ctx)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	client, server := c.NetConn(), s.NetConn()
	defer func() {
		require.NoError(t, client.Close())
		require.NoError(t, server.Close())
		<-c.Done()
		<-s.Done()
	}()

	want := &net.UnixAddr{Name: path, Net: "unix"}
	require.Equal(t, want, client.RemoteAddr(), "the client's peer is the listening socket's path")
	require.Equal(t, want, server.LocalAddr(), "the server's own address is the listening path")
	require.Equal(t, ln.Addr(), server.LocalAddr(), "as the Listener reports it")
	for _, a := range []net.Addr{client.LocalAddr(), server.RemoteAddr()} {
		require.Equal(t, "unix", a.Network())
		require.Equal(t, "@", a.String(), "an unbound client socket, as net.UnixConn reports it")
	}

	// what the Go standard library reports for the same sockets
	raw, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer raw.Close()
	require.Equal(t, raw.RemoteAddr(), client.RemoteAddr())
	require.Equal(t, raw.LocalAddr().String(), client.LocalAddr().String())
	rs, err := ln.Accept(ctx)
	require.NoError(t, err)
	rs.Abort()
	<-rs.Done()
}
