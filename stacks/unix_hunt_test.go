package stacks

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of the Unix stack's socket paths: stale files, live listeners,
// removal on Close, abstract names, paths too long for sun_path.

// unixPair listens with the Unix stack on path (a file or an abstract
// name) and dials it; it returns the listener, the dialed Transport and
// the accepted one.
func unixPair(t *testing.T, ctx context.Context, path string) (ln Listener, cli, srv Transport) {
	t.Helper()
	ln, err := Unix().Listen(ctx, Options{Path: path})
	require.NoError(t, err)
	accepted := acceptAsync(ln)
	cli, err = Unix().Dial(ctx, loopback4, Options{Path: path})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	return ln, cli, r.t
}

func TestUnixListenReplacesAStaleSocketFile(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "stale.sock")
	// a socket file nothing listens on any more: a listener that did not
	// remove its file when it closed (a crashed process)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	old.SetUnlinkOnClose(false)
	require.NoError(t, old.Close())
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSocket, fi.Mode().Type())

	ln, c, srv := unixPair(t, ctx, path)
	require.NoError(t, c.Close())
	require.NoError(t, srv.Close())
	require.NoError(t, ln.Close())
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "the socket file is removed when the listener closes")
}

func TestUnixListenFailsWhileAnotherListens(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "live.sock")
	ln, err := Unix().Listen(ctx, Options{Path: path})
	require.NoError(t, err)
	defer ln.Close()
	_, err = Unix().Listen(ctx, Options{Path: path})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	_, err = os.Lstat(path)
	require.NoError(t, err, "the live listener's socket file is left alone")
}

func TestUnixListenRefusesToReplaceAFile(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o600))
	_, err := Unix().Listen(ctx, Options{Path: path})
	require.Error(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b))
}

func TestUnixAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract Unix sockets are Linux only")
	}
	ctx := testCtx(t)
	name := "@gotaps-hunt-" + strings.ReplaceAll(t.Name(), "/", "-")
	ln, c, srv := unixPair(t, ctx, name)
	_, err := c.Write([]byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = srv.Read(buf)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, srv.Close())
	require.NoError(t, ln.Close())
	// the name is free again
	ln, err = Unix().Listen(ctx, Options{Path: name})
	require.NoError(t, err)
	require.NoError(t, ln.Close())
}

func TestUnixPathTooLongFailsClearly(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), strings.Repeat("x", 120)+".sock")
	_, err := Unix().Listen(ctx, Options{Path: path})
	require.Error(t, err)
	_, err = Unix().Dial(ctx, loopback4, Options{Path: path})
	require.Error(t, err)
}

func TestUnixNoPath(t *testing.T) {
	ctx := testCtx(t)
	_, err := Unix().Listen(ctx, Options{})
	require.True(t, errors.Is(err, ErrNoPath))
	_, err = Unix().Dial(ctx, loopback4, Options{})
	require.True(t, errors.Is(err, ErrNoPath))
}

func TestUnixCloseKeepsAReplacedSocketFile(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "replaced.sock")
	ln, err := Unix().Listen(ctx, Options{Path: path})
	require.NoError(t, err)
	// someone removes the file and another listener takes the path
	require.NoError(t, os.Remove(path))
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	defer other.Close()
	require.NoError(t, ln.Close())
	_, err = os.Lstat(path)
	require.NoError(t, err, "closing the first listener must not remove the other listener's socket")
}

// TestUnixApplyLiveIsNotApplicable: a Unix domain socket has no IP header
// (no DSCP) and no TCP options: ApplyLive refuses them with
// ErrNotApplicable, naming the socket a Unix socket, and the connection
// goes on. The DSCP reached setsockopt(IP_TOS) on the AF_UNIX socket and
// failed with a bare EOPNOTSUPP, and the TCP options' error called the
// socket "udp4".
func TestUnixApplyLiveIsNotApplicable(t *testing.T) {
	ctx := testCtx(t)
	ln, cli, srv := unixPair(t, ctx, filepath.Join(t.TempDir(), "live.sock"))
	defer func() { _ = cli.Close(); _ = srv.Close(); _ = ln.Close() }()
	dscp := uint8(46)
	cc := "lp"
	d := time.Second
	for name, o := range map[string]LiveOptions{
		"DSCP":                {DSCP: &dscp},
		"DSCP and congestion": {DSCP: &dscp, Congestion: &cc},
		"UserTimeout":         {UserTimeout: &d},
		"KeepAliveIdle":       {KeepAliveIdle: &d},
	} {
		for side, tr := range map[string]Transport{"dialed": cli, "accepted": srv} {
			err := ApplyLive(tr, o)
			require.ErrorIs(t, err, ErrNotApplicable, "%s on the %s socket", name, side)
			require.NotContains(t, err.Error(), "udp", "%s on the %s socket", name, side)
		}
	}
	_, err := cli.Write([]byte("x"))
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(srv, b)
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
}
