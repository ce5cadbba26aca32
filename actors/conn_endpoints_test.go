package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
	"github.com/stretchr/testify/require"
)

func TestSameEndpoint(t *testing.T) {
	ep := func(host, ip string, port uint32) *messages.Endpoint {
		return &messages.Endpoint{HostName: host, IpAddress: ip, Port: port}
	}
	for _, tt := range []struct {
		name string
		a, b *messages.Endpoint
		same bool
	}{
		{"same address", ep("", "127.0.0.1", 80), ep("", "127.0.0.1", 80), true},
		{"IPv4-mapped IPv6 is the IPv4 address", ep("", "::ffff:127.0.0.1", 80), ep("", "127.0.0.1", 80), true},
		{"IPv6 spelled two ways", ep("", "2001:db8::1", 80), ep("", "2001:db8:0::1", 80), true},
		{"other port", ep("", "127.0.0.1", 80), ep("", "127.0.0.1", 81), false},
		{"other address", ep("", "127.0.0.1", 80), ep("", "127.0.0.2", 80), false},
		{"host name case and final dot", ep("Example.ORG.", "", 443), ep("example.org", "", 443), true},
		{"other host name", ep("example.org", "", 443), ep("example.com", "", 443), false},
		{"name is not its address", ep("localhost", "", 80), ep("", "127.0.0.1", 80), false},
		{"other interface", &messages.Endpoint{IpAddress: "fe80::1", Port: 1, Interface: "lo"}, &messages.Endpoint{IpAddress: "fe80::1", Port: 1}, false},
		{"other protocol", &messages.Endpoint{IpAddress: "::1", Port: 1, Protocol: "tcp"}, &messages.Endpoint{IpAddress: "::1", Port: 1, Protocol: "quic"}, false},
		{"same path", &messages.Endpoint{Path: "/tmp/s"}, &messages.Endpoint{Path: "/tmp/s"}, true},
		{"other path", &messages.Endpoint{Path: "/tmp/s"}, &messages.Endpoint{Path: "/tmp/t"}, false},
	} {
		require.Equal(t, tt.same, sameEndpoint(tt.a, tt.b), tt.name)
		require.Equal(t, tt.same, sameEndpoint(tt.b, tt.a), tt.name+" (swapped)")
	}
}

// protoactor's ContextExtensions.Get indexes a three-slot array until the
// first Set of a larger id: a larger id would make the first read panic.
func TestEndpointsExtensionSlotFits(t *testing.T) {
	require.Less(t, int(endpointsExtID), 3)
}

// tcpPeer is a raw TCP listener on 127.0.0.1 whose accepted connections
// arrive on a channel (closed by the test's cleanup).
type tcpPeer struct {
	ln       net.Listener
	addr     netip.AddrPort
	accepted chan net.Conn
}

func newTCPPeer(t *testing.T) *tcpPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpPeer{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), accepted: make(chan net.Conn, 8)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(p.accepted)
		for c := range p.accepted {
			c.Close()
		}
	})
	return p
}

// accept waits for the peer's next connection.
func (p *tcpPeer) accept(t *testing.T, ctx context.Context) net.Conn {
	t.Helper()
	select {
	case c := <-p.accepted:
		return c
	case <-ctx.Done():
		t.Fatalf("no connection reached %v", p.addr)
		return nil
	}
}

// initiateTCP starts a real TCP connection from cfg and waits for Ready.
func initiateTCP(t *testing.T, sys *System, cfg *messages.ConnectionConfig, h Handlers) (*actor.PID, *Link) {
	t.Helper()
	cfg.Stacks = []stacks.Stack{stacks.TCP()}
	link := NewLink(sys.NewID(), 0, 0, true)
	link.SetHandlers(h)
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	return res.(*ConnectionStarted).Conn, link
}

func changeEndpoints(t *testing.T, ctx context.Context, sys *System, pid *actor.PID, m *ChangeEndpoints) *EndpointSets {
	t.Helper()
	res, err := Ask(ctx, sys, pid, m)
	require.NoError(t, err)
	return res.(*EndpointSets)
}

func remoteOf(t *testing.T, ctx context.Context, sys *System, pid *actor.PID) netip.AddrPort {
	t.Helper()
	res, err := Ask(ctx, sys, pid, &messages.GetConnectionInfo{})
	require.NoError(t, err)
	r := res.(*messages.ConnectionInfo).Remote
	return netip.AddrPortFrom(netip.MustParseAddr(r.IpAddress), uint16(r.Port))
}

// TestConnEndpointsRemoveInUseSwitches: an added remote is kept once;
// removing the remote in use makes a connection with a re-establishment
// policy switch to the one left at once (its backoff of an hour is not
// waited for), with Reestablishing and Reestablished.
func TestConnEndpointsRemoveInUseSwitches(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := newTCPPeer(t), newTCPPeer(t)
	reestablishing := make(chan error, 4)
	reestablished := make(chan int, 4)
	pid, link := initiateTCP(t, sys, &messages.ConnectionConfig{Remotes: endpoints(a.addr),
		Reestablish: &supervision.Backoff{Initial: time.Hour, MaxAttempts: 3}},
		Handlers{Reestablishing: func(err error, _ int) { reestablishing <- err }, Reestablished: func(n int) { reestablished <- n }})
	defer func() {
		_, _ = Ask(ctx, sys, pid, &messages.AbortConnection{})
		<-link.Done()
	}()
	a.accept(t, ctx)

	sets := changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: endpoints(b.addr)})
	require.Len(t, sets.Remotes, 2)
	sets = changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: endpoints(b.addr, a.addr)})
	require.Len(t, sets.Remotes, 2, "known endpoints are not added again")
	require.Equal(t, Established, link.State(), "adding opens no path")

	sets = changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: endpoints(a.addr), Remove: true})
	require.Equal(t, endpoints(b.addr), sets.Remotes)
	select {
	case err := <-reestablishing:
		var er *EndpointRemovedError
		require.ErrorAs(t, err, &er)
		require.Equal(t, a.addr.String(), er.Endpoint)
		require.False(t, er.Local)
		require.ErrorIs(t, err, supervision.ErrEndpointRemoved)
	case <-ctx.Done():
		t.Fatal("no Reestablishing")
	}
	select {
	case n := <-reestablished:
		require.Equal(t, 1, n)
	case <-ctx.Done():
		t.Fatal("no Reestablished: the switch waited for the backoff")
	}
	b.accept(t, ctx)
	require.Equal(t, b.addr, remoteOf(t, ctx, sys, pid))
	require.Equal(t, Established, link.State())
}

// TestConnEndpointsHostNameInUse: a remote named by host name is in use
// when the race won with one of its addresses; removing an endpoint that
// is not in the set changes nothing; removing the one in use without a
// re-establishment policy aborts with an *EndpointRemovedError.
func TestConnEndpointsHostNameInUse(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := newTCPPeer(t)
	res := stacks.Resolver{LookupNetIP: func(_ context.Context, network, _ string) ([]netip.Addr, error) {
		if network == "ip4" {
			return []netip.Addr{a.addr.Addr()}, nil
		}
		return nil, errors.New("no AAAA")
	}}
	named := &messages.Endpoint{HostName: "peer.test", Port: uint32(a.addr.Port())}
	pid, link := initiateTCP(t, sys, &messages.ConnectionConfig{Remotes: []*messages.Endpoint{named}, Resolver: res}, Handlers{})
	a.accept(t, ctx)

	sets := changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: endpoints(a.addr), Remove: true})
	require.Equal(t, []*messages.Endpoint{named}, sets.Remotes, "its address is not in the set: nothing removed")
	require.Equal(t, Established, link.State())

	other := &messages.Endpoint{HostName: "other.test", Port: uint32(a.addr.Port())}
	changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: []*messages.Endpoint{other}})
	sets = changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: []*messages.Endpoint{other}, Remove: true})
	require.Equal(t, []*messages.Endpoint{named}, sets.Remotes)
	require.Equal(t, Established, link.State(), "another name with the same port is not in use")

	changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Endpoints: []*messages.Endpoint{other}})
	changeEndpoints(t, ctx, sys, pid, &ChangeEndpoints{Remove: true,
		Endpoints: []*messages.Endpoint{{HostName: "PEER.test.", Port: uint32(a.addr.Port())}}})
	select {
	case <-link.Done():
	case <-ctx.Done():
		t.Fatal("removing the name in use did not end the connection")
	}
	var er *EndpointRemovedError
	require.ErrorAs(t, link.Err(), &er)
	require.Equal(t, "peer.test:"+strconv.Itoa(int(a.addr.Port())), er.Endpoint)
	require.Equal(t, "no re-establishment policy", er.Reason)
	require.ErrorIs(t, link.Err(), ErrAborted)
	require.Equal(t, Closed, link.State())
}
