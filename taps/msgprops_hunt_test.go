package taps

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Bug hunt on per-Message send properties (RFC 9622 §9.1.3) against real
// loopback sockets.

// TestMsgPropsInvalidValuesFailBeforeSending: an invalid Message Property
// value fails Send, SendPartial and SendAsync with a *SendError
// (ReasonInvalidMessageProperties) wrapping the *PropertyError, and nothing
// of the message reaches the peer.
func TestMsgPropsInvalidValuesFailBeforeSending(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	defer c.Abort()
	ctx := testCtx(t)
	bogus := NewMessageContext()
	require.Error(t, bogus.Set(MsgLifetime, "soon"))
	for i, mc := range []*MessageContext{
		NewMessageContext().Priority(-1),
		NewMessageContext().Lifetime(0),
		NewMessageContext().Lifetime(-time.Second),
		NewMessageContext().ChecksumLen(-2),
		NewMessageContext().CapacityProfile(CapacityProfile(200)),
		NewMessageContext().Priority(3).Lifetime(-1).Priority(4), // still invalid: lifetime
	} {
		check := func(how string, err error) {
			var se *SendError
			require.ErrorAs(t, err, &se, "#%d %s", i, how)
			require.Equal(t, ReasonInvalidMessageProperties, se.Reason, "#%d %s", i, how)
			var pe *PropertyError
			require.ErrorAs(t, err, &pe, "#%d %s", i, how)
		}
		check("Send", c.Send(ctx, []byte("bad"), mc))
		check("SendPartial", c.SendPartial(ctx, []byte("bad"), mc, false))
		got := make(chan error, 1)
		c.SendAsync([]byte("bad"), mc, func(_ *Connection, err error) { got <- err })
		check("SendAsync", <-got)
	}
	require.NoError(t, c.Send(ctx, []byte("good"), nil))
	m, err := readFrame(peer)
	require.NoError(t, err)
	require.Equal(t, "good", m, "nothing of the invalid messages was sent")
}

// TestMsgPropsUnsupportedIsInvalidMessageProperties: a property the
// selected stack cannot honour is a SendError with reason
// InvalidMessageProperties (RFC 9622 §9.1.3: inconsistent with the
// Connection), on TCP and on UDP (a message not safely replayable).
func TestMsgPropsUnsupportedIsInvalidMessageProperties(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	defer c.Abort()
	ctx := testCtx(t)
	for i, mc := range []*MessageContext{
		NewMessageContext().NoSegmentation(true),
		NewMessageContext().Reliable(false),
		NewMessageContext().CapacityProfile(LowLatencyInteractive),
	} {
		var se *SendError
		err := c.Send(ctx, []byte("x"), mc)
		require.ErrorAs(t, err, &se, "#%d", i)
		require.ErrorIs(t, err, ErrPropertyNotSupported, "#%d", i)
		require.Equal(t, ReasonInvalidMessageProperties, se.Reason, "#%d: %v", i, err)
	}
	pc := rawUDP(t)
	u := udpClientTo(t, sys, pc, NewTransportProperties(UnreliableDatagram))
	err := u.Send(ctx, []byte("x"), NewMessageContext().SafelyReplayable(false))
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrNotReplayable)
	require.Equal(t, ReasonInvalidMessageProperties, se.Reason, "%v", err)
}

// tosPeer is a plain UDP socket that reports each datagram's TOS byte
// (IP_RECVTOS / IPV6_RECVTCLASS), through the UDP stack's listener.
func tosPeer(t *testing.T, ip string) (stacks.Listener, netip.AddrPort) {
	t.Helper()
	sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.AddrPortFrom(netip.MustParseAddr(ip), 0)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sln.Close() })
	return sln, sln.Addr().(*net.UDPAddr).AddrPort()
}

// readTOS reads n datagrams from the peer accepted on sln and returns
// their payloads and DSCPs.
func readTOS(t *testing.T, sln stacks.Listener, n int) (data []string, dscp []uint8) {
	t.Helper()
	peer, err := sln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(3*time.Second)))
	buf := make([]byte, 70000)
	for i := range n {
		k, tos, err := peer.(stacks.TOSDatagrams).ReadMsg(buf)
		require.NoError(t, err, "datagram %d, after %q", i, data)
		data = append(data, string(buf[:k]))
		dscp = append(dscp, stacks.DSCPOf(tos))
	}
	return data, dscp
}

// TestMsgPropsBatchedDatagramsByPriorityWithOwnDSCP: the messages of one
// Batch on UDP leave by msgPriority (lower first, final last), each with
// the DSCP of its own msgCapacityProfile, as the receiving socket reads
// with IP_RECVTOS; on IPv4 and IPv6.
func TestMsgPropsBatchedDatagramsByPriorityWithOwnDSCP(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			sys := newTestSystem(t)
			sln, ap := tosPeer(t, ip)
			c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
				WithRemoteEndpoint(loopbackRemote(ap))).Initiate(testCtx(t))
			require.NoError(t, err)
			defer c.Abort()
			var wg sync.WaitGroup
			send := func(data string, mc *MessageContext) {
				wg.Add(1)
				c.SendAsync([]byte(data), mc, func(_ *Connection, err error) {
					if err != nil {
						t.Errorf("%s: %v", data, err)
					}
					wg.Done()
				})
			}
			c.Batch(func() {
				send("low", NewMessageContext().Priority(200).CapacityProfile(Scavenger))
				send("high", NewMessageContext().Priority(1).CapacityProfile(LowLatencyInteractive))
				send("mid", nil)
				send("last", NewMessageContext().Final(true).Priority(0))
			})
			wg.Wait()
			data, dscp := readTOS(t, sln, 4)
			require.Equal(t, []string{"high", "mid", "low", "last"}, data)
			require.Equal(t, []uint8{46, 0, 1, 0}, dscp)
		})
	}
}

// TestMsgPropsCloseInsideBatchSendsTheBatch: Close called inside Batch
// after SendAsync calls closes after those messages are sent (they were
// sent before the Close): each gets Sent, the peer reads them all.
func TestMsgPropsCloseInsideBatchSendsTheBatch(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	events := make(chan error, 3)
	c.Batch(func() {
		for _, s := range []string{"a", "b", "c"} {
			c.SendAsync([]byte(s), nil, func(_ *Connection, err error) { events <- err })
		}
		require.NoError(t, c.Close())
	})
	for range 3 {
		require.NoError(t, <-events)
	}
	for _, want := range []string{"a", "b", "c"} {
		m, err := readFrame(peer)
		require.NoError(t, err)
		require.Equal(t, want, m)
	}
	_ = peer.Close()
	<-c.Done()
}

// TestMsgPropsLifetimeExpiresWhileQueued: a message whose msgLifetime
// passes while it waits behind a write that does not complete (a peer that
// does not read) gets its Expired event when the lifetime passes, not only
// once the queue moves again; the message being written is not expired
// (it was handed to the socket), and the expired one never reaches the
// peer.
func TestMsgPropsLifetimeExpiresWhileQueued(t *testing.T) {
	sys := newTestSystem(t)
	ln, r := rawListener(t)
	st := &countingStack{Stack: stacks.TCP(), hold: make(chan struct{}), holding: make(chan struct{})}
	c := initiateWith(t, sys, st, r, framers.NewLengthPrefix())
	defer c.Abort()
	release := sync.OnceFunc(func() { close(st.hold) })
	defer release() // before the Abort: the held write blocks it
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	// "first" has the lifetime of "short", sent later: by the time "short"
	// expires, "first" is past its lifetime too, while it is being
	// written. (A lifetime of 1 ms could pass before the connection took
	// "first" when the machine was busy: it expired unwritten, and the
	// test waited for its write for ever; CI, under go test ./...)
	first := make(chan error, 1)
	c.SendAsync([]byte("first"), NewMessageContext().Lifetime(50*time.Millisecond), func(_ *Connection, err error) { first <- err })
	select {
	case <-st.holding: // "first" is being written: it is past expiring
	case err := <-first:
		t.Fatalf("\"first\" ended before its write started (the machine is too busy for its 50 ms lifetime): %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("\"first\" was never written")
	}
	short := make(chan error, 1)
	c.SendAsync([]byte("short"), NewMessageContext().Lifetime(50*time.Millisecond), func(_ *Connection, err error) { short <- err })
	kept := make(chan error, 1)
	c.SendAsync([]byte("kept"), nil, func(_ *Connection, err error) { kept <- err })
	select {
	case err := <-short:
		require.ErrorIs(t, err, ErrExpired)
		var se *SendError
		require.ErrorAs(t, err, &se)
	case <-time.After(5 * time.Second):
		t.Fatal("no Expired event while the message waited past its lifetime")
	}
	release()
	require.NoError(t, <-first, "a message handed to the socket is not expired")
	require.NoError(t, <-kept)
	for _, want := range []string{"first", "kept"} {
		m, err := readFrame(peer)
		require.NoError(t, err)
		require.Equal(t, want, m)
	}
}

// TestMsgPropsZeroRTTKeepsOrderAndFinalLast: while the server's side of a
// resumed QUIC session is still in 0-RTT (its handshake held back), a
// message not safely replayable and a safely replayable Final message sent
// after it go in that order (msgOrdered, and Final sorts after everything
// sent before it): both are Sent, the peer reads them in order. (The
// initiating side never meets this: its InitiateWithSend returns once the
// handshake has completed; what it holds back until then is tested in
// actors, TestNonReplayableWaitsForTheHandshake.)
func TestMsgPropsZeroRTTKeepsOrderAndFinalLast(t *testing.T) {
	skip0RTTUnderRace(t)
	sys := newTestSystem(t)
	ctx := testCtx(t)
	h := newHeldZeroRTT(t, sys, "zero-rtt")
	plain, final := make(chan error, 1), make(chan error, 1)
	h.s.SendAsync([]byte("plain"), nil, func(_ *Connection, err error) { plain <- err })
	h.s.SendAsync([]byte("final"), NewMessageContext().SafelyReplayable(true).Final(true), func(_ *Connection, err error) { final <- err })
	c := h.release()
	require.NoError(t, <-plain, "sent before the Final message")
	require.NoError(t, <-final)
	roundTripAfter(t, c, "plain")
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "final", string(m.Data))
}

// TestMsgPropsFinalStaysLastWhateverThePriority: a Final Message goes out
// after every Message sent before it, also after one with msgOrdered false
// whose msgPriority is as large as an int64 may be (a Final ranked 2^62,
// so a larger priority moved the other Message behind it, after the
// Message meant to be the last), and the peer's end of stream follows it.
func TestMsgPropsFinalStaysLastWhateverThePriority(t *testing.T) {
	for _, prio := range []int{1<<62 + 1, math.MaxInt64} {
		for _, finalOrdered := range []bool{true, false} {
			t.Run(fmt.Sprintf("priority %d, final ordered %v", prio, finalOrdered), func(t *testing.T) {
				sys := newTestSystem(t)
				c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
				defer c.Abort()
				done := make(chan error, 2)
				sent := func(_ *Connection, err error) { done <- err }
				c.Batch(func() { // one batch: the queue orders them
					c.SendAsync([]byte("before"), NewMessageContext().Ordered(false).Priority(prio), sent)
					c.SendAsync([]byte("final"), NewMessageContext().Final(true).Ordered(finalOrdered), sent)
				})
				require.NoError(t, <-done)
				require.NoError(t, <-done)
				require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
				got, err := io.ReadAll(peer)
				require.NoError(t, err, "the end of stream after the Final Message")
				require.Equal(t, frame("before", "final"), got)
			})
		}
	}
}
