//go:build linux

package taps

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Bug hunt on Multipath TCP and the multipath properties over loopback:
// what gotaps reads back is checked against the sockets of ordinary Go
// peers (net.TCPConn.MultipathTCP, SO_PROTOCOL).

func skipNoMPTCP(t *testing.T) {
	t.Helper()
	if !mptcpEnabled() {
		t.Skip("net.mptcp.enabled is not 1: no Multipath TCP in this kernel")
	}
}

// mpTP is a TransportProperties with multipath set to mode.
func mpTP(t *testing.T, mode MultipathMode) *TransportProperties {
	t.Helper()
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, mode))
	return tp
}

// sockProtocol is SO_PROTOCOL of c: unix.IPPROTO_MPTCP (262) or
// unix.IPPROTO_TCP.
func sockProtocol(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var proto int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }))
	require.NoError(t, serr)
	return proto
}

// rawListen is an ordinary Go TCP listener on 127.0.0.1, MPTCP or not.
func rawListen(t *testing.T, mptcp bool) *net.TCPListener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(mptcp)
	ln, err := lc.Listen(testCtx(t), "tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// listenMP is a Listener on 127.0.0.1 with tp (and fs), stopped with the test.
func listenMP(t *testing.T, sys *System, tp *TransportProperties, fs ...framers.Framer) *Listener {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })
	return ln
}

// unframedInitiate initiates an unframed connection to ap with tp.
func unframedInitiate(t *testing.T, sys *System, ap netip.AddrPort, tp *TransportProperties, opts ...PreconnectionOption) (*Connection, error) {
	t.Helper()
	opts = append([]PreconnectionOption{WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(loopbackRemote(ap))}, opts...)
	return NewPreconnection(opts...).Initiate(testCtx(t))
}

// requireMP checks what c reads back: the socket's MPTCP and the
// multipath property.
func requireMP(t *testing.T, c *Connection, mptcp bool, mode MultipathMode, side string) {
	t.Helper()
	p := c.GetProperties()
	require.Equal(t, mptcp, p.Socket.MPTCP, "%s: TransportInfo.MPTCP", side)
	got, _ := p.Get(Multipath)
	require.Equal(t, mode, got, "%s: multipath reads back", side)
}

// receiveN reads exactly n bytes from an unframed connection.
func receiveN(t *testing.T, c *Connection, n int) []byte {
	t.Helper()
	var out []byte
	for len(out) < n {
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		out = append(out, m.Data...)
	}
	return out
}

// TestMPTCPHuntActiveToGotapsListener: multipath Active to a Listener
// with multipath Passive (default) or Active runs MPTCP on both sides,
// and an ordinary MPTCP client gets MPTCP from either listener.
func TestMPTCPHuntActiveToGotapsListener(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	for _, lmode := range []MultipathMode{MultipathPassive, MultipathActive} {
		ln := listenMP(t, sys, mpTP(t, lmode), framers.NewLengthPrefix())
		c, err := initiatePath(t, sys, "127.0.0.1", listenerAddr(t, ln).Port(), mpTP(t, MultipathActive))
		require.NoError(t, err, "listener %v", lmode)
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		requireMP(t, c, true, MultipathActive, "client")
		requireMP(t, s, true, lmode, "accepted by a "+lmode.String()+" listener")
		roundTripTo(t, c, s, "over mptcp")
		c.Abort()
		s.Abort()
		<-c.Done()
		<-s.Done()

		// an ordinary MPTCP client: the listening socket itself is MPTCP
		d := net.Dialer{}
		d.SetMultipathTCP(true)
		raw, err := d.DialContext(testCtx(t), "tcp4", listenerAddr(t, ln).String())
		require.NoError(t, err)
		s, err = ln.Accept(testCtx(t))
		require.NoError(t, err)
		mp, err := raw.(*net.TCPConn).MultipathTCP()
		require.NoError(t, err)
		require.True(t, mp, "listener %v takes MP_CAPABLE", lmode)
		require.Equal(t, unix.IPPROTO_MPTCP, sockProtocol(t, raw.(*net.TCPConn)))
		requireMP(t, s, true, lmode, "raw MPTCP client")
		raw.Close()
		s.Abort()
		<-s.Done()
	}
}

// TestMPTCPHuntOrdinaryPeers: against ordinary Go servers, multipath
// Active is MPTCP on the server's socket too (SO_PROTOCOL 262), falls back
// to plain TCP against a plain TCP server (working, reading back false),
// and multipath Disabled is plain TCP even to an MPTCP server.
func TestMPTCPHuntOrdinaryPeers(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	for _, tc := range []struct {
		name        string
		serverMPTCP bool
		mode        MultipathMode
		want        bool
	}{
		{"Active to MPTCP server", true, MultipathActive, true},
		{"Passive to MPTCP server", true, MultipathPassive, true},
		{"Active to plain TCP server", false, MultipathActive, false},
		{"Disabled to MPTCP server", true, MultipathDisabled, false},
	} {
		ln := rawListen(t, tc.serverMPTCP)
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		c, err := unframedInitiate(t, sys, ap, mpTP(t, tc.mode), WithProtocols("tcp"))
		require.NoError(t, err, tc.name)
		srv, err := ln.AcceptTCP()
		require.NoError(t, err)
		mp, err := srv.MultipathTCP()
		require.NoError(t, err)
		require.Equal(t, tc.want, mp, "%s: server socket MultipathTCP", tc.name)
		if tc.want {
			require.Equal(t, unix.IPPROTO_MPTCP, sockProtocol(t, srv), tc.name)
			requireMP(t, c, true, tc.mode, tc.name)
		} else {
			requireMP(t, c, false, MultipathDisabled, tc.name)
		}
		require.NoError(t, c.Send(testCtx(t), []byte("ping"), nil))
		buf := make([]byte, 4)
		_, err = io.ReadFull(srv, buf)
		require.NoError(t, err)
		_, err = srv.Write([]byte("pong"))
		require.NoError(t, err)
		require.Equal(t, "pong", string(receiveN(t, c, 4)), tc.name)
		c.Abort()
		<-c.Done()
		srv.Close()
	}
}

// TestMPTCPHuntConnTimeoutKeepsMPTCP: connTimeout (TCP_USER_TIMEOUT,
// which MPTCP sockets refuse) does not silently turn multipath into plain
// TCP, neither on Initiate nor on a Listener.
func TestMPTCPHuntConnTimeoutKeepsMPTCP(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	ltp := mpTP(t, MultipathPassive)
	require.NoError(t, ltp.Set(ConnTimeout, 30*time.Second))
	ln := listenMP(t, sys, ltp, framers.NewLengthPrefix())
	tp := mpTP(t, MultipathActive)
	require.NoError(t, tp.Set(ConnTimeout, 30*time.Second))
	c, err := initiatePath(t, sys, "127.0.0.1", listenerAddr(t, ln).Port(), tp)
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	requireMP(t, c, true, MultipathActive, "client with connTimeout")
	requireMP(t, s, true, MultipathPassive, "listener with connTimeout")
	require.NoError(t, c.SetProperty(ConnTimeout, 10*time.Second), "on an open MPTCP connection")
	roundTripTo(t, c, s, "after SetProperty")
	c.Abort()
	s.Abort()
	<-c.Done()
	<-s.Done()
	// against an ordinary MPTCP server
	raw := rawListen(t, true)
	c, err = unframedInitiate(t, sys, raw.Addr().(*net.TCPAddr).AddrPort(), tp)
	require.NoError(t, err)
	srv, err := raw.AcceptTCP()
	require.NoError(t, err)
	require.Equal(t, unix.IPPROTO_MPTCP, sockProtocol(t, srv), "the client asked for MPTCP")
	requireMP(t, c, true, MultipathActive, "client with connTimeout")
	srv.Close()
	c.Abort()
	<-c.Done()
}

// TestMPTCPHuntTLSOverMPTCP: TLS over MPTCP on both sides.
func TestMPTCPHuntTLSOverMPTCP(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithProtocols("tls"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })
	// Active ranks TLS (multipath-capable) before QUIC: no restriction
	pre := securePre(sys, ln, pki.clientSec(), mpTP(t, MultipathActive))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "tls", c.GetProperties().Stack)
	requireMP(t, c, true, MultipathActive, "TLS client")
	requireMP(t, s, true, MultipathPassive, "TLS server")
	roundTripTo(t, c, s, "secret")
	c.Abort()
	s.Abort()
	<-c.Done()
	<-s.Done()
}

// TestMPTCPHuntNoMultipathStack: multipath is an enum, not a preference
// (Require fails with a typed error naming it); Active with only stacks
// that cannot run multipath (QUIC, UDP) is a preference: they are used
// and multipath reads back Disabled.
func TestMPTCPHuntNoMultipathStack(t *testing.T) {
	skipNoMPTCP(t)
	tp := NewTransportProperties()
	err := tp.Require(Multipath)
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, Multipath, pe.Property)
	require.ErrorIs(t, err, ErrInvalidPropertyType)

	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln, _ := quicEchoServer(t, sys, pki, nil)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithTransportProperties(mpTP(t, MultipathActive)), WithProtocols("quic"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(listenerAddr(t, ln).Port())),
		WithResolver(loopbackOnly))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	requireMP(t, c, false, MultipathDisabled, "QUIC")
	roundTrip(t, c, "quic")
	c.Abort()
	<-c.Done()
}

// requireNoConnectionYet checks that nothing connected to ln before now:
// the first connection accepted is a probe made now.
func requireNoConnectionYet(t *testing.T, ln *net.TCPListener) {
	t.Helper()
	probe, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer probe.Close()
	first, err := ln.Accept()
	require.NoError(t, err)
	defer first.Close()
	require.Equal(t, probe.LocalAddr().String(), first.RemoteAddr().String(), "a connection reached the server before the probe")
}

// TestMPTCPHuntPolicy: Handover is accepted with multipath on (and is
// MPTCP); Interactive and Aggregate fail Initiate and Listen before any
// packet with a typed error naming multipathPolicy, and an accepted MPTCP
// connection refuses them too.
func TestMPTCPHuntPolicy(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	raw := rawListen(t, true)
	ap := raw.Addr().(*net.TCPAddr).AddrPort()
	for _, pol := range []MultipathPolicyMode{Interactive, Aggregate} {
		for _, mode := range []MultipathMode{MultipathActive, MultipathPassive} {
			tp := mpTP(t, mode)
			require.NoError(t, tp.Set(MultipathPolicy, pol))
			_, err := unframedInitiate(t, sys, ap, tp)
			require.ErrorIs(t, err, ErrPropertyUnsatisfiable, "%v %v", mode, pol)
			var pe *PropertyError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, MultipathPolicy, pe.Property)
			require.Equal(t, pol, pe.Value)
			requireNoConnectionYet(t, raw)

			_, err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
			require.ErrorIs(t, err, ErrPropertyUnsatisfiable, "Listen %v %v", mode, pol)
		}
	}
	tp := mpTP(t, MultipathActive)
	require.NoError(t, tp.Set(MultipathPolicy, Handover))
	ln := listenMP(t, sys, NewTransportProperties(), framers.NewLengthPrefix())
	c, err := initiatePath(t, sys, "127.0.0.1", listenerAddr(t, ln).Port(), tp)
	require.NoError(t, err)
	requireMP(t, c, true, MultipathActive, "Handover")
	got, _ := c.GetProperties().Get(MultipathPolicy)
	require.Equal(t, Handover, got)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	requireMP(t, s, true, MultipathPassive, "accepted")
	for _, conn := range []*Connection{c, s} {
		err = conn.SetProperty(MultipathPolicy, Interactive)
		require.ErrorIs(t, err, ErrPropertyUnsatisfiable)
		got, _ = conn.GetProperties().Get(MultipathPolicy)
		require.Equal(t, Handover, got, "a refused policy is not stored")
	}
	c.Abort()
	s.Abort()
	<-c.Done()
	<-s.Done()
}

// TestMPTCPHuntPassiveListenerMixedClients: a Passive listener takes MPTCP
// and plain TCP clients at once, each accepted connection reading back
// what its socket runs.
func TestMPTCPHuntPassiveListenerMixedClients(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	ln := listenMP(t, sys, mpTP(t, MultipathPassive))
	ap := listenerAddr(t, ln)
	want := map[string]bool{} // client local address -> MPTCP
	var clients []net.Conn
	for i := range 6 {
		d := net.Dialer{}
		d.SetMultipathTCP(i%2 == 0)
		raw, err := d.DialContext(testCtx(t), "tcp4", ap.String())
		require.NoError(t, err)
		clients = append(clients, raw)
		want[raw.LocalAddr().String()] = i%2 == 0
	}
	for range clients {
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		remote := peerOf(t, s)
		mp, ok := want[remote]
		require.True(t, ok, "unknown client %v", remote)
		mode := MultipathDisabled
		if mp {
			mode = MultipathPassive
		}
		requireMP(t, s, mp, mode, remote)
		require.NoError(t, s.Send(testCtx(t), []byte("hi"), nil))
		s.Abort()
		<-s.Done()
	}
	for _, raw := range clients {
		raw.Close()
	}
}

// TestMPTCPHuntClone: a Clone of an MPTCP connection is a new MPTCP
// connection (both sides).
func TestMPTCPHuntClone(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	ln := listenMP(t, sys, NewTransportProperties(), framers.NewLengthPrefix())
	c, err := initiatePath(t, sys, "127.0.0.1", listenerAddr(t, ln).Port(), mpTP(t, MultipathActive))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	requireMP(t, c, true, MultipathActive, "original")
	clone, err := c.Clone(testCtx(t))
	require.NoError(t, err)
	s2, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	requireMP(t, clone, true, MultipathActive, "clone")
	requireMP(t, s2, true, MultipathPassive, "accepted clone")
	require.NotEqual(t, peerOf(t, s), peerOf(t, s2), "a new connection")
	roundTripTo(t, clone, s2, "clone")
	c.AbortGroup()
	s.Abort()
	s2.Abort()
	<-c.Done()
	<-clone.Done()
	<-s.Done()
	<-s2.Done()
}

// TestMPTCPHuntBulkBothWays: 4 MiB each way at once over MPTCP loopback
// arrive intact and in order.
func TestMPTCPHuntBulkBothWays(t *testing.T) {
	skipNoMPTCP(t)
	sys := newTestSystem(t)
	ln := listenMP(t, sys, NewTransportProperties(), framers.NewLengthPrefix())
	c, err := initiatePath(t, sys, "127.0.0.1", listenerAddr(t, ln).Port(), mpTP(t, MultipathActive))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	requireMP(t, c, true, MultipathActive, "client")
	requireMP(t, s, true, MultipathPassive, "server")
	const total, chunk = 4 << 20, 96 << 10
	up, down := make([]byte, total), make([]byte, total)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(conn *Connection, data []byte) {
		defer wg.Done()
		for off := 0; off < len(data); off += chunk {
			if err := conn.Send(testCtx(t), data[off:min(off+chunk, len(data))], nil); err != nil {
				errs <- err
				return
			}
		}
	}
	recv := func(conn *Connection, want []byte) {
		defer wg.Done()
		var got []byte
		for len(got) < len(want) {
			m, err := conn.Receive(testCtx(t))
			if err != nil {
				errs <- err
				return
			}
			got = append(got, m.Data...)
		}
		if !bytes.Equal(got, want) {
			errs <- errors.New("data differs")
		}
	}
	wg.Add(4)
	go send(c, up)
	go send(s, down)
	go recv(s, up)
	go recv(c, down)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	<-c.Done()
	s.Abort()
	<-s.Done()
}

// roundTripTo sends text from c and receives it on s.
func roundTripTo(t *testing.T, c, s *Connection, text string) {
	t.Helper()
	require.NoError(t, c.Send(testCtx(t), []byte(text), nil))
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, text, string(m.Data))
}

// peerOf is the remote address of an accepted connection.
func peerOf(t *testing.T, c *Connection) string {
	t.Helper()
	remotes, _, err := c.Endpoints(testCtx(t))
	require.NoError(t, err)
	require.NotEmpty(t, remotes)
	return remotes[0].String()
}
