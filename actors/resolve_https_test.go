package actors

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
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

// TestResolveStreamHTTPSWait (fake time): when the first plan comes, by
// Happy Eyeballs v3's rule: once the addresses are in, the HTTPS answer
// is waited for at most stacks.ResolutionDelay after the first positive
// address answer, not after the yield that may itself have waited that
// delay for AAAA (then not at all); an HTTPS answer in time orders the
// plan, a later one comes as a second plan. The A and AAAA answers come
// from a WithResolver-style lookup function, the HTTPS answer from a DNS
// peer over an in-memory stream (net.Pipe) reached through the DNS
// resolver's Dial, so that every wait is on fake time.
func TestResolveStreamHTTPSWait(t *testing.T) {
	const never = -1
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	plain := "tls [::1]:8080"
	ordered := "quic [::1]:9443"
	for i, tt := range []struct {
		name            string
		a6, a4, https   time.Duration // when each answer comes (never: the HTTPS query is dropped)
		first, second   time.Duration // when the plans come (second 0: none expected)
		first1, second1 string        // the first candidate of each
	}{
		{"addresses at once, HTTPS never", 0, 0, never, ms(50), 0, plain, ""},
		{"A first, AAAA late, HTTPS never", ms(300), 0, never, ms(50), 0, "tls 127.0.0.1:8080", ""},
		{"A first, HTTPS in time", ms(300), 0, ms(20), ms(50), 0, "quic 127.0.0.1:9443", ""},
		{"addresses at once, HTTPS in time", 0, 0, ms(30), ms(30), 0, ordered, ""},
		{"HTTPS late", 0, 0, ms(80), ms(50), ms(80), plain, ordered},
	} {
		synctest.Test(t, func(t *testing.T) {
			lookup := func(ctx context.Context, network, _ string) ([]netip.Addr, error) {
				d, a := tt.a4, netip.MustParseAddr("127.0.0.1")
				if network == "ip6" {
					d, a = tt.a6, netip.MustParseAddr("::1")
				}
				select {
				case <-time.After(d):
					return []netip.Addr{a}, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			dns := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
				c, peer := net.Pipe()
				go pipeHTTPSPeer(peer, tt.https)
				return c, nil
			}}
			cfg := httpsCfg([]stacks.Stack{stacks.TLS(), stacks.QUIC()}, "h3", "http/1.1")
			cfg.Resolver = stacks.Resolver{DNS: dns, LookupNetIP: lookup, Routable: func(netip.Addr) bool { return true }}
			cfg.Remotes = []*messages.Endpoint{{HostName: "example.test", Port: 8080}}
			want := 1
			if tt.second > 0 {
				want = 2
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var at []time.Duration
			var firsts []string
			start := time.Now()
			var busy busyCount
			resolveStream(ctx, cfg, &busy, func(r *resolved) {
				if r.err != nil {
					t.Errorf("#%d %s: %v", i, tt.name, r.err)
					return
				}
				at = append(at, time.Since(start))
				firsts = append(firsts, candStrings(planCandidates(cfg.Stacks, r.groups))[0])
				if len(at) == want {
					cancel()
				}
			})
			busy.wait()
			if len(at) != want || at[0] != tt.first || firsts[0] != tt.first1 ||
				(want == 2 && (at[1] != tt.second || firsts[1] != tt.second1)) {
				t.Errorf("#%d %s: plans at %v, first candidates %v; want %v %q, then %v %q", i, tt.name, at, firsts,
					tt.first, tt.first1, tt.second, tt.second1)
			}
		})
	}
}

// pipeHTTPSPeer answers one HTTPS query on the stream c (two-byte length
// framing) after d with the record "1 . alpn=h3 no-default-alpn
// port=9443"; d < 0 never answers (it waits for c to close).
func pipeHTTPSPeer(c net.Conn, d time.Duration) {
	pipeDNSPeer(c, func(q dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource) {
		return d, []dnsmessage.SVCBResource{{Priority: 1, Target: dnsmessage.MustNewName("."),
			Params: []dnsmessage.SVCParam{stacktest.ALPNParam("h3"), {Key: dnsmessage.SVCParamNoDefaultALPN},
				stacktest.PortParam(9443)}}}, nil
	})
}

// pipeDNSPeer answers one DNS query on the stream c (two-byte length
// framing), as a DNS server reached through a net.Resolver's Dial does,
// in fake time: answer tells after how long (< 0: never; it ends when c
// is closed, as it does when c is closed before the answer) and with which HTTPS and SRV records (the query's type
// picks which) the query q is answered.
func pipeDNSPeer(c net.Conn, answer func(q dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource)) {
	defer c.Close()
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return
	}
	q := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := io.ReadFull(c, q); err != nil {
		return
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return
	}
	qu, err := p.Question()
	if err != nil {
		return
	}
	d, https, srv := answer(qu)
	closed := make(chan struct{})
	go func() {
		_, _ = c.Read(make([]byte, 1)) // until the client closes (it sends nothing more)
		close(closed)
	}()
	if d < 0 {
		<-closed
		return
	}
	select {
	case <-time.After(d):
	case <-closed:
		return
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
	_ = b.StartQuestions()
	_ = b.Question(qu)
	_ = b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: qu.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch qu.Type {
	case dnsmessage.TypeHTTPS:
		for _, r := range https {
			_ = b.HTTPSResource(rh, dnsmessage.HTTPSResource{SVCBResource: r})
		}
	case dnsmessage.TypeSRV:
		for _, r := range srv {
			_ = b.SRVResource(rh, r)
		}
	}
	out, err := b.Finish()
	if err != nil {
		return
	}
	_, _ = c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
}

// fakeTimeHTTPSCfg is httpsCfg over the tls and quic stacks, the app
// offering "h2", whose A and AAAA lookups are lookup and whose DNS
// queries (SRV, HTTPS) go to a pipeDNSPeer answering as answer, in fake
// time.
func fakeTimeHTTPSCfg(lookup func(ctx context.Context, network, host string) ([]netip.Addr, error),
	answer func(q dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource)) *messages.ConnectionConfig {
	dns := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		c, peer := net.Pipe()
		go pipeDNSPeer(peer, answer)
		return c, nil
	}}
	cfg := httpsCfg([]stacks.Stack{stacks.TLS(), stacks.QUIC()}, "h2")
	cfg.Resolver = stacks.Resolver{DNS: dns, LookupNetIP: lookup, Routable: func(netip.Addr) bool { return true }}
	return cfg
}

// warmGoResolver has Go's resolver read its configuration (once per
// process, its semaphore channel made then) outside any synctest bubble:
// made inside one, the channel could not be used from another bubble
// (fatal: "send on synctest channel from outside bubble"). Call it before
// synctest.Test when the bubble's lookups go through Go's resolver (SRV).
func warmGoResolver() {
	r := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no server")
	}}
	_, _, _ = r.LookupSRV(context.Background(), "warm", "tcp", "example.test.")
}

// firstPlan runs resolveStream over cfg until its first plan and returns
// it with when it came.
func firstPlan(t *testing.T, cfg *messages.ConnectionConfig) (*resolved, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first *resolved
	var at time.Duration
	start := time.Now()
	var busy busyCount
	resolveStream(ctx, cfg, &busy, func(r *resolved) {
		if first == nil {
			first, at = r, time.Since(start)
			cancel() // the lookups end with ctx
		}
	})
	busy.wait()
	if first == nil {
		t.Fatal("no plan")
	}
	return first, at
}

// TestResolveStreamSRVAndHTTPSWaitsDoNotAddUp (fake time): a remote with
// a service (SRV records looked up) reached over tls and quic by an HTTP
// app (HTTPS records looked up too) whose host name's addresses come at
// once: the SRV answer and the HTTPS answer are each waited for the
// resolution delay counted from those addresses, so when neither comes
// the first plan is made 50 ms after them, not 100 ms (the SRV wait, then
// the HTTPS wait counted again from the fallback's yield); and when the
// SRV records come in time the HTTPS answer, which a remote resolved by
// its SRV records does not use, is not waited for at all.
func TestResolveStreamSRVAndHTTPSWaitsDoNotAddUp(t *testing.T) {
	warmGoResolver()
	const never = -1
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for i, tt := range []struct {
		name      string
		srv       time.Duration // when the SRV answer comes (never: dropped)
		at        time.Duration // when the first plan comes
		firstCand string
	}{
		{"SRV and HTTPS dropped", never, ms(50), "tls [::1]:443"},
		{"SRV records at 10 ms, HTTPS dropped", ms(10), ms(10), "tls [::1]:9000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lookup := func(ctx context.Context, network, _ string) ([]netip.Addr, error) {
					if network == "ip6" {
						return []netip.Addr{netip.MustParseAddr("::1")}, nil
					}
					return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
				}
				cfg := fakeTimeHTTPSCfg(lookup, func(q dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource) {
					if q.Type != dnsmessage.TypeSRV {
						return never, nil, nil
					}
					return tt.srv, nil, []dnsmessage.SRVResource{{Priority: 1, Port: 9000,
						Target: dnsmessage.MustNewName("target.example.test.")}}
				})
				cfg.Remotes = []*messages.Endpoint{{HostName: "example.test.", Service: "https", Port: 443}}
				r, at := firstPlan(t, cfg)
				if r.err != nil {
					t.Fatalf("#%d %s: %v", i, tt.name, r.err)
				}
				cands := candStrings(planCandidates(cfg.Stacks, r.groups))
				if at != tt.at || len(cands) == 0 || cands[0] != tt.firstCand {
					t.Errorf("#%d %s: first plan at %v, %v; want at %v, first %q", i, tt.name, at, cands, tt.at, tt.firstCand)
				}
			})
		})
	}
}

// TestResolveStreamHostFailsHTTPSTargetPending (fake time): the host
// name's A and AAAA lookups fail while its HTTPS answer, naming another
// service endpoint, is pending: the race waits for it the resolution
// delay from the failure, and goes to that target when it comes in time,
// rather than failing at once; an answer later than that does not hold
// the failure longer.
func TestResolveStreamHostFailsHTTPSTargetPending(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for i, tt := range []struct {
		name  string
		https time.Duration // when the HTTPS answer comes
		at    time.Duration // when the first plan comes
		cands []string      // nil: it is an error
	}{
		{"HTTPS in time", ms(20), ms(20), []string{"tls 127.0.0.3:8080"}},
		{"HTTPS late", ms(80), ms(50), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lookup := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
					if network == "ip4" && host == "svc.example.test." {
						return []netip.Addr{netip.MustParseAddr("127.0.0.3")}, nil
					}
					return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
				}
				cfg := fakeTimeHTTPSCfg(lookup, func(q dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource) {
					return tt.https, []dnsmessage.SVCBResource{{Priority: 1, Target: dnsmessage.MustNewName("svc.example.test."),
						Params: []dnsmessage.SVCParam{stacktest.ALPNParam("h2")}}}, nil
				})
				cfg.Remotes = []*messages.Endpoint{{HostName: "example.test.", Port: 8080}}
				r, at := firstPlan(t, cfg)
				var cands []string
				if r.err == nil {
					cands = candStrings(planCandidates(cfg.Stacks, r.groups))
				}
				if at != tt.at || !slices.Equal(cands, tt.cands) || (tt.cands == nil) != (r.err != nil) {
					t.Errorf("#%d %s: first plan at %v: %v (err %v); want at %v: %v", i, tt.name, at, cands, r.err, tt.at, tt.cands)
				}
			})
		})
	}
}

// TestResolveStreamHTTPSTargetsInPriorityOrder: HTTPS records naming
// several service endpoints (TargetNames other than the host) have them
// all attempted, in SvcPriority order (RFC 9460 §3: the client SHOULD
// try them in order), each over the stacks its records offer, before the
// host's own addresses, or in its place among them when a record names
// the host itself ("."); a target that does not resolve is skipped, not
// taken as the end of the records. Real DNS on the loopback; the plan is
// the last one, made once every answer is in.
func TestResolveStreamHTTPSTargetsInPriorityOrder(t *testing.T) {
	for i, tt := range []struct {
		name    string
		resolve []string // the targets that have an address
		host    bool     // a third record, "3 . alpn=h3 no-default-alpn port=9443", names the host
		shared  bool     // b has a's address
		want    []string
	}{
		{"every target resolves", []string{"a", "b"}, false, false,
			[]string{"tls 127.0.0.2:8080", "quic 127.0.0.3:9443", "tls 127.0.0.1:8080", "quic 127.0.0.1:8080"}},
		{"the first target does not resolve", []string{"b"}, false, false,
			[]string{"quic 127.0.0.3:9443", "tls 127.0.0.1:8080", "quic 127.0.0.1:8080"}},
		{"the host is the third target", []string{"a", "b"}, true, false,
			[]string{"tls 127.0.0.2:8080", "quic 127.0.0.3:9443", "quic 127.0.0.1:9443", "tls 127.0.0.1:8080"}},
		// each over the stack its own records offer
		{"two targets share an address", []string{"a", "b"}, false, true,
			[]string{"tls 127.0.0.2:8080", "quic 127.0.0.2:9443", "tls 127.0.0.1:8080", "quic 127.0.0.1:8080"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dns := stacktest.NewDNSServer(t)
			dns.AddAddr("example.test", netip.MustParseAddr("127.0.0.1"))
			addrs := map[string]netip.Addr{"a": netip.MustParseAddr("127.0.0.2"), "b": netip.MustParseAddr("127.0.0.3")}
			if tt.shared {
				addrs["b"] = addrs["a"]
			}
			for _, n := range tt.resolve {
				dns.AddAddr(n+".example.test", addrs[n])
			}
			dns.AddHTTPS("_8080._https.example.test", 2, "b.example.test", stacktest.ALPNParam("h3"),
				dnsmessage.SVCParam{Key: dnsmessage.SVCParamNoDefaultALPN}, stacktest.PortParam(9443))
			dns.AddHTTPS("_8080._https.example.test", 1, "a.example.test", stacktest.ALPNParam("h2"))
			if tt.host {
				dns.AddHTTPS("_8080._https.example.test", 3, ".", stacktest.ALPNParam("h3"),
					dnsmessage.SVCParam{Key: dnsmessage.SVCParamNoDefaultALPN}, stacktest.PortParam(9443))
			}
			cfg := httpsCfg([]stacks.Stack{stacks.TLS(), stacks.QUIC()}, "h3", "h2")
			cfg.Resolver = stacks.Resolver{DNS: dns.Resolver()}
			cfg.Remotes = []*messages.Endpoint{{HostName: "example.test.", Port: 8080}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var last *resolved
			var busy busyCount
			resolveStream(ctx, cfg, &busy, func(r *resolved) { last = r })
			busy.wait()
			if last == nil || last.err != nil {
				t.Fatalf("#%d: plan %+v", i, last)
			}
			if got := candStrings(planCandidates(cfg.Stacks, last.groups)); !slices.Equal(got, tt.want) {
				t.Errorf("#%d %s: got %v; want %v", i, tt.name, got, tt.want)
			}
		})
	}
}
