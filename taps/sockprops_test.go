package taps

import (
	"context"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Tests of the socket-level properties (issue 9) through the public API.

func loopbackRemote(ap netip.AddrPort) *RemoteEndpoint {
	return NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())
}

func listenerAddr(t *testing.T, ln *Listener) netip.AddrPort {
	t.Helper()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	return ap
}

// datagramProps are unreliable-datagram properties whose messages need not
// each be marked safelyReplayable.
func datagramProps(t *testing.T) *TransportProperties {
	tp := NewTransportProperties(UnreliableDatagram)
	require.NoError(t, tp.Set(SafelyReplayable, true))
	return tp
}

// TestMaxSendRatePacesTCP sends 3 MB at maxSendRate 8 Mbit/s over TCP on
// loopback: the receiver sees them arrive at the rate (within 10 %), and
// SO_MAX_PACING_RATE holds the rate too.
func TestMaxSendRatePacesTCP(t *testing.T) {
	const rate, total, msg = 8_000_000, 3_000_000, 16 << 10
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MaxSendRate, int64(rate)))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	if so := c.GetProperties().Socket; so != nil && so.MaxPacingRate != 0 {
		require.Equal(t, uint64(rate), so.MaxPacingRate, "SO_MAX_PACING_RATE read back")
	}

	got, elapsed, measured := transferRate(t, c, ln, total, msg)
	t.Logf("%d bytes in %v: %.0f bit/s (maxSendRate %d)", got, elapsed, measured, rate)
	require.InDelta(t, rate, measured, rate*0.10, "rate measured over %v", elapsed)
}

// TestMaxSendRatePacesUDP: datagrams get no kernel pacing, so this
// measures gotaps' own token bucket: 1000-byte datagrams at 4 Mbit/s for
// 1 s, within 10 %.
func TestMaxSendRatePacesUDP(t *testing.T) {
	const rate, total, msg = 4_000_000, 500_000, 1000
	sys := newTestSystem(t)
	sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	require.NoError(t, err)
	defer sln.Close()
	tp := datagramProps(t)
	require.NoError(t, tp.Set(MaxSendRate, int64(rate)))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(sln.Addr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	ctx := testCtx(t)
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, msg)
		for sent := 0; sent < total; sent += msg {
			if err := c.Send(ctx, buf, nil); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	peer, err := sln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	buf := make([]byte, 2*msg)
	first := time.Now()
	got := msg // the datagram Accept was made for is read first
	_, err = peer.Read(buf)
	require.NoError(t, err)
	for got < total {
		n, err := peer.Read(buf)
		require.NoError(t, err)
		got += n
	}
	elapsed := time.Since(first)
	require.NoError(t, <-sendErr)
	measured := float64(got-msg) * 8 / elapsed.Seconds()
	t.Logf("%d bytes in %v: %.0f bit/s (maxSendRate %d)", got, elapsed, measured, rate)
	require.InDelta(t, rate, measured, rate*0.10)
}

// TestMaxRecvRateTCP: the receiver reads no faster than its maxRecvRate
// although the sender is not limited (1 MB at 8 Mbit/s, within 10 %).
func TestMaxRecvRateTCP(t *testing.T) {
	const rate, total, msg = 8_000_000, 1_000_000, 64 << 10
	sys := newTestSystem(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MaxRecvRate, int64(rate)))
	ln, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	c := dialTCP(t, sys, ln)
	defer c.Abort()
	got, elapsed, measured := transferRate(t, c, ln, total, msg)
	t.Logf("%d bytes in %v: %.0f bit/s (maxRecvRate %d)", got, elapsed, measured, rate)
	require.InDelta(t, rate, measured, rate*0.10)
}

// TestMaxSendRateSetOnOpenConnection changes maxSendRate on an open
// connection: the kernel pacing follows.
func TestMaxSendRateSetOnOpenConnection(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	require.Zero(t, c.GetProperties().Socket.MaxPacingRate)
	require.NoError(t, c.SetProperty(MaxSendRate, int64(16_000_000)))
	so := c.GetProperties().Socket
	if so.MaxPacingRate == 0 {
		t.Skip("kernel without SO_MAX_PACING_RATE")
	}
	require.Equal(t, uint64(16_000_000), so.MaxPacingRate)
	require.NoError(t, c.SetProperty(MaxSendRate, Unlimited))
	require.Zero(t, c.GetProperties().Socket.MaxPacingRate)
	require.NoError(t, c.Send(testCtx(t), []byte("still sends"), nil))
}

// TestMinRecvRateSoftError: a receiver waiting on a connection whose peer
// sends slower than its minRecvRate gets a SoftError carrying
// *MinRateError; the connection stays Established.
func TestMinRecvRateSoftError(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MinRecvRate, int64(1_000_000_000)))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	softs := softErrors(c)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	go func() { _, _ = c.Receive(ctx) }() // waiting to receive: nothing comes
	var err2 error
	select {
	case err2 = <-softs:
	case <-time.After(3 * time.Second):
		t.Fatal("no SoftError for minRecvRate")
	}
	var re *MinRateError
	require.ErrorAs(t, err2, &re)
	require.ErrorIs(t, err2, ErrRateNotMet)
	require.Equal(t, MinRecvRate, re.Property)
	require.Less(t, re.Rate, re.Min)
	require.Equal(t, StateEstablished, c.State())
}

// TestMinSendRateSoftError: a sender whose peer stops reading cannot keep
// its minSendRate once the socket buffers are full: a SoftError carrying
// *MinRateError, and the connection stays Established.
func TestMinSendRateSoftError(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MinSendRate, int64(100_000_000)))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	softs := softErrors(c)
	ctx, cancel := context.WithCancel(testCtx(t))
	sent := make(chan struct{})
	go func() { // the peer never reads: the send queue stays backlogged
		defer close(sent)
		buf := make([]byte, 1<<20)
		for ctx.Err() == nil {
			if c.Send(ctx, buf, nil) != nil {
				return
			}
		}
	}()
	srv, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer srv.Abort() // never reads; aborted so that Shutdown need not linger
	defer func() { cancel(); c.Abort(); <-sent }()
	var got error
	select {
	case got = <-softs:
	case <-time.After(3500 * time.Millisecond):
		t.Fatal("no SoftError for minSendRate")
	}
	var re *MinRateError
	require.ErrorAs(t, got, &re)
	require.Equal(t, MinSendRate, re.Property)
	require.Less(t, re.Rate, re.Min)
	require.Equal(t, StateEstablished, c.State())
}

// TestSoftErrorFromClosedUDPPort sends UDP to a closed loopback port: the
// ICMP port unreachable comes back as a SoftError (ECONNREFUSED) when
// softErrorNotify is set, and the connection stays Established; without
// it the connection goes on as if nothing happened.
func TestSoftErrorFromClosedUDPPort(t *testing.T) {
	sys := newTestSystem(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	require.NoError(t, pc.Close())

	tp := datagramProps(t)
	require.NoError(t, tp.Set(SoftErrorNotify, Prefer))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(loopbackRemote(closed))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	softs := softErrors(c)
	require.Equal(t, "udp", c.GetProperties().Stack)
	require.True(t, c.GetProperties().Socket.SoftErrors)
	require.NoError(t, c.Send(testCtx(t), []byte("anyone?"), nil))
	select {
	case err := <-softs:
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
	case <-time.After(3 * time.Second):
		t.Fatal("no SoftError for the ICMP port unreachable")
	}
	require.Equal(t, StateEstablished, c.State())
	require.NoError(t, c.Send(testCtx(t), []byte("still open"), nil))

	// without softErrorNotify: no delivery, and nothing fails
	plain, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithRemoteEndpoint(loopbackRemote(closed))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer plain.Abort()
	require.False(t, plain.GetProperties().Socket.SoftErrors)
	for range 3 {
		require.NoError(t, plain.Send(testCtx(t), []byte("anyone?"), nil))
	}
	require.Equal(t, StateEstablished, plain.State())
}

// TestUDPLiteChecksumCoverage: Prohibit full checksum coverage selects
// UDP-Lite; msgChecksumLen and recvChecksumLen are set on the sockets
// (read back with getsockopt, counting the 8-byte header) and datagrams,
// one with its own msgChecksumLen, go through.
func TestUDPLiteChecksumCoverage(t *testing.T) {
	sys := newTestSystem(t)
	props := func(send, recv int64) *TransportProperties {
		tp := datagramProps(t)
		require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
		require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
		require.NoError(t, tp.Set(MsgChecksumLen, send))
		require.NoError(t, tp.Set(RecvChecksumLen, recv))
		return tp
	}
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props(8, 4)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	if err != nil && strings.Contains(err.Error(), stacks.ErrUDPLiteUnsupported.Error()) {
		t.Skip("kernel without UDP-Lite")
	}
	require.NoError(t, err)
	defer ln.Stop()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props(8, 8)),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	p := c.GetProperties()
	require.Equal(t, "udplite", p.Stack)
	require.Equal(t, 16, p.Socket.SendChecksumCoverage, "msgChecksumLen 8 + header")
	require.Equal(t, 16, p.Socket.RecvChecksumCoverage, "recvChecksumLen 8 + header")
	require.False(t, p.Selected[FullChecksumSend])

	payload := []byte("a UDP-Lite datagram, partly checksummed")
	require.NoError(t, c.Send(testCtx(t), payload, nil))
	require.NoError(t, c.Send(testCtx(t), payload[:20], NewMessageContext().ChecksumLen(4)))
	srv, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer srv.Abort()
	sp := srv.GetProperties()
	require.Equal(t, "udplite", sp.Stack)
	require.Equal(t, 12, sp.Socket.RecvChecksumCoverage, "recvChecksumLen 4 + header")
	m, err := srv.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, payload, m.Data)
	m, err = srv.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, payload[:20], m.Data, "coverage 12 (msgChecksumLen 4) meets the receiver's 12")
	require.NoError(t, srv.Send(testCtx(t), []byte("back"), nil))
	m, err = c.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "back", string(m.Data))
	// the per-message coverage was restored after its datagram
	require.Equal(t, 16, c.GetProperties().Socket.SendChecksumCoverage)

	// msgChecksumLen on plain UDP is a SendError, as before
	u, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer u.Abort()
	require.Equal(t, "udp", u.GetProperties().Stack)
	require.Error(t, u.Send(testCtx(t), payload, NewMessageContext().ChecksumLen(4)))
}

// TestReceivedECN: the ECN bits a sender puts on each datagram appear in
// the received MessageContext.
func TestReceivedECN(t *testing.T) {
	sys := newTestSystem(t)
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	defer ln.Stop()
	peer, err := stacks.UDP().Dial(testCtx(t), listenerAddr(t, ln), stacks.Options{})
	require.NoError(t, err)
	defer peer.Close()
	tw := peer.(stacks.TOSDatagrams)
	for _, ecn := range []uint8{stacks.ECT0, stacks.ECT1, stacks.NotECT, stacks.ECNCE} {
		_, err := tw.WriteMsg([]byte{ecn}, stacks.TOS(10, ecn))
		require.NoError(t, err)
	}
	srv, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer srv.Abort()
	for _, want := range []uint8{stacks.ECT0, stacks.ECT1, stacks.NotECT, stacks.ECNCE} {
		m, err := srv.Receive(testCtx(t))
		require.NoError(t, err)
		require.Equal(t, []byte{want}, m.Data)
		ecn, ok := m.Context.ECN()
		require.True(t, ok)
		require.Equal(t, want, ecn)
		require.False(t, m.Context.EarlyData())
	}
}

// TestMsgCapacityProfilePerDatagram: on UDP each datagram carries the DSCP
// of its msgCapacityProfile, seen by the receiver (IP_RECVTOS); on TCP the
// Send succeeds, the connection's DSCP stands and a trace record says the
// property was not honoured per message.
func TestMsgCapacityProfilePerDatagram(t *testing.T) {
	var mu sync.Mutex
	var notHonoured []*TraceRecord
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Event == "NotHonoured" {
			mu.Lock()
			notHonoured = append(notHonoured, r)
			mu.Unlock()
		}
	}))
	sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	require.NoError(t, err)
	defer sln.Close()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(sln.Addr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	sends := []struct {
		mc   *MessageContext
		dscp uint8
	}{
		{NewMessageContext().CapacityProfile(LowLatencyInteractive), 46},
		{nil, 0},
		{NewMessageContext().CapacityProfile(Scavenger), 1},
		{NewMessageContext().CapacityProfile(ConstantRateStreaming), 26},
	}
	for i, s := range sends {
		require.NoError(t, c.Send(testCtx(t), []byte{byte(i)}, s.mc))
	}
	peer, err := sln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	buf := make([]byte, 16)
	for i, s := range sends {
		n, tos, err := peer.(stacks.TOSDatagrams).ReadMsg(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, buf[:n])
		require.Equal(t, s.dscp, stacks.DSCPOf(tos), "datagram %d", i)
	}
	require.Equal(t, uint8(0), c.GetProperties().Socket.DSCP, "the socket's own DSCP is untouched")

	// a connCapacityProfile changed on the open connection is the new
	// default; a message may still ask for another profile
	require.NoError(t, c.SetProperty(ConnCapacityProfile, LowLatencyInteractive))
	require.NoError(t, c.Send(testCtx(t), []byte{10}, nil))
	require.NoError(t, c.Send(testCtx(t), []byte{11}, NewMessageContext().CapacityProfile(Scavenger)))
	for i, want := range []uint8{46, 1} {
		n, tos, err := peer.(stacks.TOSDatagrams).ReadMsg(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(10 + i)}, buf[:n])
		require.Equal(t, want, stacks.DSCPOf(tos), "datagram %d after SetProperty", 10+i)
	}

	// TCP: the connection's profile stands; a message asking for another
	// one is a SendError (TestMsgCapacityProfileOnStreamIsSendError)
	ln := listenLoopback(t, sys)
	tc := dialTCP(t, sys, ln)
	defer tc.Abort()
	require.Error(t, tc.Send(testCtx(t), []byte("x"), NewMessageContext().CapacityProfile(LowLatencyInteractive)))
	require.Equal(t, uint8(0), tc.GetProperties().Socket.DSCP)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, notHonoured, "nothing is sent without its profile")
}

// TestReceivedFinal: on a byte stream the end of the stream ends the one
// Message, which is the final one.
func TestReceivedFinal(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	c := dial(t, sys, ln)
	defer c.Abort()
	require.NoError(t, c.Send(testCtx(t), []byte("last words"), NewMessageContext().Final(true)))
	srv, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer srv.Abort()
	var data []byte
	for {
		m, err := srv.Receive(testCtx(t))
		require.NoError(t, err)
		data = append(data, m.Data...)
		if m.EndOfMessage {
			require.True(t, m.Context.IsFinal())
			break
		}
		require.False(t, m.Context.IsFinal())
	}
	require.Equal(t, "last words", string(data))
}

// sockLab is the test's network namespace (stacktest.Netns).
type sockLab = stacktest.Netns

func newSockLab(t *testing.T) *sockLab { return stacktest.NewNetns(t, "sp", 232) }

// TestExcessiveRetransmissionInNetns connects over TCP to a peer in a
// network namespace the test creates, then silences the peer (a blackhole
// route inside the namespace swallows its ACKs): the connection's
// retransmissions reach retransmitNotifyThreshold and
// OnExcessiveRetransmission fires; the connection stays open.
func TestExcessiveRetransmissionInNetns(t *testing.T) {
	lab := newSockLab(t)
	// faster retransmission timeouts on this route (best effort)
	_ = exec.Command("ip", "route", "replace", "198.18.232.0/30", "dev", lab.HostIf, "proto", "kernel", "scope", "link",
		"src", lab.HostIP.String(), "rto_min", "20ms").Run()
	var ln net.Listener
	lab.Run(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(lab.NSIP, 0).String())
		return err
	})
	defer ln.Close()

	tl := new(traceLog)
	sys := newTestSystem(t, WithTracer(tl.add))
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(RetransmitNotify, Require))
	require.NoError(t, tp.Set(RetransmitNotifyThreshold, int64(3)))
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(ln.Addr().(*net.TCPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	events := make(chan int, 4)
	var lc lagCheck
	c.OnExcessiveRetransmission(func(c *Connection, n int) {
		lc.require(tl, c, "retransmit", "ExcessiveRetransmission", 1) // traced before the event
		select {
		case events <- n:
		default:
		}
	})
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
	buf := make([]byte, 16)
	n, err := peer.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))

	stacktest.IP(t, "-n", lab.NS, "route", "add", "blackhole", lab.HostIP.String()+"/32")
	require.NoError(t, c.Send(testCtx(t), []byte("anyone there?"), nil))
	select {
	case n := <-events:
		require.GreaterOrEqual(t, n, 3)
	case <-time.After(4 * time.Second):
		t.Fatal("no ExcessiveRetransmission event")
	}
	require.Equal(t, StateEstablished, c.State())
	lc.check(t, tl, c)
}

// transferRate sends total bytes in messages of msg bytes from c to the
// connection ln accepts, and returns what arrived, over how long (from the
// first message on), and the rate in bit/s.
func transferRate(t *testing.T, c *Connection, ln *Listener, total, msg int) (got int, elapsed time.Duration, bitsPerSec float64) {
	t.Helper()
	ctx := testCtx(t)
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, msg)
		for sent := 0; sent < total; sent += msg {
			if err := c.Send(ctx, buf[:min(msg, total-sent)], nil); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	srv, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer srv.Abort()
	var first time.Time
	firstBytes := 0
	for got < total {
		m, err := srv.Receive(ctx)
		require.NoError(t, err)
		if first.IsZero() {
			first, firstBytes = time.Now(), len(m.Data)
		}
		got += len(m.Data)
	}
	elapsed = time.Since(first)
	require.NoError(t, <-sendErr)
	return got, elapsed, float64(got-firstBytes) * 8 / elapsed.Seconds()
}
