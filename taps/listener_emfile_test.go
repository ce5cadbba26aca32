//go:build linux

package taps

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// emfileChildEnv tells the listening process of TestListenerEMFILE how
// many connections to expect.
const emfileChildEnv = "GOTAPS_EMFILE_CHILD"

// BUG (EMFILE): a Listener whose accept failed with EMFILE (the process
// out of file descriptors, as a busy server gets) stopped for good: every
// later connection was refused. It waits and accepts again instead, as
// net/http's Server.Serve does.
//
// The listening side runs in a child process (this test binary,
// TestListenerEMFILEChild), whose file descriptor limit it lowers until
// accept fails; at the first AcceptRetry it closes what it holds and
// restores the limit, and must then receive every connection this process
// dialed.
func TestListenerEMFILE(t *testing.T) {
	const n = 30
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dialed []net.Conn
	defer func() {
		for _, c := range dialed {
			_ = c.Close()
		}
	}()
	var dialErrs []error
	run := runEMFILEChild(t, ctx, "TestListenerEMFILEChild", emfileChildEnv+"="+strconv.Itoa(n), func(addr string) {
		var d net.Dialer
		for range n {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				dialErrs = append(dialErrs, err)
				continue
			}
			dialed = append(dialed, c)
		}
	})
	require.NotEmpty(t, run.addr, "the child did not listen; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.NoError(t, run.err, "the child failed; stdout %q, stderr:\n%s", run.stdout, run.stderr)
	require.Equal(t, fmt.Sprintf("got=%d retry=true stopped=false", n), run.result,
		"the listener must wait out EMFILE and receive every connection (dial errors: %v); stderr:\n%s", dialErrs, run.stderr)
	require.Empty(t, dialErrs)
}

// TestListenerEMFILEChild is the listening process of TestListenerEMFILE;
// it does nothing in an ordinary test run. It writes "emfile-addr <addr>"
// once it listens with its file descriptor limit lowered, then
// "emfile-result got=<connections received> retry=<AcceptRetry seen>
// stopped=<the Listener stopped>".
func TestListenerEMFILEChild(t *testing.T) {
	spec := os.Getenv(emfileChildEnv)
	if spec == "" {
		t.Skip("the listening process of TestListenerEMFILE")
	}
	n, err := strconv.Atoi(spec)
	require.NoError(t, err)
	retry := make(chan struct{}, 1)
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "listener" && r.Event == "AcceptRetry" {
			select {
			case retry <- struct{}{}:
			default:
			}
		}
	}))
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	conns := make(chan *Connection, n)
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
		select {
		case conns <- c:
		default:
			c.Abort() // more than expected
		}
	})

	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	orig := lim
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig))
		}
	}
	defer restore()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	// room for a few connections: a new file descriptor takes the lowest
	// number free, which must be below the limit (the directory's, counted
	// in fds, is closed by now)
	lim.Cur = uint64(len(fds) + 3)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	fmt.Printf("emfile-addr %s\n", ln.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var held []*Connection
	defer func() {
		for _, c := range held {
			c.Abort()
		}
	}()
	got, sawRetry, stopped := 0, false, false
loop:
	for got < n {
		select {
		case c := <-conns:
			got++
			held = append(held, c)
		case <-retry:
			if !sawRetry {
				sawRetry = true
				for _, c := range held {
					c.Abort()
				}
				held = nil
				restore()
			}
		case <-ln.Done():
			stopped = true
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	restore()
	fmt.Printf("emfile-result got=%d retry=%t stopped=%t\n", got, sawRetry, stopped)
}
