package taps

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// holdRelay is a UDP relay on loopback between QUIC clients and a server.
// Once armed, everything the server sends and a client's datagrams that
// carry a Handshake or a 1-RTT packet are held until release, while the
// client's Initial and 0-RTT packets go through: neither side can complete
// the handshake, so the client's first message can only leave as 0-RTT
// and the server reads it before its handshake completes, every time,
// whatever the timing.
type holdRelay struct {
	t      *testing.T
	pc     *net.UDPConn
	server *net.UDPAddr

	mu       sync.Mutex
	armed    bool
	released bool
	peers    map[string]*relayPeer
	wg       sync.WaitGroup
	// zeroRTT is closed when, armed, a client's datagram carrying a 0-RTT
	// packet went through
	zeroRTT     chan struct{}
	zeroRTTSeen bool
}

type relayPeer struct {
	client   *net.UDPAddr
	up       *net.UDPConn // to the server
	held     [][]byte     // from the client
	heldDown [][]byte     // from the server
}

// quicHandshakeOn reports whether datagram b (QUIC version 1, possibly
// several coalesced packets) carries a Handshake or a 1-RTT packet.
func quicHandshakeOn(b []byte) bool {
	long, short := quicPacketTypes(b)
	return short || slices.Contains(long, 2)
}

// quicZeroRTTOn reports whether datagram b carries a 0-RTT packet.
func quicZeroRTTOn(b []byte) bool {
	long, _ := quicPacketTypes(b)
	return slices.Contains(long, 1)
}

func newHoldRelay(t *testing.T, server *net.UDPAddr) *holdRelay {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r := &holdRelay{t: t, pc: pc, server: server, peers: map[string]*relayPeer{}, zeroRTT: make(chan struct{})}
	r.wg.Add(1)
	go r.fromClients()
	t.Cleanup(r.close)
	return r
}

// relayedPre is a holdRelay to ln and a length-prefix framed QUIC client
// Preconnection (with tp) to ln through it.
func relayedPre(t *testing.T, sys *System, pki *testPKI, tp *TransportProperties, ln *Listener) (*holdRelay, *Preconnection) {
	t.Helper()
	ap, _ := ln.LocalEndpoints()[0].Addr()
	relay := newHoldRelay(t, net.UDPAddrFromAddrPort(ap))
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(relay.port())),
		WithResolver(loopbackOnly))
	pre.AddFramer(framers.NewLengthPrefix())
	return relay, pre
}

func (r *holdRelay) port() uint16 { return uint16(r.pc.LocalAddr().(*net.UDPAddr).Port) }

func (r *holdRelay) arm() {
	r.mu.Lock()
	r.armed, r.released = true, false
	r.mu.Unlock()
}

// release forwards what was held and stops holding.
func (r *holdRelay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.released = true
	for _, p := range r.peers {
		for _, b := range p.held {
			_, _ = p.up.Write(b)
		}
		for _, b := range p.heldDown {
			_, _ = r.pc.WriteToUDP(b, p.client)
		}
		p.held, p.heldDown = nil, nil
	}
}

func (r *holdRelay) fromClients() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		p := r.peers[from.String()]
		if p == nil {
			up, err := net.DialUDP("udp", nil, r.server)
			if err != nil {
				r.mu.Unlock()
				return
			}
			p = &relayPeer{client: from, up: up}
			r.peers[from.String()] = p
			r.wg.Add(1)
			go r.fromServer(p)
		}
		if r.armed && !r.released && quicHandshakeOn(b) {
			p.held = append(p.held, b)
			r.mu.Unlock()
			continue
		}
		if r.armed && !r.zeroRTTSeen && quicZeroRTTOn(b) {
			r.zeroRTTSeen = true
			close(r.zeroRTT)
		}
		r.mu.Unlock()
		_, _ = p.up.Write(b)
	}
}

func (r *holdRelay) fromServer(p *relayPeer) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := p.up.Read(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.armed && !r.released {
			p.heldDown = append(p.heldDown, append([]byte(nil), buf[:n]...))
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		_, _ = r.pc.WriteToUDP(buf[:n], p.client)
	}
}

func (r *holdRelay) close() {
	_ = r.pc.Close()
	r.mu.Lock()
	for _, p := range r.peers {
		_ = p.up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// TestEarlyDataMarksZeroRTTMessages: a message the server reads as QUIC
// 0-RTT data (before its handshake can complete: the relay holds the
// client's Finished) has EarlyData; messages after the handshake do not,
// nor do those of a full handshake.
func TestEarlyDataMarksZeroRTTMessages(t *testing.T) {
	skip0RTTUnderRace(t)
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming)) // QUIC: crypto/tls has no 0-RTT
	type got struct {
		data  string
		early bool
	}
	received := make(chan got, 16)
	ln, accepted := quicEchoServer(t, sys, pki, tp, func(m *Message) { received <- got{string(m.Data), m.Context.EarlyData()} })
	relay, pre := relayedPre(t, sys, pki, tp, ln)
	ctx := testCtx(t)

	// a full handshake: nothing is early; the echo brings the ticket
	c, err := pre.InitiateWithSend(ctx, []byte("full"), NewMessageContext().SafelyReplayable(true))
	require.NoError(t, err)
	require.Equal(t, got{"full", false}, <-received)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "full", string(m.Data))
	roundTrip(t, c, "ticket")
	require.Equal(t, got{"ticket", false}, <-received)
	c.Abort()
	<-c.Done()
	<-(<-accepted).Done() // its close came through the relay

	// resumed with 0-RTT, the handshake held back
	relay.arm()
	type initiated struct {
		c   *Connection
		err error
	}
	done := make(chan initiated, 1)
	go func() {
		c, err := pre.InitiateWithSend(ctx, []byte("zero-rtt"), NewMessageContext().SafelyReplayable(true))
		done <- initiated{c, err}
	}()
	select {
	case g := <-received:
		require.Equal(t, got{"zero-rtt", true}, g, "read before the handshake completed: early data")
	case <-ctx.Done():
		t.Fatal("the server got no 0-RTT data: the client had no ticket, or sent its message after the handshake")
	}
	relay.release()
	in := <-done
	require.NoError(t, in.err)
	c = in.c
	defer func() {
		c.Abort()
		<-c.Done()
		<-(<-accepted).Done() // before the relay closes
	}()
	m, err = c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "zero-rtt", string(m.Data))
	require.False(t, m.Context.EarlyData(), "the client receives no early data")
	require.True(t, c.GetProperties().Socket.Used0RTT)
	roundTrip(t, c, "after")
	require.Equal(t, got{"after", false}, <-received, "sent after the handshake: not early")
}

// heldZeroRTT is a client resuming a QUIC session through a holdRelay
// whose handshake is held back: the client's first message has reached
// the server as 0-RTT data, and s is the server's Connection, while its
// handshake cannot complete (what it sends that is not safely replayable
// waits for it). The client's InitiateWithSend returns only once its
// handshake has completed: release lets it complete and returns the
// client's Connection.
type heldZeroRTT struct {
	t     *testing.T
	relay *holdRelay
	s     *Connection
	done  chan heldInitiated
}

type heldInitiated struct {
	c   *Connection
	err error
}

// newHeldZeroRTT makes a first, full handshake for the session ticket,
// then InitiateWithSend of first (safely replayable) with the relay
// holding the handshake, and returns once the server's Connection has read
// first as early data.
func newHeldZeroRTT(t *testing.T, sys *System, first string) *heldZeroRTT {
	t.Helper()
	pki := newTestPKI(t)
	tp := quicOnly(t)
	ctx := testCtx(t)
	ln := quicListen(t, ctx, sys, pki, tp)
	relay, pre := relayedPre(t, sys, pki, tp, ln)

	c, err := pre.InitiateWithSend(ctx, []byte("full"), NewMessageContext().SafelyReplayable(true))
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "full", string(m.Data))
	require.False(t, m.Context.EarlyData())
	require.NoError(t, s.Send(ctx, []byte("ticket"), nil))
	roundTripAfter(t, c, "ticket") // the ticket came before it
	c.Abort()
	<-c.Done()
	<-s.Done() // its close came through the relay

	relay.arm()
	h := &heldZeroRTT{t: t, relay: relay, done: make(chan heldInitiated, 1)}
	go func() {
		c, err := pre.InitiateWithSend(ctx, []byte(first), NewMessageContext().SafelyReplayable(true))
		h.done <- heldInitiated{c, err}
	}()
	h.s, err = ln.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		h.s.Abort()
		<-h.s.Done() // before the relay closes
	})
	m, err = h.s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, first, string(m.Data))
	require.True(t, m.Context.EarlyData(), "read before the handshake completed: early data")
	select {
	case in := <-h.done:
		t.Fatalf("InitiateWithSend returned before the handshake completed: %v", in.err)
	default:
	}
	return h
}

// release lets the handshake complete and returns the client's
// Connection.
func (h *heldZeroRTT) release() *Connection {
	h.t.Helper()
	h.relay.release()
	in := <-h.done
	require.NoError(h.t, in.err)
	h.t.Cleanup(func() {
		in.c.Abort()
		<-in.c.Done()
	})
	return in.c
}

// TestZeroRTTServerAnswersBeforeTheHandshake: the side that accepted a
// 0-RTT connection sends at once, before the handshake completes (0.5-RTT
// data, as a quic-go server does), also a message that is not safely
// replayable: its Sent comes while the relay still holds the client's
// Finished back, and the client reads it once its handshake is done.
// Holding the server's answer until the handshake (as the initiating side
// holds what is not safely replayable) cost a 0-RTT client's first answer
// about 0.3 ms on loopback.
func TestZeroRTTServerAnswersBeforeTheHandshake(t *testing.T) {
	skip0RTTUnderRace(t)
	sys := newTestSystem(t)
	h := newHeldZeroRTT(t, sys, "request")
	sent := make(chan error, 1)
	h.s.SendAsync([]byte("answer"), nil, func(_ *Connection, err error) { sent <- err })
	wait, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-wait.Done():
		t.Fatal("the server's answer waited for the handshake, which the relay holds back")
	}
	c := h.release()
	roundTripAfter(t, c, "answer")
}
