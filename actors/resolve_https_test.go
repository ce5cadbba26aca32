package actors

import (
	"context"
	"crypto/tls"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"golang.org/x/net/dns/dnsmessage"
)

// httpsCfg is a configuration over sts whose application offers alpn.
func httpsCfg(sts []stacks.Stack, alpn ...string) *messages.ConnectionConfig {
	cfg := &messages.ConnectionConfig{Stacks: sts}
	if alpn != nil {
		cfg.StackOptions.TLS = &tls.Config{NextProtos: alpn}
	}
	return cfg
}

// TestHTTPSName: which remote endpoints have their HTTPS records looked
// up, and at which name.
func TestHTTPSName(t *testing.T) {
	secure := []stacks.Stack{stacks.TLS(), stacks.QUIC()}
	plain := []stacks.Stack{stacks.TCP(), stacks.UDP()}
	web := []string{"h2", "http/1.1"}
	host := func(port uint32) *messages.Endpoint { return &messages.Endpoint{HostName: "example.test", Port: port} }
	for i, tt := range []struct {
		name string
		cfg  *messages.ConnectionConfig
		r    *messages.Endpoint
		want string
	}{
		{"port 443", httpsCfg(secure, web...), host(443), "example.test"},
		{"service https", httpsCfg(secure, web...), &messages.Endpoint{HostName: "example.test", Service: "https", Port: 443}, "example.test"},
		{"another port", httpsCfg(secure, web...), host(8443), "_8443._https.example.test"},
		{"h3 alone", httpsCfg([]stacks.Stack{stacks.QUIC()}, "h3"), host(443), "example.test"},
		{"not HTTP", httpsCfg(secure, "gotaps-test"), host(443), ""},
		{"no ALPN", httpsCfg(secure), host(443), ""},
		{"no secure stack", httpsCfg(plain, web...), host(443), ""},
		{"WithProtocol tcp", httpsCfg(append(secure, stacks.TCP()), web...),
			&messages.Endpoint{HostName: "example.test", Port: 443, Protocol: "tcp"}, ""},
		{"no port", httpsCfg(secure, web...), host(0), ""},
		{"localhost", httpsCfg(secure, web...), &messages.Endpoint{HostName: "localhost", Port: 443}, ""},
		{"IP literal", httpsCfg(secure, web...), &messages.Endpoint{HostName: "192.0.2.1", Port: 443}, ""},
		{"IP address", httpsCfg(secure, web...), &messages.Endpoint{IpAddress: "192.0.2.1", Port: 443}, ""},
	} {
		if got := httpsName(tt.cfg, tt.r); got != tt.want {
			t.Errorf("#%d %s: got %q; want %q", i, tt.name, got, tt.want)
		}
	}
}

func candStrings(cs []candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.stack.Name()+" "+c.remote.String())
	}
	return out
}

// TestPlanCandidatesHTTPS: the quic and tls candidates of an endpoint with
// HTTPS records are ordered by the records' offers within the places they
// hold (the tcp stack and the endpoint without records keep theirs), an
// offered stack goes to its record's port, and a stack not offered keeps
// the endpoint's port, last; the service endpoint of another name goes
// over the stacks offered, before the host's own addresses; a late
// answer merged into a race reorders the attempts not started yet
// (mergePlan).
func TestPlanCandidatesHTTPS(t *testing.T) {
	a1 := netip.MustParseAddrPort("192.0.2.1:443")
	a2 := netip.MustParseAddrPort("192.0.2.2:443")
	b := netip.MustParseAddrPort("198.51.100.1:443")
	h3 := &stacks.HTTPSPlan{QUIC: stacks.HTTPSOffer{Offered: true, Priority: 1, Port: 8443}}
	sts := []stacks.Stack{stacks.TLS(), stacks.TCP(), stacks.QUIC()}
	got := candStrings(plan(t, sts, []remoteAddrs{
		{label: "a.test:443", addrs: []netip.AddrPort{a1, a2}, https: h3},
		{label: "b.test:443", addrs: []netip.AddrPort{b}},
	}))
	// places of the ranked candidates (a's tls and quic): 0, 2, 6, 8
	want := []string{"quic 192.0.2.1:8443", "tls 198.51.100.1:443", "quic 192.0.2.2:8443",
		"tcp 192.0.2.1:443", "tcp 198.51.100.1:443", "tcp 192.0.2.2:443",
		"tls 192.0.2.1:443", "quic 198.51.100.1:443", "tls 192.0.2.2:443"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}

	// a service endpoint of another name (192.0.2.9): over QUIC only, the
	// stack its record offers, to its port; the host's own address after
	// it over every stack, in the stacks' order
	svc := netip.MustParseAddrPort("192.0.2.9:443")
	got = candStrings(plan(t, sts, []remoteAddrs{
		{label: "a.test:443", addrs: []netip.AddrPort{svc}, https: h3, httpsOnly: true},
		{label: "a.test:443", addrs: []netip.AddrPort{a1}, httpsAfter: true},
	}))
	want = []string{"quic 192.0.2.9:8443", "tls 192.0.2.1:443", "tcp 192.0.2.1:443", "quic 192.0.2.1:443"}
	if !slices.Equal(got, want) {
		t.Errorf("service endpoint: got %v; want %v", got, want)
	}
	// the service endpoint is the host's address: one attempt each
	same := &stacks.HTTPSPlan{QUIC: stacks.HTTPSOffer{Offered: true, Priority: 1}}
	got = candStrings(plan(t, sts, []remoteAddrs{
		{label: "a.test:443", addrs: []netip.AddrPort{a1}, https: same, httpsOnly: true},
		{label: "a.test:443", addrs: []netip.AddrPort{a1}, httpsAfter: true},
	}))
	want = []string{"quic 192.0.2.1:443", "tls 192.0.2.1:443", "tcp 192.0.2.1:443"}
	if !slices.Equal(got, want) {
		t.Errorf("shared address: got %v; want %v", got, want)
	}

	// without records: the stacks' order; the answer then comes after the
	// first attempt (tls to a1) started
	secure := []stacks.Stack{stacks.TLS(), stacks.QUIC()}
	before := plan(t, secure, []remoteAddrs{{label: "a.test:443", addrs: []netip.AddrPort{a1, a2}}})
	if got, want := candStrings(before), []string{"tls 192.0.2.1:443", "tls 192.0.2.2:443", "quic 192.0.2.1:443",
		"quic 192.0.2.2:443"}; !slices.Equal(got, want) {
		t.Fatalf("without records: got %v; want %v", got, want)
	}
	h3same := &stacks.HTTPSPlan{QUIC: stacks.HTTPSOffer{Offered: true, Priority: 1}}
	after := plan(t, secure, []remoteAddrs{{label: "a.test:443", addrs: []netip.AddrPort{a1, a2}, https: h3same}})
	cands, order := mergePlan(before, []int{0}, after)
	var merged []candidate
	for _, i := range order {
		merged = append(merged, cands[i])
	}
	if got, want := candStrings(merged), []string{"tls 192.0.2.1:443", "quic 192.0.2.1:443", "quic 192.0.2.2:443",
		"tls 192.0.2.2:443"}; !slices.Equal(got, want) {
		t.Errorf("merged: got %v; want %v", got, want)
	}
}

// TestResolveStreamHTTPS: resolveStream over real DNS on the loopback
// waits for the HTTPS answer after the addresses at most
// stacks.ResolutionDelay: a prompt answer orders the first plan (QUIC
// first for "h3" alone, its port), a dropped one delays it by the delay
// and no more, a late one comes as a plan made again, reordered, and
// the records' address hints stand for late A and AAAA answers.
func TestResolveStreamHTTPS(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	run := func(t *testing.T, setup func(dns *stacktest.DNSServer), plans int) (firsts [][]string, at []time.Duration) {
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", lo)
		dns.AddHTTPS("_8080._https.example.test", 1, ".", stacktest.ALPNParam("h3"),
			dnsmessage.SVCParam{Key: dnsmessage.SVCParamNoDefaultALPN}, stacktest.PortParam(9443))
		setup(dns)
		cfg := httpsCfg([]stacks.Stack{stacks.TLS(), stacks.QUIC()}, "h3", "http/1.1")
		cfg.Resolver = stacks.Resolver{DNS: dns.Resolver()}
		cfg.Remotes = []*messages.Endpoint{{HostName: "example.test", Port: 8080}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var busy busyCount
		var mu sync.Mutex
		start := time.Now()
		resolveStream(ctx, cfg, &busy, func(r *resolved) {
			if r.err != nil {
				t.Errorf("plan error: %v", r.err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			firsts = append(firsts, candStrings(planCandidates(cfg.Stacks, r.groups)))
			if len(firsts) == plans {
				cancel() // the lookups end with ctx
			}
		})
		busy.wait()
		return firsts, at
	}
	ordered := []string{"quic 127.0.0.1:9443", "tls 127.0.0.1:8080"}
	plain := []string{"tls 127.0.0.1:8080", "quic 127.0.0.1:8080"}

	t.Run("prompt", func(t *testing.T) {
		plans, _ := run(t, func(*stacktest.DNSServer) {}, 1)
		if len(plans) != 1 || !slices.Equal(plans[0], ordered) {
			t.Errorf("plans %v; want %v", plans, ordered)
		}
	})
	t.Run("dropped", func(t *testing.T) {
		plans, at := run(t, func(dns *stacktest.DNSServer) { dns.DropHTTPS(true) }, 1)
		if len(plans) != 1 || !slices.Equal(plans[0], plain) {
			t.Fatalf("plans %v; want %v", plans, plain)
		}
		if at[0] < stacks.ResolutionDelay || at[0] > stacks.HTTPSLookupTimeout/2 {
			t.Errorf("first plan after %v; want the resolution delay (%v), well short of the lookup's timeout",
				at[0], stacks.ResolutionDelay)
		}
	})
	t.Run("hints", func(t *testing.T) {
		// the A and AAAA answers come late: the record's ipv4hint stands
		// for them, in the first plan, a resolution delay after it
		const late = 400 * time.Millisecond
		plans, at := run(t, func(dns *stacktest.DNSServer) {
			dns.AddHTTPS("_8080._https.example.test", 2, ".", stacktest.ALPNParam("h3"),
				dnsmessage.SVCParam{Key: dnsmessage.SVCParamIPv4Hint, Value: []byte{127, 0, 0, 2}})
			dns.SetDelay("A", late)
			dns.SetDelay("AAAA", late)
		}, 2)
		hinted := []string{"quic 127.0.0.2:9443", "tls 127.0.0.2:8080"}
		if len(plans) != 2 || !slices.Equal(plans[0], hinted) || !slices.Equal(plans[1], ordered) {
			t.Fatalf("plans %v; want %v then %v", plans, hinted, ordered)
		}
		if at[0] < stacks.ResolutionDelay || at[0] >= late || at[1] < late {
			t.Errorf("plans at %v; want the hints' after the resolution delay, before the A answer (%v)", at, late)
		}
	})
	t.Run("late", func(t *testing.T) {
		plans, at := run(t, func(dns *stacktest.DNSServer) { dns.SetDelay("HTTPS", 300*time.Millisecond) }, 2)
		if len(plans) != 2 || !slices.Equal(plans[0], plain) || !slices.Equal(plans[1], ordered) {
			t.Fatalf("plans %v; want %v then %v", plans, plain, ordered)
		}
		if at[0] >= 300*time.Millisecond || at[1] < 300*time.Millisecond {
			t.Errorf("plans at %v; want the first before the HTTPS answer (300 ms), the second after", at)
		}
	})
}
