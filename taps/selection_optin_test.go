package taps

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// Selection Properties for features a stack uses only when asked
// (stacks.optInFeature): Avoid or Prohibit selects the stack with the
// feature off, rather than ruling it out, and the feature is then really
// off. See also TestProhibitKeepAliveSelectsStacksThatCanDoWithout.

// TestAvoidOrProhibitZeroRTTMsgSendsNoEarlyData: zeroRttMsg Avoid or
// Prohibit selects QUIC (Prohibit left no stack when QUIC was Required),
// and no 0-RTT data is sent, even for a safely replayable first Message
// with a session ticket cached (the session is resumed in 1-RTT); a QUIC
// Listener that Avoids or Prohibits it refuses a client's 0-RTT. Both
// ends' sockets say no 0-RTT was used, and zeroRttMsg reads back false
// where it was Avoided or Prohibited.
func TestAvoidOrProhibitZeroRTTMsgSendsNoEarlyData(t *testing.T) {
	for _, level := range []Preference{Prohibit, Avoid} {
		for _, side := range []string{"initiator", "listener"} {
			t.Run(side+" "+level.String(), func(t *testing.T) {
				sys := newTestSystem(t) // its own session cache
				pki := newTestPKI(t)
				stp, ctp := quicOnly(t), quicOnly(t)
				if side == "initiator" {
					require.NoError(t, ctp.Set(ZeroRTTMsg, level))
				} else {
					require.NoError(t, stp.Set(ZeroRTTMsg, level))
				}
				ln, accepted := quicEchoServer(t, sys, pki, stp)
				pre := securePre(sys, ln, pki.clientSec(), ctp)
				cl, sv, csel, ssel := zeroRTTExchange(t, pre, accepted, "first ever", true)
				require.False(t, cl.Used0RTT || sv.Used0RTT, "no ticket yet")
				cl, sv, csel, ssel = zeroRTTExchange(t, pre, accepted, "replayable, with a ticket", true)
				require.True(t, cl.Resumed, "the cached session is resumed")
				require.False(t, cl.Used0RTT, "%s %v zeroRttMsg: the client sent no 0-RTT data", side, level)
				require.False(t, sv.Used0RTT, "%s %v zeroRttMsg: the server accepted no 0-RTT data", side, level)
				if side == "initiator" {
					require.False(t, csel, "the initiator reads zeroRttMsg back as off")
				} else {
					require.False(t, ssel, "the accepted Connection reads zeroRttMsg back as off")
				}
				ln.Stop()
			})
		}
	}
}

// TestAvoidOrProhibitSoftErrorNotifySelectsUDPWithoutSoftErrors:
// softErrorNotify Avoid or Prohibit selects UDP (Prohibit left no stack
// for an unreliable datagram Connection on Linux, where UDP delivers ICMP
// errors when asked) without ICMP error delivery: an ICMP port
// unreachable for what it sends is no SoftError, the Connection goes on;
// a Listener is made too.
func TestAvoidOrProhibitSoftErrorNotifySelectsUDPWithoutSoftErrors(t *testing.T) {
	for _, level := range []Preference{Prohibit, Avoid} {
		t.Run(level.String(), func(t *testing.T) {
			sys := newTestSystem(t)
			pc := rawUDP(t)
			peer := pc.LocalAddr().(*net.UDPAddr)
			tp := datagramProps(t)
			require.NoError(t, tp.Set(SoftErrorNotify, level))
			c := udpClientTo(t, sys, pc, tp)
			softs := make(chan error, 8)
			c.OnSoftError(func(_ *Connection, err error) {
				select {
				case softs <- err:
				default:
				}
			})
			props := c.GetProperties()
			require.Equal(t, "udp", props.Stack)
			require.False(t, props.Selected[SoftErrorNotify])
			require.False(t, props.Socket.SoftErrors, "no ICMP error delivery on the socket")

			ctx := testCtx(t)
			require.NoError(t, c.Send(ctx, []byte("hi"), nil))
			_, local := readDatagramFrom(t, pc)
			require.NoError(t, pc.Close())
			for range 3 {
				require.NoError(t, c.Send(ctx, []byte("anyone?"), nil)) // ICMP port unreachable
			}
			// the reader has passed the ICMP errors once it delivers this
			pc2, err := net.ListenUDP("udp4", peer)
			require.NoError(t, err)
			defer pc2.Close()
			_, err = pc2.WriteToUDPAddrPort([]byte("back"), local)
			require.NoError(t, err)
			m, err := c.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "back", string(m.Data))
			select {
			case err := <-softs:
				t.Fatalf("%v softErrorNotify: SoftError %v", level, err)
			default:
			}
			require.Equal(t, StateEstablished, c.State())

			ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
			require.NoError(t, err, "a Listener %v softErrorNotify", level)
			ln.Stop()
		})
	}
}

// TestProhibitPerMsgReliabilitySelectsQUICWithoutDatagrams:
// perMsgReliability Prohibit selects QUIC (it left no stack when QUIC was
// Required) without datagrams, even with a peer that takes them: a
// Message sent with msgReliable false is a SendError
// (ErrPropertyNotSupported), as on TCP; a Listener Prohibiting it does not
// negotiate datagrams with a client that Prefers them (one that Requires
// them fails: TestQUICRequirePerMsgReliabilityFailsWithoutThePeersDatagrams).
func TestProhibitPerMsgReliabilitySelectsQUICWithoutDatagrams(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	stp := quicOnly(t)
	require.NoError(t, stp.Prefer(PerMsgReliability)) // the server takes datagrams (Require would refuse this client)
	ln, _ := quicEchoServer(t, sys, pki, stp)
	tp := quicOnly(t)
	require.NoError(t, tp.Prohibit(PerMsgReliability))
	ctx := testCtx(t)
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	props := c.GetProperties()
	require.Equal(t, "quic", props.Stack)
	require.False(t, props.Socket.Datagrams, "no datagrams negotiated")
	require.False(t, props.Selected[PerMsgReliability])
	err = c.Send(ctx, []byte("unreliable"), NewMessageContext().Reliable(false).Ordered(false))
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrPropertyNotSupported)
	roundTrip(t, c, "reliable")

	cl, srv := quicDatagramPair(t, sys, Prohibit)
	require.False(t, cl.GetProperties().Selected[PerMsgReliability], "the listener did not enable datagrams")
	require.False(t, srv.GetProperties().Selected[PerMsgReliability])
}

// TestRendezvousIgnoresActiveReadBeforeSend: activeReadBeforeSend is
// ignored for Rendezvous (RFC 9622 §6.2.18): Require of it, which rules UDP
// out of an Initiate (a UDP listener sees a peer only with its first
// datagram), does not rule it out of a Rendezvous, where both sides are
// active; before, the Rendezvous failed before any packet (no stack).
func TestRendezvousIgnoresActiveReadBeforeSend(t *testing.T) {
	sys, _ := newRVSystem(t)
	ctx := testCtx(t)
	tp := NewTransportProperties(UnreliableDatagram)
	require.NoError(t, tp.Require(ActiveReadBeforeSend))
	ports := freeUDPPorts(t, 2)
	a := rvUDPPre(sys, ports[0], ports[1], WithTransportProperties(tp))
	b := rvUDPPre(sys, ports[1], ports[0], WithTransportProperties(tp))
	ca, cb := rendezvousPair(t, ctx, a, b, nil)
	sameConnection(t, ca, cb, "udp")
	exchange(t, ctx, ca, cb)

	_, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(rvRemote(ports[0]))).Initiate(ctx)
	require.ErrorIs(t, err, ErrUnfulfilled, "an Initiate does not ignore it")
}

// TestRendezvousUsesItsRoleDefaults: a Rendezvous is configured with the
// Rendezvous defaults of RFC 9622 §6.2.13 (useTemporaryLocalAddress
// Avoid), not an Initiate's (Prefer), on both sides; an explicit value
// is kept. Before, Rendezvous took the Initiate role's defaults.
func TestRendezvousUsesItsRoleDefaults(t *testing.T) {
	sys, _ := newRVSystem(t)
	ctx := testCtx(t)
	explicit := NewTransportProperties(UnreliableDatagram)
	require.NoError(t, explicit.Prefer(UseTemporaryLocalAddress))
	for _, tt := range []struct {
		tp   *TransportProperties
		want Preference
	}{
		{NewTransportProperties(UnreliableDatagram), Avoid},
		{explicit, Prefer},
	} {
		ports := freeUDPPorts(t, 2)
		a := rvUDPPre(sys, ports[0], ports[1], WithTransportProperties(tt.tp))
		b := rvUDPPre(sys, ports[1], ports[0], WithTransportProperties(tt.tp))
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		for _, c := range []*Connection{ca, cb} {
			v, ok := c.GetProperties().Properties.Get(UseTemporaryLocalAddress)
			require.True(t, ok)
			require.Equal(t, tt.want, v)
			v, _ = c.GetProperties().Properties.Get(Multipath)
			require.Equal(t, MultipathDisabled, v)
		}
		exchange(t, ctx, ca, cb)
	}
}

// TestProhibitRetransmitNotifySelectsTCP: TCP and TLS report
// retransmissions (_gotaps.retransmitNotify) only when it is Preferred or
// Required, so Avoid and Prohibit select them without the reports (before,
// Prohibit left only QUIC, and no stack without security parameters:
// NoCandidates); the Connection reads it back as off.
func TestProhibitRetransmitNotifySelectsTCP(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	defer ln.Stop()
	for _, level := range []Preference{Prohibit, Avoid} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(RetransmitNotify, level))
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
		require.NoError(t, err, "%v retransmitNotify", level)
		props := c.GetProperties()
		require.Equal(t, "tcp", props.Stack)
		has, ok := props.Selected[RetransmitNotify]
		require.True(t, ok)
		require.False(t, has, "%v retransmitNotify reads back as off", level)
		c.Abort()
		<-c.Done()
	}
}
