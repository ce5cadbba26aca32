package taps

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// netPipe returns a connected pair of net.Conns over loopback: the client
// made by Dialer, the server by NetListener.
func netPipe(t *testing.T, sys *System, opts ...PreconnectionOption) (client, server net.Conn) {
	t.Helper()
	ctx := testCtx(t)
	ln := listenLoopback(t, sys)
	nl := ln.NetListener()
	t.Cleanup(func() { _ = nl.Close() })
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := nl.Accept()
		ch <- res{c, err}
	}()
	dial := Dialer(NewPreconnection(append([]PreconnectionOption{WithSystem(sys)}, opts...)...))
	client, err := dial(ctx, "tcp", nl.Addr().String())
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { _ = client.Close(); _ = r.c.Close() })
	return client, r.c
}

func TestNetConnEchoAndAddrs(t *testing.T) {
	sys := newTestSystem(t)
	client, server := netPipe(t, sys)

	require.Equal(t, "tcp", client.LocalAddr().Network())
	require.Equal(t, client.LocalAddr().String(), server.RemoteAddr().String())
	require.Equal(t, client.RemoteAddr().String(), server.LocalAddr().String())

	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil {
			done <- err
			return
		}
		_, err := server.Write(buf)
		done <- err
	}()
	_, err := client.Write([]byte("hello"))
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	require.NoError(t, <-done)
}

func TestNetConnEOFAfterPeerClose(t *testing.T) {
	sys := newTestSystem(t)
	client, server := netPipe(t, sys)
	_, err := server.Write([]byte("bye, and thanks"))
	require.NoError(t, err)
	require.NoError(t, server.Close())

	// small reads: the leftover of each receive is kept for the next Read
	var got []byte
	buf := make([]byte, 3)
	for {
		n, err := client.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, "bye, and thanks", string(got))
	n, err := client.Read(buf)
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)

	var ne net.Error
	_, err = server.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorAs(t, err, &ne)
	require.ErrorIs(t, server.Close(), net.ErrClosed)
}

func TestNetConnReadDeadline(t *testing.T) {
	sys := newTestSystem(t)
	client, server := netPipe(t, sys)

	require.NoError(t, client.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err := client.Read(make([]byte, 10))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	// A pending Read is interrupted by a deadline in the past (what
	// net/http does to abort its background read).
	require.NoError(t, client.SetReadDeadline(time.Time{}))
	errc := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 10))
		errc <- err
	}()
	// the read is pending or about to be: either way it must end
	require.NoError(t, client.SetReadDeadline(time.Unix(1, 0)))
	require.ErrorIs(t, <-errc, os.ErrDeadlineExceeded)

	// Cleared, the conn reads again, and nothing was lost.
	require.NoError(t, client.SetReadDeadline(time.Time{}))
	_, err = server.Write([]byte("late"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err)
	require.Equal(t, "late", string(buf))
}

func TestNetConnCloseUnblocksRead(t *testing.T) {
	sys := newTestSystem(t)
	client, _ := netPipe(t, sys)
	errc := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 10))
		errc <- err
	}()
	require.NoError(t, client.Close())
	require.ErrorIs(t, <-errc, net.ErrClosed)
	require.ErrorIs(t, client.SetDeadline(time.Now()), net.ErrClosed)
}

func TestNetConnCloseWrite(t *testing.T) {
	sys := newTestSystem(t)
	client, server := netPipe(t, sys)
	closeWriteBothWays(t, client, server)
}

// With a framer, CloseWrite is a half-close too (it once closed the whole
// connection): the peer reads what was written, then io.EOF, and can still
// answer; a peer reading with Receive gets an empty message and then the
// end of the stream.
func TestNetConnCloseWriteFramed(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	nl := ln.NetListener()
	t.Cleanup(func() { _ = nl.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := nl.Accept()
		accepted <- c
	}()
	pre := NewPreconnection(WithSystem(sys))
	pre.AddFramer(framers.NewLengthPrefix())
	client, err := Dialer(pre)(testCtx(t), "tcp", nl.Addr().String())
	require.NoError(t, err)
	server := <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	closeWriteBothWays(t, client, server)

	// a peer on the message API sees the empty final message
	go func() {
		c, _ := nl.Accept()
		accepted <- c
	}()
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	srv := <-accepted
	require.NotNil(t, srv)
	t.Cleanup(func() { _ = srv.Close() })
	require.NoError(t, srv.(interface{ CloseWrite() error }).CloseWrite())
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, m.Data, "the empty message CloseWrite framed")
	_, err = c.Receive(testCtx(t))
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, c.Close())
}

// closeWriteBothWays checks a half-close in each direction: data written
// before CloseWrite arrives, then io.EOF, while the other way still works.
func closeWriteBothWays(t *testing.T, client, server net.Conn) {
	t.Helper()
	_, err := client.Write([]byte("request"))
	require.NoError(t, err)
	require.NoError(t, client.(interface{ CloseWrite() error }).CloseWrite())
	_, err = client.Write([]byte("more"))
	require.ErrorIs(t, err, errWriteClosed)
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	require.Equal(t, "request", string(got))
	// a half-close: the server still answers, and the client reads the
	// answer and then the server's end of stream
	_, err = server.Write([]byte("reply"))
	require.NoError(t, err)
	require.NoError(t, server.(interface{ CloseWrite() error }).CloseWrite())
	got, err = io.ReadAll(client)
	require.NoError(t, err)
	require.Equal(t, "reply", string(got))
	require.NoError(t, client.Close())
	require.NoError(t, server.Close())
}

func TestNetListenerClose(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	nl := ln.NetListener()
	require.Equal(t, ln.Addr().String(), nl.Addr().String())
	errc := make(chan error, 1)
	go func() {
		_, err := nl.Accept()
		errc <- err
	}()
	require.NoError(t, nl.Close())
	require.ErrorIs(t, <-errc, net.ErrClosed)
	<-ln.Done()
	_, err := nl.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, nl.Close(), net.ErrClosed)
}

func TestDialerErrors(t *testing.T) {
	sys := newTestSystem(t)
	dial := Dialer(NewPreconnection(WithSystem(sys)))
	ctx := testCtx(t)
	_, err := dial(ctx, "udp", "127.0.0.1:1")
	require.Error(t, err)
	_, err = dial(ctx, "tcp", "no-port")
	require.Error(t, err)
	_, err = dial(ctx, "tcp", "127.0.0.1:") // no port (an empty host is the local system)
	require.ErrorIs(t, err, ErrInvalidEndpoint)

	// a closed port: the error is a *net.OpError around the
	// EstablishmentError
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := probe.Addr().String()
	require.NoError(t, probe.Close())
	_, err = dial(ctx, "tcp", addr)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestRemoteFromHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:80":   "127.0.0.1:80",
		"[::1]:443":      "[::1]:443",
		"localhost:8080": "localhost:8080",
		"example.org:80": "example.org:80",
	} {
		r, err := remoteFromHostPort(in)
		require.NoError(t, err, in)
		require.Equal(t, want, r.String())
	}
	r, err := remoteFromHostPort("example.org:http")
	require.NoError(t, err)
	m, err := r.e.toMessage(true, true)
	require.NoError(t, err)
	require.EqualValues(t, 80, m.Port)
}

// TestWithRemotesCopiesEveryField guards withRemotes: every field but the
// remotes is copied.
func TestWithRemotesCopiesEveryField(t *testing.T) {
	pre := NewPreconnection(WithAttemptDelay(time.Second), WithLingerTimeout(time.Minute),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("192.0.2.1").WithPort(1)))
	r := NewRemoteEndpoint().WithIPAddress("192.0.2.2").WithPort(2)
	q := pre.withRemotes(r)
	require.Equal(t, []*RemoteEndpoint{r}, q.remotes)
	require.Equal(t, time.Second, q.attemptDelay)
	require.Equal(t, time.Minute, q.linger)
	require.Same(t, pre.sys, q.sys)
	want := pre.preconnState
	want.remotes = []*RemoteEndpoint{r}
	require.True(t, reflect.DeepEqual(want, q.preconnState))
}

// TestNetConnConformance runs the x/net/nettest net.Conn conformance suite
// over a gotaps connection pair.
func TestNetConnConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	nettest.TestConn(t, makeNetPipe(func() []framers.Framer { return nil }))
}

// makeNetPipe returns a nettest.MakePipe over a gotaps connection pair on
// loopback, each side with the framers fs makes.
func makeNetPipe(fs func() []framers.Framer) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		sys := NewSystem()
		shutdown := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = sys.Shutdown(ctx)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// small buffers: writes block soon when the peer does not read
		bufs := []PreconnectionOption{WithSystem(sys), WithSendBuffer(64 << 10), WithReceiveBuffer(64 << 10)}
		pre := NewPreconnection(append(bufs, WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))...)
		for _, f := range fs() {
			pre.AddFramer(f)
		}
		ln, err := pre.Listen(ctx)
		if err != nil {
			shutdown()
			return nil, nil, nil, err
		}
		nl := ln.NetListener()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c2, _ = nl.Accept()
		}()
		dpre := NewPreconnection(bufs...)
		for _, f := range fs() {
			dpre.AddFramer(f)
		}
		c1, err = Dialer(dpre)(ctx, "tcp", nl.Addr().String())
		wg.Wait()
		_ = nl.Close()
		if err != nil || c2 == nil {
			if c1 != nil {
				_ = c1.Close()
			}
			shutdown()
			return nil, nil, nil, errors.Join(err, errors.New("no accepted connection"))
		}
		return c1, c2, func() { _ = c1.Close(); _ = c2.Close(); shutdown() }, nil
	}
}

// Dialer: "tcp4" and "tcp6" restrict the addresses raced to their family,
// as net.Dial does (they connected to whichever family won): a host name
// with both is reached over the family asked for, an IP address of the
// other family fails before any packet, and an empty host is the local
// system.
func TestDialerNetworkFamily(t *testing.T) {
	sys := newTestSystem(t)
	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln4.Close()
	port := ln4.Addr().(*net.TCPAddr).Port
	ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("no [::1]:%d beside 127.0.0.1:%d: %v", port, port, err)
	}
	defer ln6.Close()
	for _, ln := range []net.Listener{ln4, ln6} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	both := WithResolver(func(_ context.Context, network, host string) ([]netip.Addr, error) {
		// the name has both families; the answer of either query holds
		// both, as a sloppy resolver might give
		return []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")}, nil
	})
	dial := Dialer(NewPreconnection(WithSystem(sys), both))
	ctx := testCtx(t)
	for _, tt := range []struct{ network, addr, want string }{
		{"tcp4", "both.test", "127.0.0.1"},
		{"tcp6", "both.test", "::1"},
		{"tcp4", "", "127.0.0.1"},
		{"tcp6", "", "::1"},
		{"tcp4", "127.0.0.1", "127.0.0.1"},
		{"tcp6", "::1", "::1"},
	} {
		nc, err := dial(ctx, tt.network, net.JoinHostPort(tt.addr, strconv.Itoa(port)))
		require.NoError(t, err, "%s %q", tt.network, tt.addr)
		got := nc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()
		_ = nc.Close()
		require.Equal(t, tt.want, got, "%s %q", tt.network, tt.addr)
	}
	for _, tt := range []struct{ network, addr string }{{"tcp4", "::1"}, {"tcp6", "127.0.0.1"}, {"tcp6", "::ffff:127.0.0.1"}} {
		_, err := dial(ctx, tt.network, net.JoinHostPort(tt.addr, strconv.Itoa(port)))
		var ae *net.AddrError
		require.ErrorAs(t, err, &ae, "%s %s", tt.network, tt.addr)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, tt.network, oe.Net)
	}
	nc, err := dial(ctx, "tcp", ":"+strconv.Itoa(port)) // localhost: either family
	require.NoError(t, err)
	_ = nc.Close()
}
