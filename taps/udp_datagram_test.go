package taps

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawUDP is a plain loopback UDP socket for the tests below.
func rawUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func readDatagram(t *testing.T, pc *net.UDPConn) []byte {
	t.Helper()
	b, _ := readDatagramFrom(t, pc)
	return b
}

func readDatagramFrom(t *testing.T, pc *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 70000)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(3*time.Second)))
	n, from, err := pc.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	return buf[:n], from
}

// udpClientTo initiates a UDP connection with tp to the raw socket pc;
// it is aborted when the test ends.
func udpClientTo(t *testing.T, sys *System, pc *net.UDPConn, tp *TransportProperties) *Connection {
	t.Helper()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	return c
}

// TestUDPSendPartialIsOneDatagram: the parts of one Message sent with
// SendPartial leave as one datagram (a datagram is a whole message).
func TestUDPSendPartialIsOneDatagram(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	mc := NewMessageContext()
	ctx := testCtx(t)
	require.NoError(t, c.SendPartial(ctx, []byte("ab"), mc, false))
	require.NoError(t, c.SendPartial(ctx, []byte("cd"), mc, true))
	require.NoError(t, c.Send(ctx, []byte("next"), nil))
	require.Equal(t, "abcd", string(readDatagram(t, pc)))
	require.Equal(t, "next", string(readDatagram(t, pc)))

	// parts beyond the largest datagram: a SendError, for the rest too
	big := NewMessageContext()
	require.NoError(t, c.SendPartial(ctx, make([]byte, 40000), big, false))
	require.ErrorIs(t, c.SendPartial(ctx, make([]byte, 40000), big, false), ErrMessageTooLarge)
	require.ErrorIs(t, c.SendPartial(ctx, []byte("tail"), big, true), ErrMessageTooLarge)
	// a part that expired: the message is not sent without it
	gone := NewMessageContext().Lifetime(time.Nanosecond)
	require.ErrorIs(t, c.SendPartial(ctx, []byte("lost"), gone, false), ErrExpired)
	gone.Lifetime(time.Hour) // the last part on its own would be in time
	require.ErrorIs(t, c.SendPartial(ctx, []byte("tail"), gone, true), ErrExpired)
	require.NoError(t, c.Send(ctx, []byte("after"), nil))
	require.Equal(t, "after", string(readDatagram(t, pc)), "nothing of the failed messages left")
}

// udpListen listens for datagrams on 127.0.0.1.
func udpListen(t *testing.T, sys *System) (*Listener, netip.AddrPort) {
	t.Helper()
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln, listenerAddr(t, ln)
}

// acceptFirstDatagram sends payload from pc to the listener at ap, accepts
// the peer's Connection and checks that it receives payload first.
func acceptFirstDatagram(t *testing.T, ln *Listener, pc *net.UDPConn, ap netip.AddrPort, payload string) *Connection {
	t.Helper()
	ctx := testCtx(t)
	_, err := pc.WriteToUDPAddrPort([]byte(payload), ap)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, payload, string(m.Data))
	return s
}

// TestUDPPeerSendsAgainAfterItsConnectionClosed: closing the Connection of
// a peer and the peer sending again makes a new Connection with the new
// datagram (not the old queued ones).
func TestUDPPeerSendsAgainAfterItsConnectionClosed(t *testing.T) {
	sys := newTestSystem(t)
	ln, ap := udpListen(t, sys)
	pc := rawUDP(t)
	ctx := testCtx(t)
	s := acceptFirstDatagram(t, ln, pc, ap, "first")
	require.NoError(t, s.Close())
	<-s.Done()
	_, err := pc.WriteToUDPAddrPort([]byte("again"), ap)
	require.NoError(t, err)
	s2, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s2.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "again", string(m.Data))
	require.NoError(t, s2.Send(ctx, []byte("back"), nil))
	require.Equal(t, "back", string(readDatagram(t, pc)))
	s2.Abort()
	<-s2.Done()
}

// TestUDPEmptyAndLargestDatagrams: a zero-length datagram is a message,
// and the largest IPv4 UDP payload goes through whole.
func TestUDPEmptyAndLargestDatagrams(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, nil, nil))
	b, ap := readDatagramFrom(t, pc)
	require.Len(t, b, 0)
	big := make([]byte, 65507)
	big[65506] = 7
	require.NoError(t, c.Send(ctx, big, nil))
	require.Equal(t, big, readDatagram(t, pc))
	// the other way
	_, err := pc.WriteToUDPAddrPort(nil, ap)
	require.NoError(t, err)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	require.Len(t, m.Data, 0)
	_, err = pc.WriteToUDPAddrPort(big, ap)
	require.NoError(t, err)
	m, err = c.Receive(ctx, MaxLength(40000))
	require.NoError(t, err)
	require.False(t, m.EndOfMessage)
	require.Len(t, m.Data, 40000)
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	require.Len(t, m.Data, 65507-40000)
}

// TestUDPLifetimeWhileHeldByThePacer: a datagram maxSendRate holds back
// longer than its msgLifetime is Expired, not sent late.
func TestUDPLifetimeWhileHeldByThePacer(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(MaxSendRate, int64(80_000))) // 10 kB/s, burst 1500 bytes
	c := udpClientTo(t, sys, pc, tp)
	ctx := testCtx(t)
	// 6000 bytes: the pacer holds it for (6000-1500)/10000 s = 450 ms
	err := c.Send(ctx, make([]byte, 6000), NewMessageContext().Lifetime(50*time.Millisecond))
	require.ErrorIs(t, err, ErrExpired)
	// the next one (no lifetime) still goes, and it is the only datagram
	require.NoError(t, c.Send(ctx, []byte("later"), nil))
	require.Equal(t, "later", string(readDatagram(t, pc)))
}

// TestUDPListenerFirstDatagramsAndSoftError: every datagram a new peer
// sent before its Connection was accepted reaches it, in order; an ICMP
// port unreachable for what the Connection sends is a SoftError and the
// Connection stays Established.
func TestUDPListenerFirstDatagramsAndSoftError(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(SoftErrorNotify, Prefer))
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	ap := listenerAddr(t, ln)
	pc := rawUDP(t)
	ctx := testCtx(t)
	for i := range 10 {
		_, err := pc.WriteToUDPAddrPort([]byte{byte(i)}, ap)
		require.NoError(t, err)
	}
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	softs := softErrors(s)
	for i := range 10 {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, m.Data)
	}
	require.NoError(t, pc.Close())
	require.NoError(t, s.Send(ctx, []byte("anyone?"), nil))
	// the error is found by the listener's reader
	select {
	case err := <-softs:
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
	case <-time.After(3 * time.Second):
		t.Fatal("no SoftError for the ICMP port unreachable")
	}
	require.Equal(t, StateEstablished, s.State())
	require.NoError(t, s.Send(ctx, []byte("still open"), nil))
}

// TestUDPListenerStopKeepsAcceptedPeers: after Stop, an accepted peer's
// Connection still gets its datagrams and answers; a new peer gets
// nothing; once the last Connection is closed the port is free again.
func TestUDPListenerStopKeepsAcceptedPeers(t *testing.T) {
	sys := newTestSystem(t)
	ln, ap := udpListen(t, sys)
	pc := rawUDP(t)
	ctx := testCtx(t)
	s := acceptFirstDatagram(t, ln, pc, ap, "hello")
	ln.Stop()
	<-ln.Done()
	_, err := pc.WriteToUDPAddrPort([]byte("still"), ap)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "still", string(m.Data))
	require.NoError(t, s.Send(ctx, []byte("answer"), nil))
	require.Equal(t, "answer", string(readDatagram(t, pc)))
	require.NoError(t, s.Close())
	<-s.Done()
	again, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	require.NoError(t, err, "the listener's socket is closed with its last peer")
	require.NoError(t, again.Close())
}

// softErrors collects c's SoftErrors (up to 4 waiting; later ones while
// none is taken are dropped).
func softErrors(c *Connection) <-chan error {
	softs := make(chan error, 4)
	c.OnSoftError(func(_ *Connection, err error) {
		select {
		case softs <- err:
		default:
		}
	})
	return softs
}
