package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

func TestRendezvousTLSClientRole(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		local, remote string
		client        bool
		err           bool
	}{
		{"127.0.0.1:1000", "127.0.0.1:2000", true, false},
		{"127.0.0.1:2000", "127.0.0.1:1000", false, false},
		{"10.0.0.2:1", "10.0.0.1:9", false, false}, // the address first, then the port
		{"10.0.0.1:9", "10.0.0.2:1", true, false},
		{"[::ffff:10.0.0.1]:9", "10.0.0.2:1", true, false}, // unmapped
		{"[::1]:5", "127.0.0.1:5", false, false},           // IPv4 sorts before IPv6
		{"127.0.0.1:5", "127.0.0.1:5", false, true},        // a connection to itself
	} {
		c, err := tlsClientRole(ap(tc.local), ap(tc.remote))
		require.Equal(t, tc.err, err != nil, "%s -> %s", tc.local, tc.remote)
		if !tc.err {
			require.Equal(t, tc.client, c, "%s -> %s", tc.local, tc.remote)
			// the other end decides the other way
			other, err := tlsClientRole(ap(tc.remote), ap(tc.local))
			require.NoError(t, err)
			require.NotEqual(t, c, other)
		}
	}
}

func TestRendezvousRetryBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond,
		3: 40 * time.Millisecond, 6: 320 * time.Millisecond, 7: 320 * time.Millisecond, 100: 320 * time.Millisecond} {
		require.Equal(t, want, rendezvousRetry(n), "attempt %d", n)
	}
}

func TestRendezvousCheckAndAttemptBackoff(t *testing.T) {
	for i, tt := range []struct {
		n           int
		check, quic time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{50, 500 * time.Millisecond, time.Second},
	} {
		if got := rendezvousCheckWait(tt.n); got != tt.check {
			t.Errorf("#%d: check wait %d = %v; want %v", i, tt.n, got, tt.check)
		}
		if got := rendezvousQUICAttempt(tt.n); got != tt.quic {
			t.Errorf("#%d: QUIC attempt %d = %v; want %v", i, tt.n, got, tt.quic)
		}
	}
}

func TestRendezvousLocalFor(t *testing.T) {
	ap := netip.MustParseAddrPort
	for i, tt := range []struct{ local, remote, want string }{
		{"127.0.0.2:7", "127.0.0.1:9", "127.0.0.2:7"},          // a given address stays
		{"[::ffff:127.0.0.2]:7", "127.0.0.1:9", "127.0.0.2:7"}, // unmapped
		{"0.0.0.0:7", "127.0.0.1:9", "127.0.0.1:7"},            // the route's source
		{"[::]:7", "[::1]:9", "[::1]:7"},
	} {
		if got := rendezvousLocalFor(ap(tt.local), ap(tt.remote)); got.String() != tt.want {
			t.Errorf("#%d: %s -> %s: got %s; want %s", i, tt.local, tt.remote, got, tt.want)
		}
	}
	// no address at all: the route's source too
	if got := rendezvousLocalFor(netip.AddrPortFrom(netip.Addr{}, 7), ap("127.0.0.1:9")); got != ap("127.0.0.1:7") {
		t.Errorf("wildcard: got %s", got)
	}
}

func TestRendezvousStackChoice(t *testing.T) {
	for _, tc := range []struct {
		stacks []stacks.Stack
		want   string
	}{
		{[]stacks.Stack{stacks.TCP(), stacks.TLS()}, "tcp"},
		{[]stacks.Stack{stacks.QUIC(), stacks.TLS()}, "tls"}, // the first TCP-based one
		{[]stacks.Stack{stacks.QUIC(), stacks.UDP()}, "quic"},
		{[]stacks.Stack{stacks.UDPLite(), stacks.QUIC()}, "udplite"},
		{[]stacks.Stack{stacks.UDP(), stacks.UDPLite()}, "udp"},
		{[]stacks.Stack{stacks.Unix()}, ""},
		{nil, ""},
	} {
		st, err := RendezvousStack(&messages.ConnectionConfig{Stacks: tc.stacks})
		if tc.want == "" {
			require.ErrorIs(t, err, ErrRendezvousUnsupported)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, st.Name())
	}
}

func TestRendezvousResultOnce(t *testing.T) {
	r := NewRendezvousResult()
	select {
	case <-r.Done():
		t.Fatal("done before completion")
	default:
	}
	s := &ConnectionStarted{}
	r.complete(s, RendezvousAccepted, nil)
	r.complete(nil, "", errors.New("late"))
	<-r.Done()
	got, how, err := r.Outcome()
	require.NoError(t, err)
	require.Same(t, s, got)
	require.Equal(t, RendezvousAccepted, how)
}

// fakeIfaces is a host with a loopback, an Ethernet interface and one that
// is down.
func fakeIfaces() ([]net.Interface, error) {
	return []net.Interface{
		{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Index: 2, Name: "eth0", Flags: net.FlagUp},
		{Index: 3, Name: "wlan0"}, // down
	}, nil
}

func fakeAddrs(ifi net.Interface) ([]net.Addr, error) {
	cidr := func(s string) *net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err)
		}
		n.IP = ip
		return n
	}
	switch ifi.Name {
	case "lo":
		return []net.Addr{cidr("127.0.0.1/8"), cidr("::1/128")}, nil
	case "eth0":
		return []net.Addr{cidr("192.0.2.10/24"), cidr("fe80::1/64"), cidr("2001:db8::10/64")}, nil
	case "wlan0":
		return []net.Addr{cidr("198.51.100.1/24")}, nil
	}
	return nil, errors.New("no such interface")
}

func TestGatherEndpointsLocals(t *testing.T) {
	resolver := stacks.Resolver{LookupNetIP: func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if host != "me.example" {
			return nil, errors.New("unknown host")
		}
		if network == "ip6" {
			return []netip.Addr{netip.MustParseAddr("2001:db8::77")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.77")}, nil
	}, Routable: func(netip.Addr) bool { return true }}
	for _, tc := range []struct {
		name  string
		local *messages.Endpoint
		want  []string
		err   string
	}{
		{name: "address as is", local: &messages.Endpoint{IpAddress: "192.0.2.10", Port: 5}, want: []string{"192.0.2.10:5"}},
		{name: "wildcard: every interface up", local: &messages.Endpoint{Port: 7},
			want: []string{"127.0.0.1:7", "[::1]:7", "192.0.2.10:7", "[fe80::1%eth0]:7", "[2001:db8::10]:7"}},
		{name: "unspecified IPv4", local: &messages.Endpoint{IpAddress: "0.0.0.0", Port: 7},
			want: []string{"127.0.0.1:7", "192.0.2.10:7"}},
		{name: "unspecified IPv6", local: &messages.Endpoint{IpAddress: "::", Port: 7},
			want: []string{"[::1]:7", "[fe80::1%eth0]:7", "[2001:db8::10]:7"}},
		{name: "interface only", local: &messages.Endpoint{Interface: "eth0"},
			want: []string{"192.0.2.10:0", "[fe80::1%eth0]:0", "[2001:db8::10]:0"}},
		{name: "interface down", local: &messages.Endpoint{Interface: "wlan0"}, err: "no address on interface wlan0"},
		{name: "host name", local: &messages.Endpoint{HostName: "me.example", Port: 9}, want: []string{"[2001:db8::77]:9", "192.0.2.77:9"}},
		{name: "unknown host name", local: &messages.Endpoint{HostName: "nope.example"}, err: "unknown host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &messages.ConnectionConfig{Locals: []*messages.Endpoint{tc.local}, Resolver: resolver}
			res, err := gatherEndpoints(context.Background(), cfg, nil, fakeIfaces, fakeAddrs)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, l := range res.Locals {
				require.False(t, l.ServerReflexive)
				got = append(got, l.Addr.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// stunAnswerer answers one STUN Binding request per datagram with a fixed
// mapped address (XOR-MAPPED-ADDRESS, IPv4).
func stunAnswerer(t *testing.T, mapped netip.AddrPort) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { _ = pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 20 {
				continue
			}
			resp := []byte{0x01, 0x01, 0, 12, 0x21, 0x12, 0xa4, 0x42}
			resp = append(resp, buf[8:20]...)
			a := mapped.Addr().As4()
			p := mapped.Port() ^ 0x2112
			resp = append(resp, 0x00, 0x20, 0, 8, 0, 1, byte(p>>8), byte(p), a[0]^0x21, a[1]^0x12, a[2]^0xa4, a[3]^0x42)
			_, _ = pc.WriteToUDPAddrPort(resp, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestGatherEndpointsSTUNAndRemotes(t *testing.T) {
	mapped := netip.MustParseAddrPort("203.0.113.5:61000") // what a NAT would show
	srv := stunAnswerer(t, mapped)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	require.NoError(t, pc.Close())
	cfg := &messages.ConnectionConfig{
		Locals: []*messages.Endpoint{{IpAddress: "127.0.0.1", Port: uint32(port)}, {IpAddress: "127.0.0.1", Port: 1}},
		Remotes: []*messages.Endpoint{{IpAddress: "192.0.2.1", Port: 443},
			{HostName: "peer.example", Port: 8443}},
		Resolver: stacks.Resolver{LookupNetIP: func(_ context.Context, network, host string) ([]netip.Addr, error) {
			if network == "ip6" {
				return nil, errors.New("no AAAA")
			}
			return []netip.Addr{netip.MustParseAddr("198.51.100.20")}, nil
		}},
	}
	stun := []StunServer{{Host: srv.Addr().String(), Port: srv.Port()}} // the second local has none
	res, err := gatherEndpoints(context.Background(), cfg, stun, fakeIfaces, fakeAddrs)
	require.NoError(t, err)
	require.Equal(t, []LocalCandidate{
		{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		{Addr: mapped, ServerReflexive: true, Base: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		{Addr: netip.MustParseAddrPort("127.0.0.1:1")},
	}, res.Locals)
	require.Equal(t, []RemoteCandidate{
		{Addr: netip.MustParseAddrPort("192.0.2.1:443")},
		{Addr: netip.MustParseAddrPort("198.51.100.20:8443")},
	}, res.Remotes)

	// a STUN server that does not answer: the error says so, within ctx
	dead := []StunServer{{Host: "127.0.0.1", Port: freeUDPPort(t), Client: stacks.STUNClient{RTO: time.Millisecond, Attempts: 2}}}
	_, err = gatherEndpoints(context.Background(), cfg, dead, fakeIfaces, fakeAddrs)
	require.Error(t, err)
	require.True(t, errors.Is(err, stacks.ErrSTUNTimeout) || errors.Is(err, syscall.ECONNREFUSED), "%v", err)
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// startRendezvous asks sys's root for a rendezvous from local to remote
// over TCP.
func startRendezvous(t *testing.T, sys *System, local, remote netip.AddrPort) *RendezvousResult {
	t.Helper()
	res := NewRendezvousResult()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := Ask(ctx, sys, sys.Root, &StartRendezvous{Config: tcpRendezvousConfig(local, remote), Result: res})
	require.NoError(t, err)
	require.IsType(t, &RendezvousStarted{}, rep)
	return res
}

func tcpRendezvousConfig(local, remote netip.AddrPort) *messages.ConnectionConfig {
	return &messages.ConnectionConfig{
		Locals:  []*messages.Endpoint{{IpAddress: local.Addr().String(), Port: uint32(local.Port())}},
		Remotes: []*messages.Endpoint{{IpAddress: remote.Addr().String(), Port: uint32(remote.Port())}},
		Stacks:  []stacks.Stack{stacks.TCP()},
	}
}

// freeTCPPorts returns two distinct TCP ports that were free on
// 127.0.0.1: both are held while the second is picked (one released
// before the next is picked may come back, and a rendezvous whose remote
// is its own local endpoint connects to itself).
func freeTCPPorts(t *testing.T) (uint16, uint16) {
	t.Helper()
	var ports [2]uint16
	for i := range ports {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		ports[i] = uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1]
}

// TestRendezvousActorAcceptsPeer: a plain peer connecting from the remote
// endpoint reaches the rendezvous's listener; the connection becomes a
// member of a new group and the result names it.
func TestRendezvousActorAcceptsPeer(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	lo := netip.MustParseAddr("127.0.0.1")
	pl, pr := freeTCPPorts(t)
	local, remote := netip.AddrPortFrom(lo, pl), netip.AddrPortFrom(lo, pr)
	res := startRendezvous(t, sys, local, remote)

	// the peer: connects from remote to local until the rendezvous listens
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var peer stacks.Transport
	for peer == nil {
		c, err := stacks.TCP().Dial(ctx, local, stacks.Options{Local: remote, ReusePort: true})
		switch {
		case err == nil:
			peer = c
		case ctx.Err() != nil:
			t.Fatal("the rendezvous never listened")
		}
	}
	defer peer.Close()
	select {
	case <-res.Done():
	case <-ctx.Done():
		t.Fatal("no outcome")
	}
	s, how, err := res.Outcome()
	require.NoError(t, err)
	require.Contains(t, []string{RendezvousAccepted, RendezvousConnected}, how)
	require.NotNil(t, s.Conn)
	require.NotNil(t, s.Group)
	require.Equal(t, Established, s.Link.State())
}

func TestRendezvousActorShutdown(t *testing.T) {
	sys := NewSystem(Config{})
	lo := netip.MustParseAddr("127.0.0.1")
	pl, pr := freeTCPPorts(t)
	local, remote := netip.AddrPortFrom(lo, pl), netip.AddrPortFrom(lo, pr)
	res := startRendezvous(t, sys, local, remote) // refused, retried
	require.NoError(t, sys.Shutdown(context.Background()))
	<-res.Done()
	_, _, err := res.Outcome()
	require.ErrorIs(t, err, ErrShutdown)
	ln, err := net.Listen("tcp4", local.String()) // every socket is closed
	require.NoError(t, err)
	require.NoError(t, ln.Close())
}

// TestRendezvousActorAbandoned: a caller without the reply to
// StartRendezvous abandons the request. Before an actor took it, the actor
// fails with the caller's error and opens nothing; after, Abandon names
// the actor, which the caller cancels and waits for.
func TestRendezvousActorAbandoned(t *testing.T) {
	sys := NewSystem(Config{})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	lo := netip.MustParseAddr("127.0.0.1")
	pl, pr := freeTCPPorts(t)
	local, remote := netip.AddrPortFrom(lo, pl), netip.AddrPortFrom(lo, pr)
	gone := errors.New("caller gone")

	res := NewRendezvousResult()
	require.Nil(t, res.Abandon(gone))
	sys.AS.Root.Send(sys.Root, &StartRendezvous{Config: tcpRendezvousConfig(local, remote), Result: res})
	<-res.Done()
	_, _, err := res.Outcome()
	require.ErrorIs(t, err, gone)

	res = startRendezvous(t, sys, local, remote) // refused, retried
	pid := res.Abandon(gone)
	require.NotNil(t, pid)
	require.Same(t, pid, res.Abandon(gone))
	sys.AS.Root.Send(pid, &CancelRendezvous{Err: context.Canceled})
	<-res.Done()
	_, _, err = res.Outcome()
	require.ErrorIs(t, err, context.Canceled)
	ln, err := net.Listen("tcp4", local.String()) // every socket is closed
	require.NoError(t, err)
	require.NoError(t, ln.Close())
}
