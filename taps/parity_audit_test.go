package taps

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestParitySoftErrorNotifyRequireSelectsADatagramStack: Require
// softErrorNotify keeps only the stacks that deliver SoftError events (UDP,
// UDP-Lite), and Prefer ranks them first; the connection reads the
// property back as provided and really delivers the ICMP error.
func TestParitySoftErrorNotifyRequireSelectsADatagramStack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors as SoftError events and UDP-Lite are Linux only")
	}
	sys := newTestSystem(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	require.NoError(t, pc.Close())

	tp := datagramProps(t)
	require.NoError(t, tp.Require(SoftErrorNotify))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(loopbackRemote(closed))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	softs := softErrors(c)
	props := c.GetProperties()
	require.Contains(t, []string{"udp", "udplite"}, props.Stack)
	got, ok := props.Get(SoftErrorNotify)
	require.True(t, ok)
	require.Equal(t, true, got)
	require.NoError(t, c.Send(testCtx(t), []byte("anyone?"), nil))
	select {
	case err := <-softs:
		require.Error(t, err)
	case <-testCtx(t).Done():
		t.Fatal("no SoftError under Require softErrorNotify")
	}

	// reliable byte streams never deliver SoftError: Require rules them out
	// before any packet
	strict := NewTransportProperties()
	require.NoError(t, strict.Require(SoftErrorNotify))
	_, err = NewPreconnection(WithSystem(sys), WithTransportProperties(strict), WithRemoteEndpoint(loopbackRemote(closed))).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.True(t, errors.Is(err, ErrUnfulfilled), "%v", err)
}

// TestParityUDPCloseIsClosedAbortIsConnectionError: on UDP (RFC 9623
// §10.3) Close releases the port and ends with Closed; Abort ends with
// ConnectionError. Each Connection gets exactly its own terminal event.
func TestParityUDPCloseIsClosedAbortIsConnectionError(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	for _, abort := range []bool{false, true} {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
			WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
		require.NoError(t, err)
		ev := make(chan string, 4)
		c.OnClosed(func(*Connection) { ev <- "closed" })
		c.OnConnectionError(func(_ *Connection, err error) { ev <- "error: " + err.Error() })
		require.NoError(t, c.Send(testCtx(t), []byte("x"), nil))
		readDatagram(t, pc)
		if abort {
			c.Abort()
		} else {
			require.NoError(t, c.Close())
		}
		<-c.Done()
		select {
		case e := <-ev:
			if abort {
				require.Contains(t, e, "error: ")
			} else {
				require.Equal(t, "closed", e)
			}
		case <-testCtx(t).Done():
			t.Fatal("no terminal event")
		}
		require.Equal(t, StateClosed, c.State())
		require.Empty(t, ev, "one terminal event only")
	}
}

// TestParityUDPReceivePartialDatagram: Receive(MaxLength) on a datagram
// longer than maxLength gives ReceivedPartial events with the datagram's
// bytes in order, the last one ending the Message.
func TestParityUDPReceivePartialDatagram(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
	_, from := readDatagramFrom(t, pc)
	_, err := pc.WriteToUDPAddrPort([]byte("0123456789abcdefghijklmnopqrstu"), from)
	require.NoError(t, err)
	var got []byte
	parts := 0
	for {
		m, err := c.Receive(testCtx(t), MaxLength(10))
		require.NoError(t, err)
		require.LessOrEqual(t, len(m.Data), 10)
		got = append(got, m.Data...)
		parts++
		if m.EndOfMessage {
			break
		}
		require.Less(t, parts, 10)
	}
	require.Equal(t, "0123456789abcdefghijklmnopqrstu", string(got))
	require.Equal(t, 4, parts)
}

// TestParityUDPMsgMaxLens: sendMsgMaxLen and recvMsgMaxLen of a UDP
// connection are the largest datagram payload, not a constant or
// "unlimited"; a send-only connection's recvMsgMaxLen is 0 and a
// receive-only one's sendMsgMaxLen is 0 (RFC 9622 §8.1.11.2-3).
func TestParityUDPMsgMaxLens(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	p := c.GetProperties()
	s, ok := p.Get(SendMsgMaxLen)
	require.True(t, ok)
	r, ok := p.Get(RecvMsgMaxLen)
	require.True(t, ok)
	t.Logf("udp send %v recv %v singular %v", s, r, func() any { v, _ := p.Get(SingularTransmissionMsgMaxLen); return v }())
	require.Equal(t, int64(65507), s)
	require.IsType(t, int64(0), r)

	tp := datagramProps(t)
	require.NoError(t, tp.Set(Direction, UnidirectionalSend))
	so := udpClientTo(t, sys, pc, tp)
	p = so.GetProperties()
	require.False(t, p.CanReceive)
	r, ok = p.Get(RecvMsgMaxLen)
	require.True(t, ok)
	require.Equal(t, int64(0), r)
}

// eventLog records a connection's handler events in order; the barrier
// makes sure every event queued before it has run.
type eventLog struct {
	mu  sync.Mutex
	evs map[uint64][]string
}

func (l *eventLog) add(c *Connection, ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.evs == nil {
		l.evs = map[uint64][]string{}
	}
	l.evs[c.ID()] = append(l.evs[c.ID()], ev)
}

func (l *eventLog) of(c *Connection) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.evs[c.ID()]...)
}

func (l *eventLog) hook(p *Preconnection) {
	p.OnReady(func(c *Connection) { l.add(c, "Ready") })
	p.OnClosed(func(c *Connection) { l.add(c, "Closed") })
	p.OnConnectionError(func(c *Connection, _ error) { l.add(c, "ConnectionError") })
	p.OnEstablishmentError(func(c *Connection, _ error) { l.add(c, "EstablishmentError") })
}

// TestParityPreconnectionHandlersPerRole: the Preconnection's handlers
// (the seed's HANDLE_STATE_READY / _CLOSED / _CONNECTION_ERROR) are
// called for the connections it makes: an initiated connection gets Ready
// once and then its terminal event; a connection a Listener receives gets
// no Ready (RFC 9622 §7.2) but its Closed; a Clone's own OnReady is
// called although it was set after Clone returned (§7.4); a
// Rendezvous connection gets no Ready (§7.3).
func TestParityPreconnectionHandlersPerRole(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	var log eventLog
	lpre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	log.hook(lpre)
	ln, err := lpre.Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	log.hook(pre)
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	// a clone starts with no handlers (clone.go); set after Clone returned
	// it Ready, OnReady is called once at once
	clone.OnReady(func(c *Connection) { log.add(c, "Ready") })
	clone.OnConnectionError(func(c *Connection, _ error) { log.add(c, "ConnectionError") })
	s2, err := ln.Accept(ctx)
	require.NoError(t, err)

	require.NoError(t, c.Close())
	requireDone(t, c)
	require.NoError(t, s.Close()) // the peer's end of stream only half-closes s
	requireDone(t, s)
	clone.Abort()
	requireDone(t, clone)
	requireDone(t, s2)
	require.Eventually(t, func() bool {
		return len(log.of(c)) == 2 && len(log.of(clone)) == 2 && len(log.of(s)) == 1 && len(log.of(s2)) == 1
	}, 10*time.Second, 5*time.Millisecond, "c %v clone %v s %v s2 %v", log.of(c), log.of(clone), log.of(s), log.of(s2))
	require.Equal(t, []string{"Ready", "Closed"}, log.of(c))
	require.Equal(t, []string{"Ready", "ConnectionError"}, log.of(clone))
	require.Equal(t, []string{"Closed"}, log.of(s))
	require.Equal(t, []string{"ConnectionError"}, log.of(s2), "a reset is a ConnectionError")

	// rendezvous: no Ready
	ports := freeTCPPorts(t, 2)
	a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
	b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])), WithRemoteEndpoint(rvRemote(ports[0])))
	log.hook(a)
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	ca.Abort()
	requireDone(t, ca)
	cb.Abort()
	requireDone(t, cb)
	require.Eventually(t, func() bool { return len(log.of(ca)) >= 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"ConnectionError"}, log.of(ca))
}

// TestParitySelectionPropertiesDecideTheStack: Selection Properties
// change which stack is chosen, or fail before any packet when nothing
// satisfies them (RFC 9623 §4.1.3).
func TestParitySelectionPropertiesDecideTheStack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors as SoftError events and UDP-Lite are Linux only")
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	defer ln.Stop()
	remote := loopbackRemote(listenerAddr(t, ln))

	// preserveMsgBoundaries Require: no byte stream qualifies without a
	// framer; with one, TCP does
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(PreserveMsgBoundaries))
	_, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(remote)).Initiate(ctx)
	require.ErrorIs(t, err, ErrUnfulfilled)
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(remote))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "tcp", c.GetProperties().Stack)
	got, _ := c.GetProperties().Get(PreserveMsgBoundaries)
	require.Equal(t, true, got, "a framer delimits messages")
	c.Abort()
	requireDone(t, c)

	// zeroRttMsg Require without security: no plain stack sends 0-RTT
	tp = NewTransportProperties()
	require.NoError(t, tp.Require(ZeroRTTMsg))
	_, err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithRemoteEndpoint(remote)).Initiate(ctx)
	require.ErrorIs(t, err, ErrUnfulfilled)

	// Avoid full checksums on a datagram connection: UDP-Lite ranks first
	pc := rawUDP(t)
	tp = datagramProps(t)
	require.NoError(t, tp.Avoid(FullChecksumSend))
	require.NoError(t, tp.Avoid(FullChecksumRecv))
	u, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "udplite", u.GetProperties().Stack)
	u.Abort()
	requireDone(t, u)
}

// TestParityClosingReadsBack: while a Close lingers (most of what was
// sent is unacknowledged by a peer that does not read), connState reads
// Closing and canSend false, and a Send fails; once the peer has read
// everything and closed, Closed, with canSend and canReceive false.
func TestParityClosingReadsBack(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = setRcvBuf(fd, 2048) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c := initiateTo(t, sys, loopbackRemote(ln.Addr().(*net.TCPAddr).AddrPort()))
	peer, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	data := bytes.Repeat([]byte("x"), 64<<10)
	require.NoError(t, c.Send(ctx, data, nil))
	require.NoError(t, c.Close())
	p := c.GetProperties()
	st, _ := p.Get(ConnState)
	require.Equal(t, StateClosing, st)
	require.False(t, p.CanSend)
	require.Error(t, c.Send(ctx, []byte("late"), nil))
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(data))))
	require.NoError(t, err)
	require.Len(t, got, len(data))
	require.NoError(t, peer.Close())
	requireDone(t, c)
	p = c.GetProperties()
	st, _ = p.Get(ConnState)
	require.Equal(t, StateClosed, st)
	require.False(t, p.CanSend)
	require.False(t, p.CanReceive)
}

// TestParityUDPFinalEndsSending: final on UDP has no effect on the wire
// (RFC 9623 §10.3) but is still the last Message (RFC 9622 §9.1.3.5):
// canSend turns false and a later Send is a SendError; the connection
// still receives.
func TestParityUDPFinalEndsSending(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	pc := rawUDP(t)
	c := udpClientTo(t, sys, pc, datagramProps(t))
	require.NoError(t, c.Send(ctx, []byte("last"), NewMessageContext().Final(true)))
	got, from := readDatagramFrom(t, pc)
	require.Equal(t, "last", string(got))
	p := c.GetProperties()
	require.False(t, p.CanSend)
	require.True(t, p.CanReceive)
	var se *SendError
	require.ErrorAs(t, c.Send(ctx, []byte("after final"), nil), &se)
	_, err := pc.WriteToUDPAddrPort([]byte("reply"), from)
	require.NoError(t, err)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "reply", string(m.Data))
}

// TestParityIgnoreIsNoPreference: the seed's ignore() is NoPreference,
// and default() restores the RFC default.
func TestParityIgnoreIsNoPreference(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.Ignore(Reliability))
	require.Equal(t, NoPreference, tp.Preference(Reliability))
	require.NoError(t, tp.Default(Reliability))
	require.Equal(t, Require, tp.Preference(Reliability))
	require.NoError(t, tp.Ignore(Multistreaming))
	require.Equal(t, NoPreference, tp.Preference(Multistreaming))
}

// TestParityInitiateWithSendFirstMessageExpires: the first Message of
// InitiateWithSend whose msgLifetime runs out before the connection is
// Ready (a framer holds Ready until its handshake) is Expired, not sent
// (RFC 9622 §9.2.5: one of Sent, Expired or SendError).
func TestParityInitiateWithSendFirstMessageExpires(t *testing.T) {
	const lifetime = 20 * time.Millisecond
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	first := make(chan error, 1)
	type result struct {
		c   *Connection
		err error
	}
	done := make(chan result, 1)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r))
	pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
	pre.OnFirstMessageSent(func(_ *Connection, err error) { first <- err })
	go func() {
		c, err := pre.InitiateWithSend(testCtx(t), []byte("stale"), NewMessageContext().Lifetime(lifetime))
		done <- result{c, err}
	}()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	hello := make([]byte, 5)
	_, err = io.ReadFull(peer, hello)
	require.NoError(t, err)
	time.Sleep(3 * lifetime) // not an event: the lifetime has to run out
	_, err = peer.Write(append([]byte("HELLO"), frame("after handshake")...))
	require.NoError(t, err)
	res := <-done
	require.NoError(t, res.err)
	defer func() { res.c.Abort(); <-res.c.Done() }()
	select {
	case err := <-first:
		require.ErrorIs(t, err, ErrExpired)
	case <-testCtx(t).Done():
		t.Fatal("no event for the first message")
	}
	// nothing but the handshake reached the peer: a message sent now is
	// the first frame after it
	require.NoError(t, res.c.Send(testCtx(t), []byte("fresh"), nil))
	want := frame("fresh")
	got := make([]byte, len(want))
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestParitySecurityNeeded: the seed's security_needed=True never falls
// back to a plain stack (RFC 9622 §6.3): to a plain TCP server every
// attempt is a secure stack and establishment fails; security_needed=False
// gives plain TCP.
func TestParitySecurityNeeded(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close() // a TLS ClientHello meets the end of stream
		}
	}()
	// nothing listens on UDP: on Linux the ICMP port unreachable refuses
	// the QUIC attempt at once (stacks/quic_icmp_linux.go); elsewhere it
	// ends by its 5 s handshake timeout, which a loaded machine stretches
	deadline := 10 * time.Second
	if runtime.GOOS != "linux" {
		deadline = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithSecurityNeeded(true)).Initiate(ctx)
	require.NoError(t, ctx.Err(), "failed by its attempts, not by the deadline")
	t.Logf("secure attempts: %v", err)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.NotEmpty(t, ee.Attempts)
	for _, a := range ee.Attempts {
		require.Contains(t, []string{"tls", "quic"}, a.Stack, "%v", err)
	}
	c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithSecurityNeeded(false)).Initiate(ctx)
	require.NoError(t, err)
	require.Equal(t, "tcp", c.GetProperties().Stack)
	got, _ := c.GetProperties().Get(SingularTransmissionMsgMaxLen)
	require.NotNil(t, got)
	c.Abort()
	requireDone(t, c)
}

// TestParityUnfulfilledHandlerOnListen: the seed's unfulfilled_handler is
// called for a Listen whose properties no stack satisfies, too.
func TestParityUnfulfilledHandlerOnListen(t *testing.T) {
	sys := newTestSystem(t)
	got := make(chan error, 1)
	_, err := NewPreconnection(WithSystem(sys),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)),
		WithTransportProperties(mustRequire(t, Multistreaming)),
		WithUnfulfilledHandler(func(err error) { got <- err })).Listen(testCtx(t))
	require.ErrorIs(t, err, ErrUnfulfilled)
	select {
	case err := <-got:
		require.ErrorIs(t, err, ErrUnfulfilled)
	default:
		t.Fatal("the unfulfilled handler was not called before Listen returned")
	}
}

// TestParitySoftErrorNotifyRequireOnAListener: a Listener requiring
// softErrorNotify listens on UDP, and the connections it receives read
// the property back as provided.
func TestParitySoftErrorNotifyRequireOnAListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors as SoftError events and UDP-Lite are Linux only")
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Require(SoftErrorNotify))
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.NoError(t, c.Send(ctx, []byte("hi"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	p := s.GetProperties()
	require.Equal(t, "udp", p.Stack)
	got, ok := p.Get(SoftErrorNotify)
	require.True(t, ok)
	require.Equal(t, true, got)
	require.True(t, p.CanSend)
	require.True(t, p.CanReceive)
}
