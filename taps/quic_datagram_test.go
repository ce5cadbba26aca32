package taps

import (
	"sort"
	"sync"
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// datagramTrace counts the QUIC datagrams the System's connections sent
// and received (trace Kind "datagram").
type datagramTrace struct {
	mu             sync.Mutex
	sent, received int
}

func (d *datagramTrace) option() SystemOption {
	return WithTracer(func(r *TraceRecord) {
		if r.Kind != "datagram" {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		switch r.Event {
		case "Sent":
			d.sent++
		case "Received":
			d.received++
		}
	})
}

func (d *datagramTrace) counts() (int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent, d.received
}

// quicDatagramPair listens on QUIC (Multistreaming) with serverPMR as the
// listener's perMsgReliability preference and returns a client
// connection and the server's. The client Requires perMsgReliability
// when the listener enables datagrams (serverPMR Prefer or Require), and
// Prefers it otherwise (a Require would fail the attempt: see
// TestQUICRequirePerMsgReliabilityFailsWithoutThePeersDatagrams).
func quicDatagramPair(t *testing.T, sys *System, serverPMR Preference) (*Connection, *Connection) {
	t.Helper()
	pki := newTestPKI(t)
	stp := NewTransportProperties()
	require.NoError(t, stp.Require(Multistreaming))
	require.NoError(t, stp.Set(PerMsgReliability, serverPMR))
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(stp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	ctp := NewTransportProperties()
	require.NoError(t, ctp.Require(Multistreaming))
	clientPMR := Prefer
	if serverPMR == Prefer || serverPMR == Require {
		clientPMR = Require
	}
	require.NoError(t, ctp.Set(PerMsgReliability, clientPMR))
	c, err := securePre(sys, ln, pki.clientSec(), ctp).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	// QUIC: the server sees the stream once data arrive
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { s.Abort(); <-s.Done() })
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	return c, s
}

func receiveAll(t *testing.T, c *Connection, n int) []string {
	t.Helper()
	var got []string
	for range n {
		m, err := c.Receive(testCtx(t))
		require.NoError(t, err)
		got = append(got, string(m.Data))
	}
	sort.Strings(got)
	return got
}

// TestQUICUnreliableMessagesAsDatagrams: with perMsgReliability on both
// ends, a message with msgReliable=false and msgOrdered=false leaves as a
// QUIC datagram and arrives as a message of the connection; reliable
// messages, an unreliable but ordered one and one too large for a datagram
// go on the stream.
func TestQUICUnreliableMessagesAsDatagrams(t *testing.T) {
	dt := &datagramTrace{}
	sys := newTestSystem(t, dt.option())
	c, s := quicDatagramPair(t, sys, Require)
	ctx := testCtx(t)
	unreliable := func() *MessageContext { return NewMessageContext().Reliable(false).Ordered(false) }
	big := string(make([]byte, 4000))
	require.NoError(t, c.Send(ctx, []byte("reliable 1"), nil))
	require.NoError(t, c.Send(ctx, []byte("datagram"), unreliable()))
	require.NoError(t, c.Send(ctx, []byte("unreliable but ordered"), NewMessageContext().Reliable(false)))
	require.NoError(t, c.Send(ctx, []byte("reliable but unordered"), NewMessageContext().Ordered(false)))
	require.NoError(t, c.Send(ctx, []byte(big), unreliable()))
	require.NoError(t, c.Send(ctx, []byte("reliable 2"), nil))
	got := receiveAll(t, s, 6)
	want := []string{"reliable 1", "datagram", "unreliable but ordered", "reliable but unordered", big, "reliable 2"}
	sort.Strings(want)
	require.Equal(t, want, got)
	sent, received := dt.counts()
	require.Equal(t, 1, sent, "only the small unreliable unordered message is a datagram")
	require.Equal(t, 1, received)
	// and the other way
	require.NoError(t, s.Send(ctx, []byte("back"), unreliable()))
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "back", string(m.Data))
	sent, received = dt.counts()
	require.Equal(t, 2, sent)
	require.Equal(t, 2, received)
}

// TestQUICDatagramsPeerWithout: a peer that did not enable datagrams
// (perMsgReliability NoPreference, Ignore in RFC 9622), with this side
// Preferring them: unreliable messages go on the stream.
func TestQUICDatagramsPeerWithout(t *testing.T) {
	dt := &datagramTrace{}
	sys := newTestSystem(t, dt.option())
	c, s := quicDatagramPair(t, sys, NoPreference)
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("unreliable"), NewMessageContext().Reliable(false).Ordered(false)))
	require.NoError(t, c.Send(ctx, []byte("reliable"), nil))
	require.Equal(t, []string{"reliable", "unreliable"}, receiveAll(t, s, 2))
	sent, received := dt.counts()
	require.Zero(t, sent)
	require.Zero(t, received)
}

// TestPerMsgReliabilityRequireWithoutQUIC: no stack but QUIC offers
// perMsgReliability among reliable ones: without multistreaming the
// selection fails cleanly.
func TestPerMsgReliabilityRequireWithoutQUIC(t *testing.T) {
	sys := newTestSystem(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(PerMsgReliability))
	require.NoError(t, tp.Require(Reliability))
	require.NoError(t, tp.Prohibit(Multistreaming))
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(9)))
	_, err := pre.Initiate(testCtx(t))
	require.ErrorIs(t, err, ErrUnfulfilled)
}
