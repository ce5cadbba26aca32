package taps

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// refusalTracer returns a System whose "ConnectionRefused" trace records
// arrive on the returned channel.
func refusalTracer(t *testing.T) (*System, <-chan TraceRecord) {
	t.Helper()
	refused := make(chan TraceRecord, 64)
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "listener" && r.Event == "ConnectionRefused" {
			select {
			case refused <- *r:
			default:
			}
		}
	}))
	return sys, refused
}

// awaitRefusal waits for the next refusal and checks it names a peer at
// host (any peer when host is empty).
func awaitRefusal(t *testing.T, refused <-chan TraceRecord, host string) TraceRecord {
	t.Helper()
	select {
	case r := <-refused:
		if host != "" {
			require.True(t, strings.HasPrefix(r.Remote, host+":"), "refused %s, want a peer at %s", r.Remote, host)
		}
		return r
	case <-testCtx(t).Done():
		t.Fatalf("no refusal of the peer at %s", host)
		return TraceRecord{}
	}
}

// listenRestricted listens on 127.0.0.1 with the given remote endpoints
// (and a length-prefix framer when framed).
func listenRestricted(t *testing.T, sys *System, framed bool, opts []PreconnectionOption, remotes ...*RemoteEndpoint) (*Listener, netip.AddrPort) {
	t.Helper()
	opts = append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(remotes...),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))}, opts...)
	pre := NewPreconnection(opts...)
	if framed {
		pre.AddFramer(framers.NewLengthPrefix())
	}
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	return ln, ap
}

// dialTCPFrom connects to to from a local address (Linux routes the whole
// of 127/8 to the loopback interface).
func dialTCPFrom(t *testing.T, from netip.AddrPort, to netip.AddrPort) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from)}
	c, err := d.DialContext(testCtx(t), "tcp", to.String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// requireRefusedStream checks that the listener ended the peer's stream:
// a reset (TCP) or end of stream, before anything was received.
func requireRefusedStream(t *testing.T, c net.Conn) {
	t.Helper()
	dl, _ := testCtx(t).Deadline()
	require.NoError(t, c.SetReadDeadline(dl))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n)
	require.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF), "read: %v", err)
}

// dialTCPRefused connects to to from a local address the listener refuses
// and checks it is reset: the reset may even come before connect returns.
func dialTCPRefused(t *testing.T, from netip.AddrPort, to netip.AddrPort) {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from)}
	c, err := d.DialContext(testCtx(t), "tcp", to.String())
	if err != nil {
		require.ErrorIs(t, err, syscall.ECONNRESET)
		return
	}
	defer c.Close()
	requireRefusedStream(t, c)
}

// acceptFrom accepts the next connection and checks it comes from host;
// it returns the peer's address.
func acceptFrom(t *testing.T, ln *Listener, host string) (*Connection, netip.AddrPort) {
	t.Helper()
	c, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	ap, err := netip.ParseAddrPort(c.GetProperties().Remote.String())
	require.NoError(t, err)
	require.Equal(t, host, ap.Addr().String())
	return c, ap
}

func TestListenerAcceptsOnlyItsRemoteEndpointsTCP(t *testing.T) {
	sys, refused := refusalTracer(t)
	ctx := testCtx(t)
	ln, ap := listenRestricted(t, sys, false, []PreconnectionOption{WithProtocols("tcp")},
		NewRemoteEndpoint().WithIPAddress("127.0.0.2"))

	dialTCPRefused(t, netip.MustParseAddrPort("127.0.0.3:0"), ap)
	r := awaitRefusal(t, refused, "127.0.0.3")
	require.Equal(t, "tcp", r.Stack)
	require.EqualValues(t, 1, ln.Refused())

	good := dialTCPFrom(t, netip.MustParseAddrPort("127.0.0.2:0"), ap)
	_, err := good.Write([]byte("hello"))
	require.NoError(t, err)
	// the refused peer came first: had it been received, Accept would
	// return it now
	c, _ := acceptFrom(t, ln, "127.0.0.2")
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	require.EqualValues(t, 1, ln.Refused())
}

func TestListenerRemoteEndpointPortMustMatch(t *testing.T) {
	sys, refused := refusalTracer(t)
	// a free port to dial from, known before the listener starts
	probe, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	port := probe.Addr().(*net.TCPAddr).AddrPort().Port()
	require.NoError(t, probe.Close())
	ln, ap := listenRestricted(t, sys, false, []PreconnectionOption{WithProtocols("tcp")},
		NewRemoteEndpoint().WithIPAddress("127.0.0.2").WithPort(port))

	dialTCPRefused(t, netip.MustParseAddrPort("127.0.0.2:0"), ap) // the right address, another port
	awaitRefusal(t, refused, "127.0.0.2")

	dialTCPFrom(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port), ap)
	_, from := acceptFrom(t, ln, "127.0.0.2")
	require.Equal(t, port, from.Port())
	require.EqualValues(t, 1, ln.Refused())
}

// TestListenerRemoteHostNameIsResolved: a remote endpoint given by name is
// resolved with the system's resolver (localhost: 127.0.0.1 in /etc/hosts).
func TestListenerRemoteHostNameIsResolved(t *testing.T) {
	sys, refused := refusalTracer(t)
	ln, ap := listenRestricted(t, sys, false, []PreconnectionOption{WithProtocols("tcp")},
		NewRemoteEndpoint().WithHostName("localhost"))

	dialTCPRefused(t, netip.MustParseAddrPort("127.0.0.3:0"), ap)
	awaitRefusal(t, refused, "127.0.0.3")

	dialTCPFrom(t, netip.MustParseAddrPort("127.0.0.1:0"), ap)
	acceptFrom(t, ln, "127.0.0.1")
}

func TestListenerRemoteNameThatDoesNotResolveFailsListen(t *testing.T) {
	sys := newTestSystem(t)
	_, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("no-such-host.invalid"))).Listen(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee, "no remote endpoint resolves: nobody could connect")
}

func TestListenerAcceptsOnlyItsRemoteEndpointsUDP(t *testing.T) {
	sys, refused := refusalTracer(t)
	ctx := testCtx(t)
	ln, ap := listenRestricted(t, sys, false, []PreconnectionOption{WithTransportProperties(NewTransportProperties(UnreliableDatagram))},
		NewRemoteEndpoint().WithIPAddress("127.0.0.2"))
	dialUDPFrom := func(from string) *net.UDPConn {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from+":0")), net.UDPAddrFromAddrPort(ap))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	bad := dialUDPFrom("127.0.0.3")
	_, err := bad.Write([]byte("refused"))
	require.NoError(t, err)
	r := awaitRefusal(t, refused, "127.0.0.3")
	require.Equal(t, "udp", r.Stack)

	good := dialUDPFrom("127.0.0.2")
	_, err = good.Write([]byte("accepted"))
	require.NoError(t, err)
	c, _ := acceptFrom(t, ln, "127.0.0.2")
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "accepted", string(m.Data))

	// the refused peer's later datagrams are dropped too, never a connection
	_, err = bad.Write([]byte("refused again"))
	require.NoError(t, err)
	awaitRefusal(t, refused, "127.0.0.3")
	require.EqualValues(t, 2, ln.Refused())
	require.NoError(t, c.Send(ctx, []byte("reply"), nil))
	b := make([]byte, 16)
	n, err := good.Read(b)
	require.NoError(t, err)
	require.Equal(t, "reply", string(b[:n]))
}

// TestListenerRefusesSecurePeersBeforeTheHandshake: a refused QUIC client
// gets CONNECTION_REFUSED, a refused TLS client a reset before the
// handshake; both Initiates fail, the listener never reports them.
func TestListenerRefusesSecurePeersBeforeTheHandshake(t *testing.T) {
	pki := newTestPKI(t)
	for _, stack := range []string{"quic", "tls"} {
		t.Run(stack, func(t *testing.T) {
			sys, refused := refusalTracer(t)
			ln, ap := listenRestricted(t, sys, true, []PreconnectionOption{WithProtocols(stack), WithSecurityParameters(pki.serverSec())},
				NewRemoteEndpoint().WithIPAddress("127.0.0.2"))
			echoServer(t, ln)
			initiateFrom := func(from string) (*Connection, error) {
				pre := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithSecurityParameters(pki.clientSec()),
					WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(from)),
					WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
				pre.AddFramer(framers.NewLengthPrefix())
				return pre.Initiate(testCtx(t))
			}

			_, err := initiateFrom("127.0.0.3")
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			r := awaitRefusal(t, refused, "127.0.0.3")
			require.Equal(t, stack, r.Stack)

			c, err := initiateFrom("127.0.0.2")
			require.NoError(t, err)
			roundTrip(t, c, "from an allowed peer")
			require.NoError(t, c.Close())
			<-c.Done()
			// QUIC refuses each Initial packet of the refused client (a
			// ClientHello may take two)
			require.GreaterOrEqual(t, ln.Refused(), uint64(1))
		})
	}
}

func TestListenerRemoteUnixPath(t *testing.T) {
	sys, refused := refusalTracer(t)
	dir := t.TempDir()
	path, allowed := filepath.Join(dir, "ln.sock"), filepath.Join(dir, "client.sock")
	ln, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(allowed))).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)

	bad, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"}) // unbound: no address
	require.NoError(t, err)
	t.Cleanup(func() { bad.Close() })
	requireRefusedStream(t, bad)
	r := awaitRefusal(t, refused, "")
	require.Equal(t, "unix", r.Stack)

	good, err := net.DialUnix("unix", &net.UnixAddr{Name: allowed, Net: "unix"}, &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	t.Cleanup(func() { good.Close() })
	c, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	require.Equal(t, allowed, c.GetProperties().Remote.String())
	require.EqualValues(t, 1, ln.Refused())
}
