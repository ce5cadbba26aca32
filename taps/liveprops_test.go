package taps

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// Tests of connection properties set on an open Connection: they reach the
// live socket, and every later socket of the Connection (re-establishment,
// Clone) is made with them.

// acceptAll accepts every connection of ln into the returned channel.
func acceptAll(t *testing.T, ln *Listener) <-chan *Connection {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := make(chan *Connection, 16)
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			select {
			case out <- s:
			case <-ctx.Done():
				// the test ended with its buffer full (more connections
				// than it took, as re-establishments make): nobody takes
				// this one (the goroutine waited here after the test, and
				// goleak failed the package)
				s.Abort()
				return
			}
		}
	}()
	t.Cleanup(func() {
		ln.Stop()
		<-ln.Done()
	})
	return out
}

// dialTCPReestablishing initiates a TCP connection to ln under a quick
// re-establishment policy.
func dialTCPReestablishing(t *testing.T, sys *System, ln *Listener) *Connection {
	t.Helper()
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))),
		WithReestablishment(ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 50})).Initiate(testCtx(t))
	require.NoError(t, err)
	return c
}

// tcpDialAccepted is a TCP connection dialed to a loopback Listener
// whose connections go to accepted, once the Listener took it.
func tcpDialAccepted(t *testing.T, sys *System) (c *Connection, accepted <-chan *Connection) {
	t.Helper()
	ln := listenLoopback(t, sys)
	accepted = acceptAll(t, ln)
	c = dialTCP(t, sys, ln)
	<-accepted
	return c, accepted
}

// tcpAccepted is tcpDialAccepted without the channel.
func tcpAccepted(t *testing.T, sys *System) *Connection {
	t.Helper()
	c, _ := tcpDialAccepted(t, sys)
	return c
}

// tcpGroupOfTwo is a TCP connection a and a Clone b of it, both taken by
// a loopback Listener whose connections go to accepted; the group is
// aborted when the test ends.
func tcpGroupOfTwo(t *testing.T, sys *System) (a, b *Connection, accepted <-chan *Connection) {
	t.Helper()
	a, accepted = tcpDialAccepted(t, sys)
	t.Cleanup(func() { a.AbortGroup(); <-a.Done() })
	b, err := a.Clone(testCtx(t))
	require.NoError(t, err)
	<-accepted
	return a, b, accepted
}

// liveSet sets connTimeout, keepAliveTimeout and connCapacityProfile on c
// and checks that its socket has them at once.
func liveSet(t *testing.T, c *Connection) {
	t.Helper()
	require.NoError(t, c.SetProperty(ConnTimeout, 7*time.Second))
	require.NoError(t, c.SetProperty(KeepAliveTimeout, 3*time.Second))
	require.NoError(t, c.SetProperty(ConnCapacityProfile, LowLatencyInteractive))
	requireLiveSocket(t, c, "the live socket")
}

// requireLiveSocket checks, with getsockopt, that c's socket has what
// liveSet set.
func requireLiveSocket(t *testing.T, c *Connection, which string) {
	t.Helper()
	so := c.GetProperties().Socket
	require.NotNil(t, so, which)
	require.Equal(t, 7*time.Second, so.UserTimeout, "%s: TCP_USER_TIMEOUT from connTimeout", which)
	require.True(t, so.KeepAlive, "%s: SO_KEEPALIVE from keepAliveTimeout", which)
	require.Equal(t, 3*time.Second, so.KeepAliveIdle, "%s: TCP_KEEPIDLE", which)
	require.Equal(t, uint8(46), so.DSCP, "%s: the DSCP of LowLatencyInteractive", which)
}

// TestSetPropertySurvivesReestablishment: properties set on an open TCP
// Connection are on the socket of its re-establishment too.
func TestSetPropertySurvivesReestablishment(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	ctx := testCtx(t)
	c := dialTCPReestablishing(t, sys, ln)
	defer func() { c.Abort(); <-c.Done() }()
	reestablished := make(chan struct{}, 1)
	c.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })
	first := <-accepted
	so := c.GetProperties().Socket
	require.Zero(t, so.UserTimeout)
	require.False(t, so.KeepAlive)
	oldLocal, _ := c.GetProperties().Local.Addr()

	liveSet(t, c)
	first.Abort() // the peer resets: the connection re-establishes
	select {
	case <-reestablished:
	case <-ctx.Done():
		t.Fatal("not re-established")
	}
	second := <-accepted
	defer second.Abort()
	newLocal, _ := c.GetProperties().Local.Addr()
	require.NotEqual(t, oldLocal, newLocal, "a new socket")
	requireLiveSocket(t, c, "the re-established socket")
}

// TestSetPropertyIsClonedOverTCP: a Clone over TCP dials with the
// properties set on the original since it was made, and
// CloneWithProperties' own values win.
func TestSetPropertyIsClonedOverTCP(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	// a Clone before the change: the next Clone must not reuse its
	// options (Connection.cloneStackOptions remembers them)
	c, before, accepted := tcpGroupOfTwo(t, sys)
	require.NotEqual(t, 7*time.Second, before.GetProperties().Socket.UserTimeout)
	liveSet(t, c)

	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	<-accepted
	requireLiveSocket(t, clone, "the clone's socket")

	tp := NewTransportProperties()
	require.NoError(t, tp.Set(ConnCapacityProfile, Scavenger))
	other, err := c.Clone(ctx, CloneWithProperties(tp))
	require.NoError(t, err)
	<-accepted
	so := other.GetProperties().Socket
	require.Equal(t, uint8(1), so.DSCP, "CloneWithProperties: Scavenger's DSCP")
	require.Equal(t, 7*time.Second, so.UserTimeout, "the rest as set on the original")
}

// TestLiveUserTimeoutEnabled: tcp.userTimeoutEnabled switches the socket's
// TCP_USER_TIMEOUT between tcp.userTimeoutValue and the system default;
// tcp.userTimeoutChangeable reads back false and cannot be set.
func TestLiveUserTimeoutEnabled(t *testing.T) {
	sys := newTestSystem(t)
	c := tcpAccepted(t, sys)
	defer func() { c.Abort(); <-c.Done() }()
	uto := func() time.Duration { return c.GetProperties().Socket.UserTimeout }

	require.NoError(t, c.SetProperty(TCPUserTimeoutValue, 9*time.Second))
	require.Zero(t, uto(), "not enabled: the value waits")
	require.NoError(t, c.SetProperty(TCPUserTimeoutEnabled, true))
	require.Equal(t, 9*time.Second, uto())
	require.NoError(t, c.SetProperty(TCPUserTimeoutValue, 4*time.Second))
	require.Equal(t, 4*time.Second, uto(), "enabled: a new value applies at once")
	require.NoError(t, c.SetProperty(TCPUserTimeoutEnabled, false))
	require.Zero(t, uto(), "disabled: the system default")

	v, ok := c.GetProperties().Get(TCPUserTimeoutChangeable)
	require.True(t, ok)
	require.Equal(t, false, v, "Linux has no UTO option")
	err := c.SetProperty(TCPUserTimeoutChangeable, true)
	require.ErrorIs(t, err, ErrReadOnlyProperty)
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
}

// TestLiveRecvChecksumLen: recvChecksumLen set on an open UDP-Lite
// Connection is the socket's UDPLITE_RECV_CSCOV at once.
func TestLiveRecvChecksumLen(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
	require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
	sln, err := stacks.UDPLite().Listen(testCtx(t), stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	if errors.Is(err, stacks.ErrUDPLiteUnsupported) {
		t.Skip("kernel without UDP-Lite")
	}
	require.NoError(t, err)
	defer sln.Close()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(sln.Addr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.Equal(t, "udplite", c.GetProperties().Stack)
	require.Zero(t, c.GetProperties().Socket.RecvChecksumCoverage)
	require.NoError(t, c.SetProperty(RecvChecksumLen, int64(20)))
	require.Equal(t, 28, c.GetProperties().Socket.RecvChecksumCoverage, "20 payload bytes and the 8-byte header")
	require.False(t, c.GetProperties().Selected[FullChecksumRecv], "read back from the socket")
	require.NoError(t, c.SetProperty(RecvChecksumLen, FullCoverage))
	require.Zero(t, c.GetProperties().Socket.RecvChecksumCoverage)
	require.True(t, c.GetProperties().Selected[FullChecksumRecv])
}

// TestSelectedKeepAliveReadsTheSocket: the keepAlive read back is
// SO_KEEPALIVE, not what TCP could do.
func TestSelectedKeepAliveReadsTheSocket(t *testing.T) {
	sys := newTestSystem(t)
	c := tcpAccepted(t, sys)
	defer func() { c.Abort(); <-c.Done() }()
	require.False(t, c.GetProperties().Selected[KeepAlive], "no SO_KEEPALIVE")
	v, _ := c.GetProperties().Get(KeepAlive)
	require.Equal(t, false, v)
	require.NoError(t, c.SetProperty(KeepAliveTimeout, 5*time.Second))
	require.True(t, c.GetProperties().Selected[KeepAlive])
	require.NoError(t, c.SetProperty(KeepAliveTimeout, Disabled))
	require.False(t, c.GetProperties().Selected[KeepAlive])
}

// TestMsgCapacityProfileOnStreamIsSendError: on TCP a message asking for
// another DSCP than the connection's fails before it is written; one with
// the connection's own profile is sent.
func TestMsgCapacityProfileOnStreamIsSendError(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	accepted := acceptAll(t, ln)
	ctx := testCtx(t)
	c := dialTCP(t, sys, ln)
	defer func() { c.Abort(); <-c.Done() }()
	srv := <-accepted
	err := c.Send(ctx, []byte("x"), NewMessageContext().CapacityProfile(LowLatencyInteractive))
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, actors.ErrPropertyNotSupported)
	require.Equal(t, StateEstablished, c.State())

	require.NoError(t, c.SetProperty(ConnCapacityProfile, LowLatencyInteractive))
	require.NoError(t, c.Send(ctx, []byte("y"), NewMessageContext().CapacityProfile(LowLatencyInteractive)))
	m, err := srv.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "y", string(m.Data), "the refused message never reached the stream")
	require.Equal(t, uint8(46), c.GetProperties().Socket.DSCP)
}

// TestDatagramBatchLeavesByPriority: UDP datagrams queued in one batch
// leave by msgPriority (lower first), the final one last.
func TestDatagramBatchLeavesByPriority(t *testing.T) {
	sys := newTestSystem(t)
	sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	require.NoError(t, err)
	defer sln.Close()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(sln.Addr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	sent := make(chan error, 5)
	c.Batch(func() {
		for _, m := range []struct {
			data string
			mc   *MessageContext
		}{
			{"p5", NewMessageContext().Priority(5)},
			{"p1", NewMessageContext().Priority(1)},
			{"p3", NewMessageContext().Priority(3)},
			{"p0", NewMessageContext().Priority(0)},
			{"final", NewMessageContext().Priority(0).Final(true)}, // sent last, stays behind p1..p5
		} {
			c.SendAsync([]byte(m.data), m.mc, func(_ *Connection, err error) { sent <- err })
		}
	})
	for range 5 {
		require.NoError(t, <-sent)
	}
	peer, err := sln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	buf := make([]byte, 16)
	var got []string
	for range 5 {
		n, err := peer.Read(buf)
		require.NoError(t, err)
		got = append(got, string(buf[:n]))
	}
	require.Equal(t, []string{"p0", "p1", "p3", "p5", "final"}, got)
}

// TestRetransmitThresholdSetLive: a retransmitNotifyThreshold lowered on
// the open connection is the one the retransmission watch uses.
func TestRetransmitThresholdSetLive(t *testing.T) {
	lab := stacktest.NewNetns(t, "lp", 241)
	_ = exec.Command("ip", "route", "replace", "198.18.241.0/30", "dev", lab.HostIf, "proto", "kernel", "scope", "link",
		"src", lab.HostIP.String(), "rto_min", "20ms").Run()
	var ln net.Listener
	lab.Run(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(lab.NSIP, 0).String())
		return err
	})
	defer ln.Close()

	sys := newTestSystem(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(RetransmitNotify, Require))
	require.NoError(t, tp.Set(RetransmitNotifyThreshold, int64(1_000_000)))
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(ln.Addr().(*net.TCPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	events := make(chan int, 4)
	c.OnExcessiveRetransmission(func(_ *Connection, n int) {
		select {
		case events <- n:
		default:
		}
	})
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	stacktest.IP(t, "-n", lab.NS, "route", "add", "blackhole", lab.HostIP.String()+"/32")
	require.NoError(t, c.Send(testCtx(t), []byte("anyone there?"), nil))
	require.NoError(t, c.SetProperty(RetransmitNotifyThreshold, int64(2)))
	select {
	case n := <-events:
		require.GreaterOrEqual(t, n, 2)
	case <-time.After(5 * time.Second):
		t.Fatal("no ExcessiveRetransmission event at the new threshold")
	}
}

// TestRetransmitNotifyRequireRejectsUDP: only TCP and TLS report
// retransmissions: requiring it rules UDP out before anything is sent.
func TestRetransmitNotifyRequireRejectsUDP(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(RetransmitNotify, Require))
	_, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(9))).Initiate(testCtx(t))
	require.Error(t, err)
	require.True(t, errors.Is(err, stacks.ErrNoStack) || strings.Contains(err.Error(), "retransmitNotify"), err.Error())
}

// TestCloneReadFirstOverQUICIsANewConnection: with activeReadBeforeSend
// Prefer (Require would rule QUIC out: its streams are seen only with
// their first data) and multistreaming Require, a QUIC Clone is a connection of its own (its own socket and
// session), not a stream of the original's session: the peer receives it
// in a group of its own.
func TestCloneReadFirstOverQUICIsANewConnection(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	accepted := acceptAll(t, ln)
	ctx := testCtx(t)
	ctp := tp.Clone()
	require.NoError(t, ctp.Prefer(ActiveReadBeforeSend))
	c, err := securePre(sys, ln, pki.clientSec(), ctp).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.AbortGroup(); <-c.Done() }()
	require.Equal(t, "quic", c.GetProperties().Stack)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	first := <-accepted
	defer first.Abort()

	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	require.Equal(t, "quic", clone.GetProperties().Stack)
	own, _ := c.GetProperties().Local.Addr()
	cl, _ := clone.GetProperties().Local.Addr()
	require.NotEqual(t, own.Port(), cl.Port(), "a socket of its own: a new QUIC connection")
	cg, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []*Connection{c, clone}, cg, "still a member of the original's group")

	require.NoError(t, clone.Send(ctx, []byte("ping"), nil))
	peer := <-accepted
	defer peer.Abort()
	m, err := peer.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(m.Data))
	group, err := first.GroupedConnections(ctx)
	require.NoError(t, err)
	require.Equal(t, []*Connection{first}, group, "the peer did not get it as a stream of the first session")
}
