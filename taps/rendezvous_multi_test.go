package taps

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Rendezvous over several local endpoints: every local address is paired
// with every remote address of its family (RFC 9622 §7.3).

func rvLocalAt(ip string, port uint16) *LocalEndpoint {
	return NewLocalEndpoint().WithIPAddress(ip).WithPort(port)
}

func rvRemoteAt(ip string, port uint16) *RemoteEndpoint {
	return NewRemoteEndpoint().WithIPAddress(ip).WithPort(port)
}

// requireLocal checks c's local address.
func requireLocal(t *testing.T, c *Connection, want netip.AddrPort) {
	t.Helper()
	la, ok := c.GetProperties().Local.Addr()
	require.True(t, ok)
	require.Equal(t, want, netip.AddrPortFrom(la.Addr().Unmap(), la.Port()))
}

// TestRendezvousUDPSecondLocalEndpoint: a's first local endpoint cannot
// reach b (an IPv6 address with IPv4 remotes: no pair; or an address b's
// remote set does not include: b ignores its checks); the rendezvous
// succeeds over the second pair, and a's connection uses the second local
// endpoint.
func TestRendezvousUDPSecondLocalEndpoint(t *testing.T) {
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	for _, first := range []string{"::1", "127.0.0.2"} {
		t.Run(first, func(t *testing.T) {
			ports := freeUDPPorts(t, 2)
			a := NewPreconnection(WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
				WithLocalEndpoint(rvLocalAt(first, ports[0]), rvLocal(ports[0])), WithRemoteEndpoint(rvRemote(ports[1])))
			b := rvUDPPre(sys, ports[1], ports[0])
			ca, cb := rendezvousPair(t, ctx, a, b, nil)
			sameConnection(t, ca, cb, "udp")
			requireLocal(t, ca, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]))
			require.Equal(t, "checked", ev.how(ca))
			exchange(t, ctx, ca, cb)
			exchange(t, ctx, cb, ca)
		})
	}
}

// TestRendezvousUDPNominationAgrees: two local endpoints on each side, each
// side's remotes the other's locals: all four pairs work, and both sides
// must select the same one (ICE nomination), however the checks race.
func TestRendezvousUDPNominationAgrees(t *testing.T) {
	sys, ev := newRVSystem(t)
	ctx := testCtx(t)
	for range 8 {
		ports := freeUDPPorts(t, 2)
		a := NewPreconnection(WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
			WithLocalEndpoint(rvLocalAt("127.0.0.1", ports[0]), rvLocalAt("127.0.0.2", ports[0])),
			WithRemoteEndpoint(rvRemoteAt("127.0.0.3", ports[1]), rvRemoteAt("127.0.0.4", ports[1])))
		b := NewPreconnection(WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
			WithLocalEndpoint(rvLocalAt("127.0.0.3", ports[1]), rvLocalAt("127.0.0.4", ports[1])),
			WithRemoteEndpoint(rvRemoteAt("127.0.0.1", ports[0]), rvRemoteAt("127.0.0.2", ports[0])))
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		sameConnection(t, ca, cb, "udp")
		exchange(t, ctx, ca, cb)
		exchange(t, ctx, cb, ca)
	}
	// one side nominated each time, and the other took the nomination
	require.Len(t, ev.await(t, ctx, 8, "NominationSucceeded", event("NominationSucceeded")), 8)
	require.Len(t, ev.await(t, ctx, 8, "NominationReceived", event("NominationReceived")), 8)
}

// TestRendezvousUDPAttemptsNamePairs: without a peer, the establishment
// timeout lists one unanswered check per pair, named local->remote; every
// socket is closed.
func TestRendezvousUDPAttemptsNamePairs(t *testing.T) {
	sys, _ := newRVSystem(t)
	ports := freeUDPPorts(t, 2)
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
		WithLocalEndpoint(rvLocalAt("127.0.0.2", ports[0]), rvLocal(ports[0]), rvLocalAt("::1", ports[0])),
		WithRemoteEndpoint(rvRemote(ports[1])), WithEstablishmentTimeout(200*time.Millisecond))
	_, err := pre.Rendezvous(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrEstablishmentTimeout)
	var names []string
	for _, a := range ee.Attempts {
		require.Equal(t, "udp", a.Stack)
		require.ErrorIs(t, a.Err, stacks.ErrSTUNTimeout)
		names = append(names, a.Endpoint)
	}
	remote := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[1]).String()
	require.Equal(t, []string{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ports[0]).String() + "->" + remote,
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]).String() + "->" + remote,
	}, names, "the IPv6 local endpoint has no pair")
	require.True(t, strings.Contains(err.Error(), names[0]), "%v", err)
	localUDPPortFree(t, ports[0])
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(ports[0])})
	require.NoError(t, err, "the first local endpoint's socket is still open")
	require.NoError(t, c.Close())
}

// TestRendezvousTCPSecondLocalEndpoint: a's first local endpoint (IPv6)
// has no pair with b's IPv4 address; the rendezvous runs over the second,
// whose address a's connection has.
func TestRendezvousTCPSecondLocalEndpoint(t *testing.T) {
	sys, _ := newRendezvousSystem(t)
	ctx := testCtx(t)
	for range 3 {
		ports := freeTCPPorts(t, 2)
		a := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocalAt("::1", ports[0]), rvLocal(ports[0])),
			WithRemoteEndpoint(rvRemote(ports[1])))
		b := NewPreconnection(WithSystem(sys), WithLocalEndpoint(rvLocal(ports[1])), WithRemoteEndpoint(rvRemote(ports[0])))
		a.AddFramer(framers.NewLengthPrefix())
		b.AddFramer(framers.NewLengthPrefix())
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		sameConnection(t, ca, cb, "tcp")
		requireLocal(t, ca, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0]))
		exchange(t, ctx, ca, cb)
	}
}

// TestRendezvousQUICSecondLocalEndpoint: as over TCP, a's first local
// endpoint (IPv6) has no pair with b's IPv4 address; the rendezvous runs
// from the second, whose address a's connection has.
func TestRendezvousQUICSecondLocalEndpoint(t *testing.T) {
	pki := newPeerPKI(t)
	sys, _ := newRVSystem(t)
	ctx := testCtx(t)
	ports := freeUDPPorts(t, 2)
	lo, hi := min(ports[0], ports[1]), max(ports[0], ports[1])
	// first: an IPv6 address, without pair; second: 127.0.0.1
	client := NewPreconnection(WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(rvQUICSec(pki)),
		WithLocalEndpoint(rvLocalAt("::1", lo), rvLocal(lo)), WithRemoteEndpoint(rvRemote(hi)))
	client.AddFramer(framers.NewLengthPrefix())
	server := rvQUICPre(sys, pki, hi, lo)
	cc, cs := quicRendezvousPair(t, ctx, client, server, nil)
	sameConnection(t, cc, cs, "quic")
	requireLocal(t, cc, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lo))
}

// TestRendezvousTCPMultiPairAgrees: two local endpoints on each side, each
// side's remotes the other's locals: all four pairs could connect, and
// both sides must end with the two ends of one connection. It failed in
// every run when TCP used every local candidate (each side kept the first
// connection it saw, and they differed); TCP now uses one local candidate
// per side, the first that binds.
func TestRendezvousTCPMultiPairAgrees(t *testing.T) {
	sys, _ := newRendezvousSystem(t)
	ctx := testCtx(t)
	for range 8 {
		ports := freeTCPPorts(t, 2)
		a := NewPreconnection(WithSystem(sys),
			WithLocalEndpoint(rvLocalAt("127.0.0.1", ports[0]), rvLocalAt("127.0.0.2", ports[0])),
			WithRemoteEndpoint(rvRemoteAt("127.0.0.3", ports[1]), rvRemoteAt("127.0.0.4", ports[1])))
		b := NewPreconnection(WithSystem(sys),
			WithLocalEndpoint(rvLocalAt("127.0.0.3", ports[1]), rvLocalAt("127.0.0.4", ports[1])),
			WithRemoteEndpoint(rvRemoteAt("127.0.0.1", ports[0]), rvRemoteAt("127.0.0.2", ports[0])))
		ca, cb := rendezvousPair(t, ctx, a, b, nil)
		sameConnection(t, ca, cb, "tcp")
		exchange(t, ctx, ca, cb)
	}
}
