package taps

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// The multicast tests that need no traffic: every one fails before any
// packet, which a stack that counts its Dial and Listen calls (and makes
// neither) proves. The tests with traffic are in multicast_netns_test.go.

// noTrafficStack stands for a real stack (its name and capabilities) and
// counts the Dial and Listen calls it gets, without dialling or listening.
type noTrafficStack struct {
	stacks.Stack
	calls *atomic.Int32
}

var errNoTraffic = errors.New("test: this stack sends nothing")

func (s noTrafficStack) Dial(context.Context, netip.AddrPort, stacks.Options) (stacks.Transport, error) {
	s.calls.Add(1)
	return nil, errNoTraffic
}

func (s noTrafficStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	s.calls.Add(1)
	return nil, errNoTraffic
}

// noTrafficStacks stands for every IP stack.
func noTrafficStacks() ([]stacks.Stack, *atomic.Int32) {
	calls := new(atomic.Int32)
	var out []stacks.Stack
	for _, st := range stacks.All() {
		out = append(out, noTrafficStack{Stack: st, calls: calls})
	}
	return out, calls
}

// mcastPre is a Preconnection of sys over stacks that send nothing.
func mcastPre(sys *System, tp *TransportProperties, opts ...PreconnectionOption) (*Preconnection, *atomic.Int32) {
	pre := NewPreconnection(append([]PreconnectionOption{WithSystem(sys), WithTransportProperties(tp)}, opts...)...)
	var calls *atomic.Int32
	pre.stackList, calls = noTrafficStacks()
	return pre, calls
}

// TestMulticastGroupNotMulticastFailsBeforeAnyPacket: an address that is
// not a multicast address, given as a group, is an EndpointError wrapping
// ErrNotMulticast, before any stack is asked for anything.
func TestMulticastGroupNotMulticastFailsBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	for _, addr := range []string{"127.0.0.1", "::1", "192.0.2.7"} {
		pre, calls := mcastPre(sys, datagramProps(t),
			WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP(addr).WithPort(5350)))
		_, err := pre.Initiate(testCtx(t))
		var ep *EndpointError
		require.ErrorAs(t, err, &ep, addr)
		require.ErrorIs(t, err, ErrNotMulticast, addr)
		require.ErrorIs(t, err, ErrInvalidEndpoint, addr)
		require.Zero(t, calls.Load(), "%s: no stack was asked to dial", addr)

		pre, calls = mcastPre(sys, datagramProps(t),
			WithLocalEndpoint(NewLocalEndpoint().WithAnySourceMulticastGroupIP(addr).WithPort(5350)))
		_, err = pre.Listen(testCtx(t))
		require.ErrorIs(t, err, ErrNotMulticast, addr)
		require.Zero(t, calls.Load(), "%s: no stack was asked to listen", addr)
	}
}

// TestMulticastNeedsDatagramStack: a multicast group with properties or
// protocol names that leave neither UDP nor UDP-Lite (the default reliable
// stream profile, a secure one, WithProtocols("tcp")) fails with an
// EstablishmentError wrapping ErrMulticastNeedsDatagrams and
// ErrUnfulfilled (the unfulfilled handler is called), before any packet:
// TCP is never tried.
func TestMulticastNeedsDatagramStack(t *testing.T) {
	sys := newTestSystem(t)
	group := NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350)
	local := NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(5350)
	cases := []struct {
		name string
		tp   *TransportProperties
		opts []PreconnectionOption
	}{
		{"reliable-inorder-stream", NewTransportProperties(ReliableInorderStream), nil},
		{"reliable-message", NewTransportProperties(ReliableMessage), nil},
		{"tcp by name", datagramProps(t), []PreconnectionOption{WithProtocols("tcp")}},
		{"security", datagramProps(t), []PreconnectionOption{WithSecurityNeeded(true)}},
	}
	for _, tc := range cases {
		for _, listen := range []bool{false, true} {
			if listen && tc.name == "security" {
				continue // a secure Listener needs an identity first
			}
			var unfulfilled error
			opts := append([]PreconnectionOption{WithUnfulfilledHandler(func(err error) { unfulfilled = err })}, tc.opts...)
			var err error
			var calls *atomic.Int32
			if listen {
				var pre *Preconnection
				pre, calls = mcastPre(sys, tc.tp, append(opts, WithLocalEndpoint(local))...)
				_, err = pre.Listen(testCtx(t))
			} else {
				var pre *Preconnection
				pre, calls = mcastPre(sys, tc.tp, append(opts, WithRemoteEndpoint(group))...)
				_, err = pre.Initiate(testCtx(t))
			}
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee, "%s listen=%v", tc.name, listen)
			require.Equal(t, ReasonNoCandidates, ee.Reason, "%s listen=%v: %v", tc.name, listen, err)
			require.ErrorIs(t, err, ErrMulticastNeedsDatagrams, "%s listen=%v", tc.name, listen)
			require.ErrorIs(t, err, ErrUnfulfilled, "%s listen=%v", tc.name, listen)
			require.Empty(t, ee.Attempts)
			require.Zero(t, calls.Load(), "%s listen=%v: no stack was asked for anything", tc.name, listen)
			require.ErrorIs(t, unfulfilled, ErrMulticastNeedsDatagrams, "%s listen=%v: the unfulfilled handler", tc.name, listen)
		}
	}
}

// TestMulticastEndpointRules: RFC 9622 §6.1 allows one identifier of each
// type on an endpoint; a multicast group is one type (any-source and
// source-specific alike), the hop limit another. Misuses fail with an
// EndpointError before any packet; the same identifier given twice does
// not.
func TestMulticastEndpointRules(t *testing.T) {
	sys := newTestSystem(t)
	bad := []struct {
		name   string
		remote *RemoteEndpoint
		local  *LocalEndpoint
		listen bool
		want   string
	}{
		{name: "two remote groups", remote: NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithMulticastGroupIP("239.1.2.4").WithPort(1),
			want: "two multicast group identifiers"},
		{name: "two hop limits", remote: NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithHopLimit(2).WithHopLimit(3).WithPort(1),
			want: "two hop limits"},
		{name: "any-source then source-specific", local: NewLocalEndpoint().WithAnySourceMulticastGroupIP("232.1.2.3").
			WithSingleSourceMulticastGroupIP("232.1.2.3", "192.0.2.1").WithPort(1), listen: true, want: "two multicast group identifiers"},
		{name: "two sources", local: NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "192.0.2.1").
			WithSingleSourceMulticastGroupIP("232.1.2.3", "192.0.2.2").WithPort(1), listen: true, want: "two multicast group identifiers"},
		{name: "no source", local: NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "").WithPort(1), listen: true,
			want: "without a source"},
		{name: "source of the other family", local: NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "2001:db8::1").WithPort(1),
			listen: true, want: "same family"},
		{name: "multicast source", local: NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "239.0.0.1").WithPort(1),
			listen: true, want: "not a unicast address"},
		{name: "group and IP address", remote: NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithIPAddress("127.0.0.1").WithPort(1),
			want: "a multicast group with a host name"},
		{name: "group and host name", local: NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithHostName("localhost").WithPort(1),
			listen: true, want: "a multicast group with a host name"},
		{name: "hop limit without a group", remote: NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithHopLimit(4).WithPort(1),
			want: "hop limit without a multicast group"},
		{name: "multicast address as an IP address", remote: NewRemoteEndpoint().WithIPAddress("239.1.2.3").WithPort(1),
			want: "WithMulticastGroupIP"},
		{name: "no port to listen on", local: NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3"), listen: true,
			want: "needs a port"},
		{name: "local group to Initiate", remote: NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(1),
			local: NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(1), want: "is for Listen"},
		{name: "remote group to Listen", remote: NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(1),
			local: NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(1), listen: true, want: "is for Initiate"},
	}
	for _, tc := range bad {
		var opts []PreconnectionOption
		if tc.remote != nil {
			opts = append(opts, WithRemoteEndpoint(tc.remote))
		}
		if tc.local != nil {
			opts = append(opts, WithLocalEndpoint(tc.local))
		}
		pre, calls := mcastPre(sys, datagramProps(t), opts...)
		var err error
		if tc.listen {
			_, err = pre.Listen(testCtx(t))
		} else {
			_, err = pre.Initiate(testCtx(t))
		}
		var ep *EndpointError
		require.ErrorAs(t, err, &ep, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.Zero(t, calls.Load(), tc.name)
	}

	// the same identifier twice is one identifier; a group among
	// unicast remotes is refused
	r := NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithMulticastGroupIP("239.1.2.3").WithHopLimit(3).WithHopLimit(3).WithPort(1)
	m, err := r.e.toMessage(true, true)
	require.NoError(t, err)
	require.True(t, m.Multicast)
	require.Equal(t, "239.1.2.3", m.IpAddress)
	require.Equal(t, uint32(3), m.GetHopLimit())
	l := NewLocalEndpoint().WithSingleSourceMulticastGroupIP("ff3e::8000:1%lo", "::1").WithPort(1)
	m, err = l.e.toMessage(false, false)
	require.NoError(t, err)
	require.Equal(t, "ff3e::8000:1", m.IpAddress)
	require.Equal(t, "lo", m.Interface, "a zone names the interface")
	require.Equal(t, "::1", m.MulticastSource)
	pre, calls := mcastPre(sys, datagramProps(t), WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(1),
		NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(1)))
	_, err = pre.Initiate(testCtx(t))
	require.ErrorContains(t, err, "among unicast remote endpoints")
	require.Zero(t, calls.Load())
	pre, calls = mcastPre(sys, datagramProps(t), WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(1),
		NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.4").WithHopLimit(2).WithPort(1)))
	_, err = pre.Initiate(testCtx(t))
	require.ErrorContains(t, err, "different hop limits")
	require.Zero(t, calls.Load())
}

// TestMulticastDirectionConflict: a multicast sender only sends and a
// multicast Listener's connections only receive; a direction property
// that says otherwise is refused before any packet.
func TestMulticastDirectionConflict(t *testing.T) {
	sys := newTestSystem(t)
	for _, listen := range []bool{false, true} {
		tp := datagramProps(t)
		dir := UnidirectionalReceive
		opt := WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(1))
		if listen {
			dir = UnidirectionalSend
			opt = WithLocalEndpoint(NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(1))
		}
		require.NoError(t, tp.Set(Direction, dir))
		pre, calls := mcastPre(sys, tp, opt)
		var err error
		if listen {
			_, err = pre.Listen(testCtx(t))
		} else {
			_, err = pre.Initiate(testCtx(t))
		}
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason)
		require.ErrorIs(t, err, ErrConflictingProperties)
		require.Zero(t, calls.Load())
	}
}

// TestMulticastRendezvousFails: Rendezvous with a source-specific group on
// its local endpoint is an EstablishmentError (RFC 9622 §6.1.1); with an
// any-source group it is one too, saying why (the Connection and Listener
// the RFC returns do not fit Rendezvous's one Connection); nothing is
// sent.
func TestMulticastRendezvousFails(t *testing.T) {
	sys := newTestSystem(t)
	cases := []struct {
		name   string
		local  *LocalEndpoint
		remote *RemoteEndpoint
		want   string
	}{
		{"source-specific local", NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "192.0.2.1").WithPort(5350),
			NewRemoteEndpoint().WithMulticastGroupIP("232.1.2.3").WithPort(5350), "source-specific"},
		{"any-source group", NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(5350),
			NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350).WithHopLimit(8), "use RendezvousMulticast"},
		{"remote group, unicast local", NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0),
			NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350), "use RendezvousMulticast"},
	}
	for _, tc := range cases {
		pre, calls := mcastPre(sys, datagramProps(t), WithLocalEndpoint(tc.local), WithRemoteEndpoint(tc.remote))
		c, err := pre.Rendezvous(testCtx(t))
		require.Nil(t, c)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee, tc.name)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason, tc.name)
		require.ErrorIs(t, err, ErrMulticastRendezvous, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.Zero(t, calls.Load(), tc.name)
	}
}

// TestMulticastNotAddedToConnection: a multicast group given to a
// Connection's AddRemote or AddLocal is an EndpointError (it would make a
// unicast connection's next dial a multicast one).
func TestMulticastNotAddedToConnection(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	err = c.AddRemote(testCtx(t), NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350))
	var ep *EndpointError
	require.ErrorAs(t, err, &ep)
	require.ErrorContains(t, err, "cannot be added to a Connection")
	err = c.AddLocal(testCtx(t), NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(5350))
	require.ErrorAs(t, err, &ep)
	require.ErrorContains(t, err, "cannot be added to a Connection")
}

// TestRendezvousMulticastEndpointRules: RendezvousMulticast fails before
// any packet, with an EstablishmentError (ReasonInvalidConfiguration)
// wrapping ErrMulticastRendezvous, without a remote group, with a unicast
// remote among its remotes, and with a group on a local endpoint
// (source-specific: RFC 9622 §6.1.1's EstablishmentError; any-source: the
// group belongs on the remote endpoint); a reliable profile fails as
// Initiate to a group does (ErrMulticastNeedsDatagrams).
func TestRendezvousMulticastEndpointRules(t *testing.T) {
	sys := newTestSystem(t)
	group := func() *RemoteEndpoint { return NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350) }
	cases := []struct {
		name string
		opts []PreconnectionOption
		want string
	}{
		{"no remote", []PreconnectionOption{WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))}, "needs a remote endpoint"},
		{"unicast remote", []PreconnectionOption{WithRemoteEndpoint(group()),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(5350))}, "not a multicast group: use Rendezvous"},
		{"source-specific local", []PreconnectionOption{WithRemoteEndpoint(group()),
			WithLocalEndpoint(NewLocalEndpoint().WithSingleSourceMulticastGroupIP("232.1.2.3", "192.0.2.1").WithPort(5350))}, "source-specific"},
		{"any-source local", []PreconnectionOption{WithRemoteEndpoint(group()),
			WithLocalEndpoint(NewLocalEndpoint().WithAnySourceMulticastGroupIP("239.1.2.3").WithPort(5350))}, "name the group on the remote endpoint"},
	}
	for _, tc := range cases {
		pre, calls := mcastPre(sys, datagramProps(t), tc.opts...)
		c, ln, err := pre.RendezvousMulticast(testCtx(t))
		require.Nil(t, c, tc.name)
		require.Nil(t, ln, tc.name)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee, tc.name)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason, tc.name)
		require.ErrorIs(t, err, ErrMulticastRendezvous, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
		require.Zero(t, calls.Load(), tc.name)
	}
	pre, calls := mcastPre(sys, NewTransportProperties(ReliableInorderStream), WithRemoteEndpoint(group()))
	_, _, err := pre.RendezvousMulticast(testCtx(t))
	require.ErrorIs(t, err, ErrMulticastNeedsDatagrams)
	require.Zero(t, calls.Load())
}
