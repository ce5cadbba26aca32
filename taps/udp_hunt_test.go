package taps

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Bug hunt on connectionless Connections and Listeners (UDP, UDP-Lite)
// against real loopback sockets.

// rawUDPOn is a plain UDP socket on addr ("127.0.0.1" or "::1").
func rawUDPOn(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil && addr == "::1" {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// udpListenOn listens for datagrams on addr ("" is the wildcard address).
func udpListenOn(t *testing.T, sys *System, addr string, tp *TransportProperties) (*Listener, uint16) {
	t.Helper()
	le := NewLocalEndpoint().WithPort(0)
	if addr != "" {
		le = le.WithIPAddress(addr)
	}
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithLocalEndpoint(le)).Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln, listenerAddr(t, ln).Port()
}

func remoteAddrOf(t *testing.T, c *Connection) netip.AddrPort {
	t.Helper()
	rs, _, err := c.Endpoints(testCtx(t))
	require.NoError(t, err)
	require.NotEmpty(t, rs)
	ap, err := netip.ParseAddrPort(rs[0].String())
	require.NoError(t, err)
	return ap
}

// acceptShort waits a little for a connection that should not come.
func acceptShort(ln *Listener) (*Connection, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	return ln.Accept(ctx)
}

// TestUDPHuntManyRemotes: 200 new remotes send at once, more than the
// Listener's application takes while they arrive; each becomes one
// Connection that receives its first datagram, then its later ones, and
// answers to the right remote.
func TestUDPHuntManyRemotes(t *testing.T) {
	const n = 200
	sys := newTestSystem(t)
	ln, port := udpListenOn(t, sys, "127.0.0.1", datagramProps(t))
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	pcs := make([]*net.UDPConn, n)
	byPort := map[uint16]int{}
	for i := range pcs {
		pcs[i] = rawUDPOn(t, "127.0.0.1")
		byPort[pcs[i].LocalAddr().(*net.UDPAddr).AddrPort().Port()] = i
	}
	for i, pc := range pcs {
		_, err := pc.WriteToUDPAddrPort(fmt.Appendf(nil, "a%d", i), ap)
		require.NoError(t, err)
	}
	ctx := testCtx(t)
	conns := make([]*Connection, n)
	for range n {
		s, err := ln.Accept(ctx)
		require.NoError(t, err, "accepted %d of %d", countNonNil(conns), n)
		t.Cleanup(func() { s.Abort(); <-s.Done() })
		i, ok := byPort[remoteAddrOf(t, s).Port()]
		require.True(t, ok)
		require.Nil(t, conns[i], "remote %d received twice", i)
		conns[i] = s
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("a%d", i), string(m.Data))
	}
	for i, pc := range pcs {
		_, err := pc.WriteToUDPAddrPort(fmt.Appendf(nil, "b%d", i), ap)
		require.NoError(t, err)
	}
	for i, s := range conns {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("b%d", i), string(m.Data))
		require.NoError(t, s.Send(ctx, fmt.Appendf(nil, "r%d", i), nil))
		require.Equal(t, fmt.Sprintf("r%d", i), string(readDatagram(t, pcs[i])))
	}
}

func countNonNil(cs []*Connection) int {
	n := 0
	for _, c := range cs {
		if c != nil {
			n++
		}
	}
	return n
}

// TestUDPHuntConnectionLimit: SetNewConnectionLimit counts UDP remotes
// down; at 0 new remotes are held (with their datagrams) and delivered,
// first datagram first, when the limit is raised.
func TestUDPHuntConnectionLimit(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := udpListenOn(t, sys, "127.0.0.1", datagramProps(t))
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	require.NoError(t, ln.SetNewConnectionLimit(1))
	ctx := testCtx(t)
	pcs := make([]*net.UDPConn, 4)
	for i := range pcs {
		pcs[i] = rawUDPOn(t, "127.0.0.1")
	}
	send := func(i int, s string) {
		_, err := pcs[i].WriteToUDPAddrPort([]byte(s), ap)
		require.NoError(t, err)
	}
	accept := func(want ...string) {
		t.Helper()
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { s.Abort(); <-s.Done() })
		for _, w := range want {
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, w, string(m.Data))
		}
	}
	send(0, "0a")
	accept("0a")
	send(1, "1a")
	send(2, "2a")
	send(1, "1b")
	_, err := acceptShort(ln)
	require.ErrorIs(t, err, context.DeadlineExceeded, "limit 0: nothing delivered")
	require.NoError(t, ln.SetNewConnectionLimit(2))
	got := map[string]bool{}
	for range 2 {
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { s.Abort(); <-s.Done() })
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		got[string(m.Data)] = true
		if string(m.Data) == "1a" {
			m, err = s.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "1b", string(m.Data))
		}
	}
	require.Equal(t, map[string]bool{"1a": true, "2a": true}, got)
	send(3, "3a")
	_, err = acceptShort(ln)
	require.ErrorIs(t, err, context.DeadlineExceeded, "limit back at 0")
	require.NoError(t, ln.SetNewConnectionLimit(NoConnectionLimit))
	accept("3a")
}

// TestUDPHuntStopWithReceivedConnections: after Stop, a Connection
// received but not yet accepted is still returned by Accept and gets its
// datagrams; then Accept fails with ErrClosed and new remotes get nothing.
func TestUDPHuntStopWithReceivedConnections(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := udpListenOn(t, sys, "127.0.0.1", datagramProps(t))
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	ctx := testCtx(t)
	a, b := rawUDPOn(t, "127.0.0.1"), rawUDPOn(t, "127.0.0.1")
	got := make(chan *Connection, 1)
	received := make(chan struct{})
	ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
		got <- c
		close(received)
	})
	_, err := a.WriteToUDPAddrPort([]byte("a1"), ap)
	require.NoError(t, err)
	<-received
	ln.OnConnectionReceived(nil)
	sa := <-got
	defer func() { sa.Abort(); <-sa.Done() }()
	ln.Stop()
	<-ln.Done()
	_, err = a.WriteToUDPAddrPort([]byte("a2"), ap)
	require.NoError(t, err)
	for _, w := range []string{"a1", "a2"} {
		m, err := sa.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, w, string(m.Data))
	}
	_, err = b.WriteToUDPAddrPort([]byte("b1"), ap)
	require.NoError(t, err)
	_, err = ln.Accept(ctx)
	require.ErrorIs(t, err, ErrClosed)
}

// TestUDPHuntListenAddresses: a Listener on ::1, on 127.0.0.1 and on the
// wildcard address (dual-stack) receives from each family it serves,
// answers from the address it was sent to, and reports the largest
// datagram of the remote's family.
func TestUDPHuntListenAddresses(t *testing.T) {
	for _, tt := range []struct {
		listen  string
		remotes []string
	}{
		{"127.0.0.1", []string{"127.0.0.1"}},
		{"::1", []string{"::1"}},
		{"", []string{"127.0.0.1", "::1"}},
	} {
		t.Run("listen="+tt.listen, func(t *testing.T) {
			sys := newTestSystem(t)
			if tt.listen == "::1" {
				rawUDPOn(t, "::1") // skips without IPv6
			}
			ln, port := udpListenOn(t, sys, tt.listen, datagramProps(t))
			ctx := testCtx(t)
			for _, r := range tt.remotes {
				pc := rawUDPOn(t, r)
				to := netip.AddrPortFrom(netip.MustParseAddr(r), port)
				_, err := pc.WriteToUDPAddrPort([]byte("hi "+r), to)
				require.NoError(t, err)
				s, err := ln.Accept(ctx)
				require.NoError(t, err)
				defer func() { s.Abort(); <-s.Done() }()
				m, err := s.Receive(ctx)
				require.NoError(t, err)
				require.Equal(t, "hi "+r, string(m.Data))
				require.Equal(t, pc.LocalAddr().(*net.UDPAddr).AddrPort(), remoteAddrOf(t, s))
				require.NoError(t, s.Send(ctx, []byte("back"), nil))
				b, from := readDatagramFrom(t, pc)
				require.Equal(t, "back", string(b))
				require.Equal(t, to, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
				max := int64(65507)
				if r == "::1" {
					max = 65527
				}
				p := s.GetProperties()
				require.Equal(t, max, p.Socket.SendMsgMaxLen)
				v, ok := p.Get(SingularTransmissionMsgMaxLen)
				require.True(t, ok)
				require.Greater(t, v.(int64), int64(0))
				require.LessOrEqual(t, v.(int64), max)
			}
		})
	}
}

// TestUDPHuntSendTooLarge: a Message above the largest UDP payload of the
// family (65507 on IPv4, 65527 on IPv6) is a SendError with reason
// MessageTooLarge, nothing is sent, and the Connection goes on; the
// largest one goes through. Initiated and received Connections alike.
func TestUDPHuntSendTooLarge(t *testing.T) {
	for _, fam := range []struct {
		addr string
		max  int
	}{{"127.0.0.1", 65507}, {"::1", 65527}} {
		t.Run(fam.addr, func(t *testing.T) {
			sys := newTestSystem(t)
			pc := rawUDPOn(t, fam.addr)
			ctx := testCtx(t)
			c := udpClientTo(t, sys, pc, datagramProps(t))
			ln, port := udpListenOn(t, sys, fam.addr, datagramProps(t))
			_, err := pc.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(netip.MustParseAddr(fam.addr), port))
			require.NoError(t, err)
			s, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { s.Abort(); <-s.Done() }()
			for _, conn := range []*Connection{c, s} {
				require.Equal(t, int64(fam.max), conn.GetProperties().Socket.SendMsgMaxLen)
				err := conn.Send(ctx, make([]byte, fam.max+1), nil)
				var se *SendError
				require.ErrorAs(t, err, &se)
				require.Equal(t, ReasonMessageTooLarge, se.Reason)
				require.ErrorIs(t, err, ErrMessageTooLarge)
				require.NoError(t, conn.Send(ctx, []byte("next"), nil))
				require.Equal(t, "next", string(readDatagram(t, pc)), "nothing of the failed message sent")
				big := make([]byte, fam.max)
				big[fam.max-1] = 9
				require.NoError(t, conn.Send(ctx, big, nil))
				require.Equal(t, big, readDatagram(t, pc))
				require.Equal(t, StateEstablished, conn.State())
			}
		})
	}
}

// TestUDPHuntLargestIPv6DatagramReceived: the largest IPv6 datagram
// (65527 bytes) arrives whole, on an initiated and a received Connection.
func TestUDPHuntLargestIPv6DatagramReceived(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDPOn(t, "::1")
	ctx := testCtx(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	require.NoError(t, c.Send(ctx, []byte("hi"), nil))
	_, from := readDatagramFrom(t, pc)
	ln, port := udpListenOn(t, sys, "::1", datagramProps(t))
	big := make([]byte, 65527)
	big[65526] = 5
	_, err := pc.WriteToUDPAddrPort(big, netip.AddrPortFrom(netip.IPv6Loopback(), port))
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	_, err = pc.WriteToUDPAddrPort(big, from)
	require.NoError(t, err)
	for _, conn := range []*Connection{c, s} {
		m, err := conn.Receive(ctx)
		require.NoError(t, err)
		require.True(t, m.EndOfMessage)
		require.Equal(t, big, m.Data)
	}
}

// TestUDPHuntCloseAbortReceiveAfter: Close on UDP sends nothing and is
// Closed at once; Receive after it is a ReceiveError unwrapping to
// ErrClosed. Abort is Closed at once too, with a ConnectionError.
func TestUDPHuntCloseAbortReceiveAfter(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	ctx := testCtx(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	require.NoError(t, c.Send(ctx, []byte("one"), nil))
	_, from := readDatagramFrom(t, pc)
	pending := make(chan error, 1)
	go func() {
		_, err := c.Receive(ctx)
		pending <- err
	}()
	require.NoError(t, c.Close())
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("UDP Close not Closed promptly")
	}
	require.NoError(t, c.Err())
	require.ErrorIs(t, <-pending, ErrClosed, "a pending Receive ends")
	_, err := c.Receive(ctx)
	var re *ReceiveError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrClosed)
	// the port is released: a new socket can bind it
	again, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(from))
	require.NoError(t, err, "Close releases the port")
	require.NoError(t, again.Close())

	a := udpClientTo(t, sys, pc, datagramProps(t))
	a.Abort()
	select {
	case <-a.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("UDP Abort not Closed promptly")
	}
	var ce *ConnectionError
	require.ErrorAs(t, a.Err(), &ce)
	require.ErrorIs(t, a.Err(), ErrAborted)
	// neither sent anything to the peer
	m := udpClientTo(t, sys, pc, datagramProps(t))
	require.NoError(t, m.Send(ctx, []byte("marker"), nil))
	require.Equal(t, "marker", string(readDatagram(t, pc)), "Close and Abort send nothing")
}

// TestUDPHuntPeerPortClosed: a pending Receive on a Connection whose
// peer's port is closed survives the ICMP port unreachable (a SoftError
// with softErrorNotify, nothing without), and gets the datagram of a peer
// that binds the port again.
func TestUDPHuntPeerPortClosed(t *testing.T) {
	for _, notify := range []bool{false, true} {
		t.Run(fmt.Sprintf("softErrorNotify=%v", notify), func(t *testing.T) {
			sys := newTestSystem(t)
			pc := rawUDP(t)
			peer := pc.LocalAddr().(*net.UDPAddr)
			tp := datagramProps(t)
			if notify {
				require.NoError(t, tp.Set(SoftErrorNotify, Prefer))
			}
			c := udpClientTo(t, sys, pc, tp)
			softs := make(chan error, 8)
			c.OnSoftError(func(_ *Connection, err error) {
				select {
				case softs <- err:
				default:
				}
			})
			ctx := testCtx(t)
			require.NoError(t, c.Send(ctx, []byte("hi"), nil))
			_, local := readDatagramFrom(t, pc)
			require.NoError(t, pc.Close())
			recv := make(chan *Message, 1)
			go func() {
				m, err := c.Receive(ctx)
				if err != nil {
					t.Error(err)
				}
				recv <- m
			}()
			for range 3 {
				require.NoError(t, c.Send(ctx, []byte("anyone?"), nil))
			}
			if notify {
				select {
				case err := <-softs:
					require.ErrorIs(t, err, syscall.ECONNREFUSED)
				case <-time.After(3 * time.Second):
					t.Fatal("no SoftError")
				}
			}
			pc2, err := net.ListenUDP("udp4", peer)
			require.NoError(t, err)
			defer pc2.Close()
			_, err = pc2.WriteToUDPAddrPort([]byte("back"), local)
			require.NoError(t, err)
			select {
			case m := <-recv:
				require.NotNil(t, m)
				require.Equal(t, "back", string(m.Data))
			case <-time.After(3 * time.Second):
				t.Fatal("Receive hangs after the ICMP error")
			}
			require.Equal(t, StateEstablished, c.State())
			if !notify {
				require.Empty(t, softs)
			}
		})
	}
}

// TestUDPHuntInitiateSendsNothing: Initiate on UDP is Ready without
// traffic (the first datagram the peer sees is the first Message);
// InitiateWithSend's Message is the first datagram, and the peer's reply
// is received.
func TestUDPHuntInitiateSendsNothing(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	ctx := testCtx(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	require.Equal(t, StateEstablished, c.State())
	require.NoError(t, c.Send(ctx, []byte("first"), nil))
	require.Equal(t, "first", string(readDatagram(t, pc)), "Initiate sent nothing before")

	w, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).
		InitiateWithSend(ctx, []byte("hello"), nil)
	require.NoError(t, err)
	defer func() { w.Abort(); <-w.Done() }()
	b, from := readDatagramFrom(t, pc)
	require.Equal(t, "hello", string(b))
	_, err = pc.WriteToUDPAddrPort([]byte("reply"), from)
	require.NoError(t, err)
	m, err := w.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "reply", string(m.Data))
}

// udpFramedClient initiates a UDP connection with a length-prefix framer
// to the raw socket pc.
func udpFramedClient(t *testing.T, sys *System, pc *net.UDPConn) *Connection {
	t.Helper()
	return udpClientWith(t, sys, pc, framers.NewLengthPrefix())
}

// udpClientWith is a UDP connection to pc with framer f, aborted when the
// test ends.
func udpClientWith(t *testing.T, sys *System, pc *net.UDPConn, f framers.Framer) *Connection {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort())))
	pre.AddFramer(f)
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	return c
}

// TestUDPHuntFramerOneDatagramPerMessage: over UDP every framed Message
// leaves as its own datagram, also when several are queued at once; one
// whose frame is above the largest datagram is a SendError
// (MessageTooLarge) and the Connection goes on.
func TestUDPHuntFramerOneDatagramPerMessage(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpFramedClient(t, sys, pc)
	ctx := testCtx(t)
	c.Batch(func() {
		for _, s := range []string{"m1", "m2", "m3"} {
			c.SendAsync([]byte(s), nil, nil)
		}
	})
	for _, s := range []string{"m1", "m2", "m3"} {
		require.Equal(t, frame(s), readDatagram(t, pc), "one datagram per framed message")
	}
	err := c.Send(ctx, make([]byte, 65507-4+1), nil) // its frame is 65508 bytes
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.Equal(t, ReasonMessageTooLarge, se.Reason)
	require.Equal(t, StateEstablished, c.State())
	require.NoError(t, c.Send(ctx, []byte("next"), nil))
	require.Equal(t, frame("next"), readDatagram(t, pc))
}

// TestUDPHuntFramerOnePassPerDatagram: over UDP a framer sees each
// datagram on its own and whole: a datagram holding a cut frame is not
// completed by the next datagram (it is a ReceiveError), a large framed datagram arrives whole,
// and what a framer sends itself leaves as a datagram.
func TestUDPHuntFramerOnePassPerDatagram(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpFramedClient(t, sys, pc)
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("hi"), nil))
	_, from := readDatagramFrom(t, pc)
	big := make([]byte, 30000)
	big[len(big)-1] = 3
	for _, d := range [][]byte{frame("0123456789")[:7], frame("whole"), frame(string(big))} {
		_, err := pc.WriteToUDPAddrPort(d, from)
		require.NoError(t, err)
	}
	_, err := c.Receive(ctx)
	require.ErrorIs(t, err, framers.ErrTruncated, "the cut frame is a ReceiveError (TestUDPFramedCutFrameIsAReceiveError)")
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "whole", string(m.Data), "the cut frame is not completed by the next datagram")
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, big, m.Data)

	// a framer's own bytes (an acknowledgement) are one datagram
	a := udpClientWith(t, sys, pc, newAckFramer())
	require.NoError(t, a.Send(ctx, []byte("x"), nil))
	_, from = readDatagramFrom(t, pc)
	_, err = pc.WriteToUDPAddrPort([]byte("ping"), from)
	require.NoError(t, err)
	require.Equal(t, "ack:ping", string(readDatagram(t, pc)))
	m, err = a.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(m.Data))
}

// TestUDPHuntUDPLite: UDP-Lite (Prohibit full checksum coverage) keeps
// the UDP mappings: each remote is its own received Connection, a Message
// above the largest IPv4 payload is a typed SendError on both sides with
// nothing sent, and the largest goes through.
func TestUDPHuntUDPLite(t *testing.T) {
	sys := newTestSystem(t)
	props := func() *TransportProperties {
		tp := datagramProps(t)
		require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
		require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
		return tp
	}
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	if err != nil && strings.Contains(err.Error(), stacks.ErrUDPLiteUnsupported.Error()) {
		t.Skip("kernel without UDP-Lite")
	}
	require.NoError(t, err)
	defer ln.Stop()
	ctx := testCtx(t)
	for i := range 3 {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props()),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
		require.NoError(t, err)
		defer func() { c.Abort(); <-c.Done() }()
		require.Equal(t, "udplite", c.GetProperties().Stack)
		msg := fmt.Sprintf("lite %d", i)
		require.NoError(t, c.Send(ctx, []byte(msg), nil))
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		defer func() { s.Abort(); <-s.Done() }()
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, string(m.Data))
		for _, pair := range [][2]*Connection{{c, s}, {s, c}} {
			from, to := pair[0], pair[1]
			require.Equal(t, int64(65507), from.GetProperties().Socket.SendMsgMaxLen)
			err = from.Send(ctx, make([]byte, 65508), nil)
			var se *SendError
			require.ErrorAs(t, err, &se)
			require.Equal(t, ReasonMessageTooLarge, se.Reason)
			big := make([]byte, 65507)
			big[65506] = 1
			require.NoError(t, from.Send(ctx, big, nil))
			m, err := to.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, big, m.Data, "nothing of the failed message arrived")
			require.Equal(t, StateEstablished, from.State())
		}
	}
}

// TestUDPListenerSocketOutlivesStopWithItsConnections pins what
// Listener.Done says of UDP (it said UDP sockets were closed when the
// Listener stops, their ports free at Done): a UDP Listener's socket is
// shared with the Connections it received, so one of them left open when
// the Listener stops keeps the socket bound past Done (the port in use,
// that Connection still receiving and answering), a new peer is not
// received, and the socket is closed, the port free, once that Connection
// is Done.
func TestUDPListenerSocketOutlivesStopWithItsConnections(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := udpListenOn(t, sys, "127.0.0.1", datagramProps(t))
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	ctx := testCtx(t)
	a, b := rawUDPOn(t, "127.0.0.1"), rawUDPOn(t, "127.0.0.1")
	_, err := a.WriteToUDPAddrPort([]byte("a1"), ap)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	ln.Stop()
	<-ln.Done()

	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err == nil {
		_ = pc.Close()
	}
	require.ErrorIs(t, err, syscall.EADDRINUSE, "the socket is still bound after Done")
	_, err = a.WriteToUDPAddrPort([]byte("a2"), ap)
	require.NoError(t, err)
	for _, w := range []string{"a1", "a2"} {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, w, string(m.Data))
	}
	require.NoError(t, s.Send(ctx, []byte("answer"), nil))
	buf := make([]byte, 64)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := a.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	require.Equal(t, "answer", string(buf[:n]))
	require.Equal(t, ap, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	_, err = b.WriteToUDPAddrPort([]byte("b1"), ap)
	require.NoError(t, err)
	_, err = ln.Accept(ctx)
	require.ErrorIs(t, err, ErrClosed, "a new peer is not received after Stop")

	require.NoError(t, s.Close())
	<-s.Done()
	pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	require.NoError(t, err, "the port is free once the last Connection on the socket is Done")
	require.NoError(t, pc.Close())
}
