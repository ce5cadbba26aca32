//go:build linux

package taps

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Bug hunt on connection properties set on an open Connection: what
// SetProperty does is read back from the kernel with getsockopt on the
// connection's own socket (found through /proc/self/fd by its local and
// remote address), not through GetProperties.

// kernelSock is one socket of this process, found by its addresses.
type kernelSock struct {
	t  *testing.T
	fd int
}

// sockOf finds the socket of type typ bound to local and connected to
// remote (remote invalid: not connected, a listener's).
func sockOf(t *testing.T, typ int, local, remote netip.AddrPort) kernelSock {
	t.Helper()
	fd := findSocket(t, typ, local, func(fd int) bool {
		pa, err := unix.Getpeername(fd)
		return (err != nil) == !remote.IsValid() && (err != nil || sockaddrAddrPort(pa) == remote)
	})
	return kernelSock{t, fd}
}

// tcpSockOf is c's TCP socket.
func tcpSockOf(t *testing.T, c *Connection) kernelSock {
	t.Helper()
	p := c.GetProperties()
	l, ok := p.Local.Addr()
	require.True(t, ok)
	r := remoteAddrPort(t, p.Remote)
	return sockOf(t, unix.SOCK_STREAM, l, r)
}

// remoteAddrPort is the IP address and port of a connection's remote.
func remoteAddrPort(t *testing.T, r *RemoteEndpoint) netip.AddrPort {
	t.Helper()
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	a, err := netip.ParseAddr(r.e.ip)
	require.NoError(t, err)
	return netip.AddrPortFrom(a.Unmap(), uint16(r.e.port))
}

func (k kernelSock) int(level, name int) int {
	k.t.Helper()
	v, err := unix.GetsockoptInt(k.fd, level, name)
	require.NoError(k.t, err)
	return v
}

func (k kernelSock) userTimeout() time.Duration {
	return time.Duration(k.int(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
}

// keepAlive is SO_KEEPALIVE and, when on, TCP_KEEPIDLE.
func (k kernelSock) keepAlive() (bool, time.Duration) {
	if k.int(unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 0 {
		return false, 0
	}
	return true, time.Duration(k.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
}

// dscp is the DSCP of IP_TOS (AF_INET) or IPV6_TCLASS (AF_INET6).
func (k kernelSock) dscp() uint8 {
	k.t.Helper()
	if k.int(unix.SOL_SOCKET, unix.SO_DOMAIN) == unix.AF_INET6 {
		return uint8(k.int(unix.IPPROTO_IPV6, unix.IPV6_TCLASS) >> 2)
	}
	return uint8(k.int(unix.IPPROTO_IP, unix.IP_TOS) >> 2)
}

// TestLivePropsHuntAliasNamesApplyLive: SetProperty takes every spelling
// ParseProperty accepts (RFC 9622 §4.1: names are case-insensitive); one
// set under another spelling than the canonical name must reach the socket
// and read back, and the read-only tcp.userTimeoutChangeable stays
// read-only under its seed alias.
func TestLivePropsHuntAliasNamesApplyLive(t *testing.T) {
	sys := newTestSystem(t)
	c := tcpAccepted(t, sys)
	defer func() { c.Abort(); <-c.Done() }()
	k := tcpSockOf(t, c)

	require.NoError(t, c.SetProperty("conn-timeout", 6*time.Second))
	require.Equal(t, 6*time.Second, k.userTimeout(), "TCP_USER_TIMEOUT from conn-timeout")
	require.NoError(t, c.SetProperty("CONN_CAPACITY_PROFILE", CapacitySeeking))
	require.Equal(t, uint8(10), k.dscp(), "AF11 from CONN_CAPACITY_PROFILE")
	p := c.GetProperties()
	require.NotNil(t, p.Properties, "the properties still decode")
	v, _ := p.Get(ConnTimeout)
	require.Equal(t, 6*time.Second, v)
	v, _ = p.Get(ConnCapacityProfile)
	require.Equal(t, CapacitySeeking, v)

	err := c.SetProperty("tcp.user-timeout-recv", true)
	require.ErrorIs(t, err, ErrReadOnlyProperty, "tcp.userTimeoutChangeable under its seed name")
	v, _ = c.GetProperties().Get(TCPUserTimeoutChangeable)
	require.Equal(t, false, v)
}

// TestLivePropsHuntConnTimeoutRulesKeepAlive: a keepAliveTimeout longer
// than connTimeout means no keep-alives (RFC 9622 §8.1.4); the live socket
// must follow when connTimeout changes after keepAliveTimeout, as a new
// socket of the connection would.
func TestLivePropsHuntConnTimeoutRulesKeepAlive(t *testing.T) {
	sys := newTestSystem(t)
	c := tcpAccepted(t, sys)
	defer func() { c.Abort(); <-c.Done() }()
	k := tcpSockOf(t, c)

	require.NoError(t, c.SetProperty(KeepAliveTimeout, 10*time.Second))
	on, idle := k.keepAlive()
	require.True(t, on)
	require.Equal(t, 10*time.Second, idle)
	require.NoError(t, c.SetProperty(ConnTimeout, 5*time.Second))
	require.Equal(t, 5*time.Second, k.userTimeout())
	on, _ = k.keepAlive()
	require.False(t, on, "keepAliveTimeout 10s > connTimeout 5s: no keep-alives")
	require.False(t, c.GetProperties().Selected[KeepAlive])

	require.NoError(t, c.SetProperty(ConnTimeout, Disabled))
	require.Zero(t, k.userTimeout())
	on, idle = k.keepAlive()
	require.True(t, on, "connTimeout Disabled: keepAliveTimeout applies again")
	require.Equal(t, 10*time.Second, idle)
}

// TestLivePropsHuntInvalidValuesChangeNothing: every refused SetProperty is
// a *PropertyError with the matching sentinel, and neither the socket nor
// the properties read back change.
func TestLivePropsHuntInvalidValuesChangeNothing(t *testing.T) {
	sys := newTestSystem(t)
	c := tcpAccepted(t, sys)
	defer func() { c.Abort(); <-c.Done() }()
	k := tcpSockOf(t, c)
	require.NoError(t, c.SetProperty(ConnTimeout, 8*time.Second))
	require.NoError(t, c.SetProperty(KeepAliveTimeout, 4*time.Second))
	require.NoError(t, c.SetProperty(ConnCapacityProfile, LowLatencyNonInteractive))
	require.NoError(t, c.SetProperty(ConnPriority, 3))
	before := c.GetProperties()

	for i, tt := range []struct {
		p    Property
		v    any
		want error
	}{
		{ConnTimeout, -time.Second, ErrInvalidPropertyValue},
		{ConnTimeout, time.Duration(0), ErrInvalidPropertyValue},
		{ConnTimeout, "5s", ErrInvalidPropertyType},
		{ConnTimeout, Unlimited, ErrInvalidPropertyValue},
		{KeepAliveTimeout, -5 * time.Second, ErrInvalidPropertyValue},
		{TCPUserTimeoutValue, -time.Millisecond, ErrInvalidPropertyValue},
		{TCPUserTimeoutEnabled, 1, ErrInvalidPropertyType},
		{ConnCapacityProfile, CapacityProfile(99), ErrInvalidPropertyValue},
		{ConnCapacityProfile, uint8(46), ErrInvalidPropertyType},
		{ConnPriority, -1, ErrInvalidPropertyValue},
		{ConnScheduler, Scheduler(200), ErrInvalidPropertyValue},
		{MultipathPolicy, MultipathPolicyMode(9), ErrInvalidPropertyValue},
		{MaxSendRate, 0, ErrInvalidPropertyValue},
		{MinSendRate, int64(-8), ErrInvalidPropertyValue},
		{IsolateSession, "yes", ErrInvalidPropertyType},
		{"zeroRttMsgMax", int64(1), ErrUnknownProperty},
		{"noSuchProperty", 1, ErrUnknownProperty},
		{SingularTransmissionMsgMaxLen, int64(1), ErrReadOnlyProperty},
		{SendMsgMaxLen, int64(1), ErrReadOnlyProperty},
		{RecvMsgMaxLen, int64(1), ErrReadOnlyProperty},
		{ConnState, StateClosed, ErrReadOnlyProperty},
		{CanSend, false, ErrReadOnlyProperty},
		{TCPUserTimeoutChangeable, true, ErrReadOnlyProperty},
	} {
		err := c.SetProperty(tt.p, tt.v)
		var pe *PropertyError
		if !errors.As(err, &pe) || !errors.Is(err, tt.want) {
			t.Errorf("#%d: SetProperty(%s, %v) = %v; want a *PropertyError wrapping %v", i, tt.p, tt.v, err, tt.want)
		}
	}
	require.Equal(t, StateEstablished, c.State())
	after := c.GetProperties()
	require.Equal(t, before.Properties, after.Properties, "no property changed")
	require.Equal(t, 8*time.Second, k.userTimeout())
	on, idle := k.keepAlive()
	require.True(t, on)
	require.Equal(t, 4*time.Second, idle)
	require.Equal(t, uint8(18), k.dscp())
}

// TestLivePropsHuntClosedConnection: SetProperty on a closed or aborted
// connection fails with an error unwrapping to ErrClosed, valid value or
// not.
func TestLivePropsHuntClosedConnection(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	for _, end := range []string{"close", "abort", "peer"} {
		c := dialTCP(t, sys, ln)
		srv := <-accepted
		switch end {
		case "close":
			require.NoError(t, c.Close())
		case "abort":
			c.Abort()
		case "peer":
			srv.Abort()
		}
		<-c.Done()
		err := c.SetProperty(ConnTimeout, 5*time.Second)
		require.ErrorIs(t, err, ErrClosed, end)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe, end)
		require.ErrorIs(t, c.SetProperty(ConnPriority, 1), ErrClosed, end)
		srv.Abort()
	}
}

// TestLivePropsHuntDSCPEveryFamily: connCapacityProfile set on an open TCP
// or UDP connection over IPv4 and IPv6 is IP_TOS or IPV6_TCLASS at once.
func TestLivePropsHuntDSCPEveryFamily(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, stack := range []string{"tcp", "udp"} {
			t.Run(stack+"/"+host, func(t *testing.T) {
				sys := newTestSystem(t)
				tp := NewTransportProperties()
				typ := unix.SOCK_STREAM
				if stack == "udp" {
					tp = datagramProps(t)
					typ = unix.SOCK_DGRAM
				}
				srv := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithTransportProperties(tp),
					WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(host).WithPort(0)))
				ln, err := srv.Listen(testCtx(t))
				if err != nil && host == "::1" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				require.NoError(t, err)
				accepted := acceptAll(t, ln)
				c, err := NewPreconnection(WithSystem(sys), WithProtocols(stack), WithTransportProperties(tp),
					WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
				require.NoError(t, err)
				defer func() { c.Abort(); <-c.Done() }()
				if stack == "udp" {
					require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
				}
				s := <-accepted
				defer s.Abort()
				p := c.GetProperties()
				l, _ := p.Local.Addr()
				k := sockOf(t, typ, l, remoteAddrPort(t, p.Remote))
				for _, cp := range []CapacityProfile{LowLatencyInteractive, Scavenger, CapacityDefault} {
					require.NoError(t, c.SetProperty(ConnCapacityProfile, cp))
					require.Equal(t, cp.DSCP(), k.dscp(), "%v", cp)
					require.Equal(t, cp.DSCP(), c.GetProperties().Socket.DSCP, "%v read back", cp)
				}
			})
		}
	}
}

// TestLivePropsHuntAcceptedTCPPerConnection: properties set on one
// connection a Listener accepted change its own socket only: not the
// listening socket, not a sibling accepted from it.
func TestLivePropsHuntAcceptedTCPPerConnection(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	c1, c2 := dialTCP(t, sys, ln), dialTCP(t, sys, ln)
	defer func() { c1.Abort(); c2.Abort() }()
	s1, s2 := <-accepted, <-accepted
	defer func() { s1.Abort(); s2.Abort() }()
	k1, k2 := tcpSockOf(t, s1), tcpSockOf(t, s2)
	kl := sockOf(t, unix.SOCK_STREAM, listenerAddr(t, ln), netip.AddrPort{})

	require.NoError(t, s1.SetProperty(ConnCapacityProfile, ConstantRateStreaming))
	require.NoError(t, s1.SetProperty(ConnTimeout, 3*time.Second))
	require.NoError(t, s1.SetProperty(KeepAliveTimeout, 2*time.Second))
	require.Equal(t, uint8(26), k1.dscp(), "AF31 on the accepted socket")
	require.Equal(t, 3*time.Second, k1.userTimeout())
	on, idle := k1.keepAlive()
	require.True(t, on)
	require.Equal(t, 2*time.Second, idle)
	require.Zero(t, kl.dscp(), "the listener's socket")
	require.Zero(t, k2.dscp(), "the sibling's socket")
	require.Zero(t, k2.userTimeout())
	on, _ = k2.keepAlive()
	require.False(t, on)
	v, _ := s2.GetProperties().Get(ConnCapacityProfile)
	require.Equal(t, CapacityDefault, v, "not a group: nothing entangled")
}

// TestLivePropsHuntAcceptedUDPPerConnection: an accepted UDP connection
// shares its Listener's socket. connCapacityProfile set on it must either
// fail (nothing changed) or mark its own datagrams only: never the shared
// socket every other peer's datagrams leave by.
func TestLivePropsHuntAcceptedUDPPerConnection(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	srv := NewPreconnection(WithSystem(sys), WithProtocols("udp"), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	accepted := acceptAll(t, ln)
	var peers []*Connection
	for range 2 {
		c, err := NewPreconnection(WithSystem(sys), WithProtocols("udp"), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
		require.NoError(t, err)
		defer c.Abort()
		require.NoError(t, c.Send(testCtx(t), []byte("hi"), nil))
		s := <-accepted
		defer s.Abort()
		peers = append(peers, s)
	}
	kl := sockOf(t, unix.SOCK_DGRAM, listenerAddr(t, ln), netip.AddrPort{})
	err = peers[0].SetProperty(ConnCapacityProfile, LowLatencyInteractive)
	t.Logf("SetProperty on an accepted UDP connection: %v", err)
	require.Zero(t, kl.dscp(), "the shared socket keeps its DSCP")
	if err != nil {
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		v, _ := peers[0].GetProperties().Get(ConnCapacityProfile)
		require.Equal(t, CapacityDefault, v, "refused: nothing changed")
	}
	v, _ := peers[1].GetProperties().Get(ConnCapacityProfile)
	require.Equal(t, CapacityDefault, v)
}

// TestLivePropsHuntCloneAfterEntangledChange: a property set on one member
// is on the socket of a Clone made of another member right after
// SetProperty returned (the group knows the change before the Clone
// joins it).
func TestLivePropsHuntCloneAfterEntangledChange(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b, accepted := tcpGroupOfTwo(t, sys)
	for i := range 20 {
		want := time.Duration(i+1) * time.Second
		require.NoError(t, b.SetProperty(ConnTimeout, want))
		c, err := a.Clone(ctx)
		require.NoError(t, err)
		<-accepted
		require.Equal(t, want, tcpSockOf(t, c).userTimeout(), "#%d: the clone of a dials with b's connTimeout", i)
		v, _ := c.GetProperties().Get(ConnTimeout)
		require.Equal(t, want, v, "#%d", i)
		c.Abort()
		<-c.Done()
	}
}

// TestLivePropsHuntEntangledSocketsAndPriority: every socket-level
// property set on one member reaches the kernel of every other member,
// connPriority stays per connection, and a member re-established later
// dials with the values set on another member.
func TestLivePropsHuntEntangledSocketsAndPriority(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	ctx := testCtx(t)
	a := dialTCPReestablishing(t, sys, ln)
	defer func() { a.AbortGroup(); <-a.Done() }()
	sa := <-accepted
	b, err := a.Clone(ctx)
	require.NoError(t, err)
	<-accepted
	reestablished := make(chan struct{}, 1)
	a.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })

	require.NoError(t, b.SetProperty(ConnPriority, 7))
	require.NoError(t, b.SetProperty(MaxSendRate, int64(80_000_000)))
	require.NoError(t, b.SetProperty(ConnCapacityProfile, CapacitySeeking))
	require.NoError(t, b.SetProperty(KeepAliveTimeout, 6*time.Second))
	require.NoError(t, b.SetProperty(ConnTimeout, 9*time.Second))
	pacing := func(k kernelSock) uint64 {
		v, err := unix.GetsockoptUint64(k.fd, unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE)
		require.NoError(t, err)
		return v
	}
	check := func(which string, k kernelSock) {
		t.Helper()
		require.Equal(t, 9*time.Second, k.userTimeout(), which)
		on, idle := k.keepAlive()
		require.True(t, on, which)
		require.Equal(t, 6*time.Second, idle, which)
		require.Equal(t, uint8(10), k.dscp(), which)
		require.Equal(t, uint64(10_000_000), pacing(k), "%s: SO_MAX_PACING_RATE in bytes/s", which)
	}
	check("b", tcpSockOf(t, b))
	require.Eventually(t, func() bool {
		v, _ := a.GetProperties().Get(ConnTimeout)
		return v == 9*time.Second
	}, 5*time.Second, time.Millisecond, "the last change reached a")
	check("a", tcpSockOf(t, a))
	p, _ := a.GetProperties().Get(ConnPriority)
	require.Equal(t, int64(100), p, "connPriority is not entangled")

	sa.Abort() // a's peer resets: a re-establishes
	select {
	case <-reestablished:
	case <-ctx.Done():
		t.Fatal("not re-established")
	}
	<-accepted
	check("a re-established", tcpSockOf(t, a))
}

// TestLivePropsHuntKeepAliveSubSecond: TCP_KEEPIDLE counts whole seconds.
// A keepAliveTimeout that is not a whole number of seconds is valid (> 0):
// set on an open connection it must give the socket what a dial with the
// same value gives it (the net package rounds up), not fail.
func TestLivePropsHuntKeepAliveSubSecond(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	for _, d := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(KeepAliveTimeout, d))
		dialed, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
		require.NoError(t, err)
		<-accepted
		wantOn, wantIdle := tcpSockOf(t, dialed).keepAlive()
		require.True(t, wantOn, "%v at dial", d)

		c := dialTCP(t, sys, ln)
		<-accepted
		require.NoError(t, c.SetProperty(KeepAliveTimeout, d), "%v on the open connection", d)
		on, idle := tcpSockOf(t, c).keepAlive()
		require.True(t, on, "%v", d)
		require.Equal(t, wantIdle, idle, "%v: TCP_KEEPIDLE as a dial sets it", d)
		dialed.Abort()
		c.Abort()
	}
}

// TestLivePropsHuntDSCPOnDualStackAccepted: a wildcard Listener is a
// dual-stack socket: an IPv4 connection it accepts is an AF_INET6 socket
// with IPv4-mapped addresses. connCapacityProfile set on it is the IP_TOS
// its packets carry, and reads back as such.
func TestLivePropsHuntDSCPOnDualStackAccepted(t *testing.T) {
	sys := newTestSystem(t)
	srv := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithLocalEndpoint(NewLocalEndpoint().WithPort(0)))
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	accepted := acceptAll(t, ln)
	if a := listenerAddr(t, ln).Addr(); !a.Is6() || !a.IsUnspecified() {
		t.Skipf("the wildcard listener is not dual-stack here (%v)", a)
	}
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(loopbackRemote(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ln.LocalEndpoints()[0].Port())))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	s := <-accepted
	defer s.Abort()
	k := tcpSockOf(t, s)
	require.Equal(t, unix.AF_INET6, k.int(unix.SOL_SOCKET, unix.SO_DOMAIN), "a dual-stack socket")

	require.NoError(t, s.SetProperty(ConnCapacityProfile, LowLatencyInteractive))
	require.Equal(t, 46<<2, k.int(unix.IPPROTO_IP, unix.IP_TOS), "IPv4 packets carry IP_TOS")
	require.Equal(t, uint8(46), s.GetProperties().Socket.DSCP, "read back")
}

// TestLivePropsHuntConcurrentEntangledSetsAgree: two members setting one
// property at the same time end with the same value (entanglement, RFC
// 9622 §7.4), on their sockets too.
func TestLivePropsHuntConcurrentEntangledSetsAgree(t *testing.T) {
	sys := newTestSystem(t)
	a, b, _ := tcpGroupOfTwo(t, sys)
	ka, kb := tcpSockOf(t, a), tcpSockOf(t, b)
	// barrier: a change from each member seen by the other, so that every
	// earlier change has reached both
	barrier := func(i int) {
		for j, pair := range [][2]*Connection{{a, b}, {b, a}} {
			d := time.Duration(100+2*i+j) * time.Second
			require.NoError(t, pair[0].SetProperty(KeepAliveTimeout, d))
			require.Eventually(t, func() bool {
				v, _ := pair[1].GetProperties().Get(KeepAliveTimeout)
				return v == d
			}, 5*time.Second, time.Millisecond)
		}
	}
	for i := range 30 {
		done := make(chan error, 2)
		go func() { done <- a.SetProperty(ConnTimeout, time.Duration(2*i+1)*time.Second) }()
		go func() { done <- b.SetProperty(ConnTimeout, time.Duration(2*i+2)*time.Second) }()
		require.NoError(t, <-done)
		require.NoError(t, <-done)
		barrier(i)
		va, _ := a.GetProperties().Get(ConnTimeout)
		vb, _ := b.GetProperties().Get(ConnTimeout)
		require.Equal(t, va, vb, "#%d: the members disagree on connTimeout", i)
		require.Equal(t, ka.userTimeout(), kb.userTimeout(), "#%d: TCP_USER_TIMEOUT", i)
	}
}
