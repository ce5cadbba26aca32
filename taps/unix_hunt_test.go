package taps

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Tests of Unix domain socket endpoints through the public API: the socket
// file's life, a path in use, security on a Unix path.

func unixListen(t *testing.T, sys *System, path string) (*Listener, error) {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path)))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre.Listen(testCtx(t))
}

// unixListenTemp listens on a socket file name in a new temporary
// directory; it returns the socket's path and the Listener.
func unixListenTemp(t *testing.T, sys *System, name string) (string, *Listener) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	ln, err := unixListen(t, sys, path)
	require.NoError(t, err)
	return path, ln
}

func TestUnixListenerStopRemovesTheSocketFile(t *testing.T) {
	sys := newTestSystem(t)
	path, ln := unixListenTemp(t, sys, "stop.sock")
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSocket, fi.Mode().Type())
	ln.Stop()
	<-ln.Done()
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, fs.ErrNotExist)
	// and the path can be listened on again
	ln, err = unixListen(t, sys, path)
	require.NoError(t, err)
	ln.Stop()
	<-ln.Done()
}

func TestUnixListenOnAPathInUseFails(t *testing.T) {
	sys := newTestSystem(t)
	path, ln := unixListenTemp(t, sys, "busy.sock")
	_, err := unixListen(t, sys, path)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	_, err = os.Lstat(path)
	require.NoError(t, err, "the first listener's socket file stays")
	ln.Stop()
	<-ln.Done()
}

func TestUnixInitiateToAMissingPathFails(t *testing.T) {
	sys := newTestSystem(t)
	path := filepath.Join(t.TempDir(), "nobody.sock")
	cli := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	_, err := cli.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestUnixPathWithRequiredSecurityIsNotPlain(t *testing.T) {
	sys := newTestSystem(t)
	path, ln := unixListenTemp(t, sys, "plain.sock")
	echoServer(t, ln)
	pki := newTestPKI(t)
	cli := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	cli.AddFramer(framers.NewLengthPrefix())
	c, err := cli.Initiate(testCtx(t))
	if err == nil {
		stack := c.GetProperties().Stack
		c.Abort()
		<-c.Done()
		t.Fatalf("security is required but a plain %s connection was made", stack)
	}
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	ln.Stop()
	<-ln.Done()
}

func TestUnixListenOnAPathInUseDeliversNoConnectionToTheListener(t *testing.T) {
	sys := newTestSystem(t)
	path, ln := unixListenTemp(t, sys, "probe.sock")
	_, err := unixListen(t, sys, path)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	// the first connection the listener receives is this client's
	cli := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	cli.AddFramer(framers.NewLengthPrefix())
	ctx := testCtx(t)
	c, err := cli.Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("first"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err, "the first connection received is the client's, not the liveness probe of the failed Listen")
	require.Equal(t, "first", string(m.Data))
	s.Abort()
	c.Abort()
	<-s.Done()
	<-c.Done()
	ln.Stop()
	<-ln.Done()
}

// TestUnixPathAmongAddressesIsRacedWithThem: a Unix socket path given with
// an address is one more alternative: whichever is live is reached (with
// both, every candidate took the unix stack, and the address was never
// reachable).
func TestUnixPathAmongAddressesIsRacedWithThem(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	tcp := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, tcp)
	path, ux := unixListenTemp(t, sys, "live.sock")
	echoServer(t, ux)
	missing := NewRemoteEndpoint().WithUnixPath(filepath.Join(t.TempDir(), "missing.sock"))
	for _, tc := range []struct {
		name      string
		remotes   []*RemoteEndpoint
		wantStack string
	}{
		{"dead path, live address", []*RemoteEndpoint{missing, loopbackRemote(listenerAddr(t, tcp))}, "tcp"},
		{"live path, dead address", []*RemoteEndpoint{NewRemoteEndpoint().WithUnixPath(path), loopbackRemote(refusedAddr(t))}, "unix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(tc.remotes...))
			pre.AddFramer(framers.NewLengthPrefix())
			c, err := pre.Initiate(ctx)
			require.NoError(t, err)
			require.Equal(t, tc.wantStack, c.GetProperties().Stack)
			require.NoError(t, c.Send(ctx, []byte("ping"), nil))
			m, err := c.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "ping", string(m.Data))
			c.Abort()
			<-c.Done()
		})
	}
	tcp.Stop()
	ux.Stop()
}
