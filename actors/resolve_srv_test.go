package actors

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
)

// TestSRVProtos: which SRV labels a remote endpoint is looked up under,
// for the stacks selected.
func TestSRVProtos(t *testing.T) {
	all := stacks.All() // tcp, tls, quic, udp, udplite
	tcpOnly := []stacks.Stack{stacks.TCP(), stacks.TLS()}
	quicFirst := []stacks.Stack{stacks.QUIC(), stacks.TCP()}
	named := &messages.Endpoint{HostName: "example.test", Service: "echo"}
	tests := []struct {
		name string
		r    *messages.Endpoint
		sts  []stacks.Stack
		want []string
	}{
		{"every stack", named, all, []string{"tcp", "udp"}},
		{"TCP stacks", named, tcpOnly, []string{"tcp"}},
		{"the stacks' order", named, quicFirst, []string{"udp", "tcp"}},
		{"WithProtocol quic", &messages.Endpoint{HostName: "example.test", Service: "echo", Protocol: "quic"}, all, []string{"udp"}},
		{"WithProtocol of a stack not selected", &messages.Endpoint{HostName: "example.test", Service: "echo", Protocol: "quic"}, tcpOnly, nil},
		{"no service (a port, or WithPort)", &messages.Endpoint{HostName: "example.test", Port: 7}, all, nil},
		{"a port number as service", &messages.Endpoint{HostName: "example.test", Service: "8080", Port: 8080}, all, nil},
		{"an IP address", &messages.Endpoint{IpAddress: "127.0.0.1", Service: "echo", Port: 7}, all, nil},
		{"an IP literal as host name", &messages.Endpoint{HostName: "::1", Service: "echo", Port: 7}, all, nil},
		{"localhost", &messages.Endpoint{HostName: "localhost", Service: "echo", Port: 7}, all, nil},
		{"under localhost", &messages.Endpoint{HostName: "a.LocalHost.", Service: "echo", Port: 7}, all, nil},
		{"a Unix socket", &messages.Endpoint{Path: "/tmp/s", Service: "echo"}, []stacks.Stack{stacks.Unix()}, nil},
	}
	for i, tt := range tests {
		if got := srvProtos(tt.r, tt.sts); !slices.Equal(got, tt.want) {
			t.Errorf("#%d %s: got %v; want %v", i, tt.name, got, tt.want)
		}
	}
}

// TestPlanCandidatesSRVTransport: an endpoint derived from a "_tcp" SRV
// record is attempted over the TCP stacks only, one from "_udp" over QUIC
// (and UDP) only, and their order within a stack is the records' order.
func TestPlanCandidatesSRVTransport(t *testing.T) {
	t1 := netip.MustParseAddrPort("192.0.2.1:1001")
	t2 := netip.MustParseAddrPort("192.0.2.2:1002")
	u1 := netip.MustParseAddrPort("192.0.2.3:2001")
	got := plan(t, []stacks.Stack{stacks.TCP(), stacks.TLS(), stacks.QUIC()}, []remoteAddrs{
		{label: "example.test:echo", addrs: []netip.AddrPort{t1, t2}, transport: "tcp"},
		{label: "example.test:echo", addrs: []netip.AddrPort{u1}, transport: "udp"},
	})
	want := []string{"tcp 192.0.2.1:1001", "tcp 192.0.2.2:1002", "tls 192.0.2.1:1001", "tls 192.0.2.2:1002",
		"quic 192.0.2.3:2001"}
	var gotS []string
	for _, c := range got {
		gotS = append(gotS, c.stack.Name()+" "+c.remote.String())
	}
	if !slices.Equal(gotS, want) {
		t.Errorf("got %v; want %v", gotS, want)
	}
}

// TestResolveSRV: the derived endpoints of a service over real DNS on the
// loopback (a test server), per transport: SRV targets in priority order
// with their records' ports, the host name with the IANA port for a
// transport without records, none for a "." target, and the fallback to
// the usual resolution when no transport has records (the host name's
// addresses, resolved alongside the SRV lookups).
func TestResolveSRV(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	lo := netip.MustParseAddr("127.0.0.1")
	lo2 := netip.MustParseAddr("127.0.0.2")
	dns.AddAddr("example.test", lo)
	dns.AddAddr("a.example.test", lo)
	dns.AddAddr("b.example.test", lo2)
	// both: _tcp has records (b second, a first), _udp none
	dns.AddSRV("_both._tcp.example.test", 2, 0, 2002, "b.example.test")
	dns.AddSRV("_both._tcp.example.test", 1, 0, 1001, "a.example.test")
	dns.AddSRV("_both._tcp.example.test", 3, 0, 3003, "gone.example.test") // no address: dropped
	// dot: _tcp is not available, _udp has no records
	dns.AddSRV("_dot._tcp.example.test", 0, 0, 0, ".")
	// dots: not available over either
	dns.AddSRV("_dots._tcp.example.test", 0, 0, 0, ".")
	dns.AddSRV("_dots._udp.example.test", 0, 0, 0, ".")
	cfg := &messages.ConnectionConfig{Resolver: stacks.Resolver{DNS: dns.Resolver()}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ap := netip.AddrPortFrom
	tests := []struct {
		name     string
		service  string
		port     uint32 // the IANA port (0: none)
		want     map[string][]netip.AddrPort
		fallback bool
		err      error // errors.Is; nil with want nil: any error
	}{
		{"SRV over tcp, IANA port over udp", "both", 7, map[string][]netip.AddrPort{
			"tcp": {ap(lo, 1001), ap(lo2, 2002)}, "udp": {ap(lo, 7)}}, false, nil},
		{"SRV over tcp, no port for udp", "both", 0, map[string][]netip.AddrPort{
			"tcp": {ap(lo, 1001), ap(lo2, 2002)}}, false, nil},
		{"dot over tcp, IANA port over udp", "dot", 7, map[string][]netip.AddrPort{"udp": {ap(lo, 7)}}, false, nil},
		{"dot over both", "dots", 7, nil, false, stacks.ErrServiceUnavailable},
		{"no record: fall back", "none", 7, nil, true, nil},
		{"no record, no IANA port", "none", 0, nil, false, nil},
	}
	for i, tt := range tests {
		r := &messages.Endpoint{HostName: "example.test", Service: tt.service, Port: tt.port}
		var sets []remoteAddrs
		var addrs []netip.Addr // the host name's, on the fallback
		var err error
		finals := 0
		resolveSRVStream(ctx, cfg, r, []string{"tcp", "udp"}, func(a []netip.Addr, s []remoteAddrs, final bool, e error, _ time.Time) {
			if final {
				finals++
				addrs, sets, err = a, s, e
			}
		})
		if finals != 1 {
			t.Errorf("#%d %s: %d final answers; want 1", i, tt.name, finals)
		}
		fallback := addrs != nil
		if fallback != tt.fallback {
			t.Errorf("#%d %s: fallback %v; want %v", i, tt.name, fallback, tt.fallback)
		}
		got := map[string][]netip.AddrPort{}
		for _, s := range sets {
			got[s.transport] = s.addrs
			if s.label != endpointLabel(r) {
				t.Errorf("#%d %s: label %q; want %q", i, tt.name, s.label, endpointLabel(r))
			}
		}
		switch {
		case tt.want != nil:
			if err != nil || !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("#%d %s: got %v, %v; want %v", i, tt.name, got, err, tt.want)
			}
		case tt.fallback:
			if err != nil || len(sets) > 0 || !slices.Equal(addrs, []netip.Addr{lo}) {
				t.Errorf("#%d %s: got %v, %v, %v; want the fallback alone", i, tt.name, got, addrs, err)
			}
		case err == nil || len(sets) > 0 || (tt.err != nil && !errors.Is(err, tt.err)):
			t.Errorf("#%d %s: got %v, %v; want an error (%v)", i, tt.name, got, err, tt.err)
		}
	}
}

// TestResolveSRVStreamFallbackStreams: without SRV records the host
// name's answers stream as ResolveStream yields them (RFC 8305 §3): with
// the SRV answer held back 100 ms and the AAAA answer 1 s, the A answer's
// address comes first, not final, once the SRV answer is in, and the
// AAAA answer's joins it, final, later.
func TestResolveSRVStreamFallbackStreams(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	dns.AddAddr("example.test", v4, v6)
	dns.SetDelay("SRV", 100*time.Millisecond)
	dns.SetDelay("AAAA", time.Second)
	cfg := &messages.ConnectionConfig{Resolver: stacks.Resolver{DNS: dns.Resolver(), Routable: func(netip.Addr) bool { return true }}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		addrs []netip.Addr
		final bool
	}
	var got []answer
	r := &messages.Endpoint{HostName: "example.test", Service: "http", Port: 80}
	resolveSRVStream(ctx, cfg, r, []string{"tcp"}, func(a []netip.Addr, s []remoteAddrs, final bool, err error, _ time.Time) {
		if s != nil || err != nil {
			t.Errorf("sets %v, err %v; want the host name's addresses", s, err)
		}
		got = append(got, answer{a, final})
	})
	if len(got) != 2 || got[0].final || !slices.Equal(got[0].addrs, []netip.Addr{v4}) ||
		!got[1].final || !slices.Equal(got[1].addrs, []netip.Addr{v6, v4}) {
		t.Errorf("got %+v; want [127.0.0.1] then, final, [::1 127.0.0.1]", got)
	}
}

// TestResolveSRVStreamSRVLateOrDropped: once the host name's addresses
// are in, the SRV answer is waited for at most stacks.ResolutionDelay
// (50 ms): then the fallback, the host name's addresses with the IANA
// port, goes to the race, not final while the SRV answer is pending.
//
//   - dropped: a DNS server that never answers SRV queries does not hold
//     the fallback back for the resolver's timeout (5 s per attempt); the
//     caller ends the resolution by ending ctx, which ends the SRV lookup
//     with it.
//   - late: SRV records that answer 300 ms later still come, final, as
//     the derived endpoints (they join the race in place of the fallback's
//     addresses not attempted yet).
func TestResolveSRVStreamSRVLateOrDropped(t *testing.T) {
	lo, lo2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	r := &messages.Endpoint{HostName: "example.test", Service: "echo", Port: 7}
	type answer struct {
		addrs []netip.Addr
		sets  []remoteAddrs
		final bool
		err   error
		at    time.Duration
	}
	t.Run("dropped", func(t *testing.T) {
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", lo)
		dns.Drop("SRV")
		cfg := &messages.ConnectionConfig{Resolver: stacks.Resolver{DNS: dns.Resolver()}}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var got []answer
		start := time.Now()
		resolveSRVStream(ctx, cfg, r, []string{"tcp"}, func(a []netip.Addr, s []remoteAddrs, final bool, err error, _ time.Time) {
			got = append(got, answer{a, s, final, err, time.Since(start)})
			cancel() // the race has what it needs; the SRV lookup ends with ctx
		})
		took := time.Since(start)
		if len(got) != 1 || got[0].final || got[0].err != nil || got[0].sets != nil ||
			!slices.Equal(got[0].addrs, []netip.Addr{lo}) {
			t.Fatalf("got %+v after %v; want [127.0.0.1], not final", got, took)
		}
		if got[0].at < stacks.ResolutionDelay || got[0].at > time.Second {
			t.Errorf("the fallback came after %v; want the resolution delay, %v", got[0].at, stacks.ResolutionDelay)
		}
		if took > got[0].at+time.Second {
			t.Errorf("resolveSRVStream returned %v after its ctx ended", took-got[0].at)
		}
	})
	t.Run("late", func(t *testing.T) {
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", lo)
		dns.AddAddr("a.example.test", lo2)
		dns.AddSRV("_echo._tcp.example.test", 1, 0, 1001, "a.example.test")
		dns.SetDelay("SRV", 300*time.Millisecond)
		cfg := &messages.ConnectionConfig{Resolver: stacks.Resolver{DNS: dns.Resolver()}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []answer
		start := time.Now()
		resolveSRVStream(ctx, cfg, r, []string{"tcp"}, func(a []netip.Addr, s []remoteAddrs, final bool, err error, _ time.Time) {
			got = append(got, answer{a, s, final, err, time.Since(start)})
		})
		if len(got) != 2 || got[0].final || !slices.Equal(got[0].addrs, []netip.Addr{lo}) || got[0].sets != nil ||
			!got[1].final || got[1].err != nil || got[1].addrs != nil || len(got[1].sets) != 1 ||
			!slices.Equal(got[1].sets[0].addrs, []netip.AddrPort{netip.AddrPortFrom(lo2, 1001)}) {
			t.Fatalf("got %+v; want [127.0.0.1], not final, then the SRV target 127.0.0.2:1001, final", got)
		}
	})
}
