package stacks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

func TestHTTPSName(t *testing.T) {
	for i, tt := range []struct {
		host string
		port uint16
		want string
	}{
		{"example.test", 443, "example.test"},
		{"example.test", 0, "example.test"},
		{"example.test", 8443, "_8443._https.example.test"},
		{"example.test", 80, "_80._https.example.test"},
	} {
		if got := HTTPSName(tt.host, tt.port); got != tt.want {
			t.Errorf("#%d: got %q; want %q", i, got, tt.want)
		}
	}
}

// svcb builds a record with the params given (in key order).
func svcb(prio uint16, target string, params ...dnsmessage.SVCParam) dnsmessage.SVCBResource {
	return dnsmessage.SVCBResource{Priority: prio, Target: dnsmessage.MustNewName(target), Params: params}
}

func param(k dnsmessage.SVCParamKey, v ...byte) dnsmessage.SVCParam {
	return dnsmessage.SVCParam{Key: k, Value: v}
}

// TestHTTPSRecordOf: the parameters a race uses are read; a malformed
// record, or one with a mandatory key not implemented (ech), is dropped
// (RFC 9460 §2.2, §7, §8).
func TestHTTPSRecordOf(t *testing.T) {
	alpn := stacktest.ALPNParam
	mand := func(keys ...byte) dnsmessage.SVCParam {
		var v []byte
		for _, k := range keys {
			v = append(v, 0, k)
		}
		return param(dnsmessage.SVCParamMandatory, v...)
	}
	for i, tt := range []struct {
		in   dnsmessage.SVCBResource
		ok   bool
		want HTTPSRecord
	}{
		{svcb(1, ".", alpn("h3", "h2"), stacktest.PortParam(8443),
			param(dnsmessage.SVCParamIPv4Hint, 192, 0, 2, 1, 192, 0, 2, 2),
			param(dnsmessage.SVCParamECH, 1, 2, 3),
			param(dnsmessage.SVCParamIPv6Hint, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)),
			true, HTTPSRecord{Priority: 1, Target: ".", ALPN: []string{"h3", "h2"}, Port: 8443,
				IPv4Hint: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")},
				IPv6Hint: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, ECH: true}},
		{svcb(0, "Alias.Example.Test."), true, HTTPSRecord{Priority: 0, Target: "alias.example.test."}},
		{svcb(2, ".", alpn("h3"), param(dnsmessage.SVCParamNoDefaultALPN)), true,
			HTTPSRecord{Priority: 2, Target: ".", ALPN: []string{"h3"}, NoDefaultALPN: true}},
		{svcb(1, ".", mand(1, 3), alpn("h2"), stacktest.PortParam(1)), true,
			HTTPSRecord{Priority: 1, Target: ".", ALPN: []string{"h2"}, Port: 1}},
		// malformed, or not usable
		{svcb(1, ".", mand(5), param(dnsmessage.SVCParamECH, 1)), false, HTTPSRecord{}}, // ech mandatory
		{svcb(1, ".", mand(3)), false, HTTPSRecord{}},                                   // mandatory key absent
		{svcb(1, ".", mand(0)), false, HTTPSRecord{}},                                   // mandatory lists itself
		{svcb(1, ".", param(dnsmessage.SVCParamMandatory, 0)), false, HTTPSRecord{}},    // odd length
		{svcb(1, ".", param(dnsmessage.SVCParamALPN, 5, 'h', '3')), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamALPN, 0)), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamALPN)), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamNoDefaultALPN)), false, HTTPSRecord{}},
		{svcb(1, ".", alpn("h2"), param(dnsmessage.SVCParamNoDefaultALPN, 1)), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamPort, 1)), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamIPv4Hint, 1, 2, 3)), false, HTTPSRecord{}},
		{svcb(1, ".", param(dnsmessage.SVCParamIPv6Hint, 1, 2, 3, 4)), false, HTTPSRecord{}},
	} {
		got, ok := httpsRecordOf(tt.in)
		if ok != tt.ok {
			t.Errorf("#%d: ok %v; want %v", i, ok, tt.ok)
			continue
		}
		require.Equal(t, tt.want, got, "#%d", i)
	}
}

// TestPlanHTTPS: which of QUIC and TLS the records offer the application,
// in which order, on which port.
func TestPlanHTTPS(t *testing.T) {
	const owner = "example.test"
	rec := func(prio uint16, target string, port uint16, noDefault bool, alpn ...string) HTTPSRecord {
		return HTTPSRecord{Priority: prio, Target: target, Port: port, NoDefaultALPN: noDefault, ALPN: alpn}
	}
	both := []string{"h3", "h2", "http/1.1"}
	for i, tt := range []struct {
		recs      []HTTPSRecord
		app       []string
		ok        bool
		quic, tls int // ranks
		quicPort  uint16
		tlsPort   uint16
	}{
		// h3 listed, http/1.1 by default: QUIC first
		{[]HTTPSRecord{rec(1, ".", 0, false, "h3")}, both, true, 2, 3, 0, 0},
		// h3 only
		{[]HTTPSRecord{rec(1, ".", 0, true, "h3")}, both, true, 2, 1 << 17, 0, 0},
		// http/1.1 only: TLS first, QUIC last
		{[]HTTPSRecord{rec(1, ".", 0, false, "http/1.1")}, both, true, 1 << 17, 2, 0, 0},
		// no alpn at all: http/1.1 by default
		{[]HTTPSRecord{rec(1, ".", 0, false)}, both, true, 1 << 17, 3, 0, 0},
		// the owner spelled out; the port goes with the offer
		{[]HTTPSRecord{rec(1, "example.test.", 8443, false, "h3", "h2")}, both, true, 2, 2, 8443, 8443},
		// the better priority wins, with its port
		{[]HTTPSRecord{rec(2, ".", 9000, true, "h3", "h2"), rec(1, ".", 9001, true, "h2")}, both, true, 4, 2, 9000, 9001},
		// the application's ALPN: h2 offered, the application speaks only h3 and http/1.1
		{[]HTTPSRecord{rec(1, ".", 0, true, "h2")}, []string{"h3", "http/1.1"}, true, 1 << 17, 1 << 17, 0, 0},
		// nil application ALPN: any
		{[]HTTPSRecord{rec(1, ".", 0, true, "h3")}, nil, true, 2, 1 << 17, 0, 0},
		// another target: its records alone (the "." one is another endpoint)
		{[]HTTPSRecord{rec(2, ".", 0, true, "h2"), rec(1, "other.test.", 0, true, "h3")}, both, true, 2, 1 << 17, 0, 0},
		{[]HTTPSRecord{rec(1, ".", 0, false, "h3"), rec(2, "other.test.", 0, true, "h2")}, both, true, 2, 3, 0, 0},
		// not usable here: AliasMode (its target's records are), none
		{[]HTTPSRecord{rec(0, "other.test.", 0, false), rec(1, ".", 0, false, "h3")}, both, false, 1 << 17, 1 << 17, 0, 0},
		{nil, both, false, 1 << 17, 1 << 17, 0, 0},
	} {
		target, _ := HTTPSTarget(tt.recs, owner)
		p, ok := PlanHTTPS(tt.recs, owner, target, tt.app)
		q, _ := p.Rank("quic")
		l, _ := p.Rank("tls")
		if ok != tt.ok || q != tt.quic || l != tt.tls || p.QUIC.Port != tt.quicPort || p.TLS.Port != tt.tlsPort {
			t.Errorf("#%d: got ok %v quic %d tls %d ports %d %d; want %v %d %d %d %d", i, ok, q, l,
				p.QUIC.Port, p.TLS.Port, tt.ok, tt.quic, tt.tls, tt.quicPort, tt.tlsPort)
		}
	}
	// hints of the records used, lower priority first, IPv6 first and
	// interleaved, without duplicates; none from a record not used
	a := netip.MustParseAddr
	p, _ := PlanHTTPS([]HTTPSRecord{
		{Priority: 2, Target: ".", IPv4Hint: []netip.Addr{a("192.0.2.2"), a("192.0.2.1")}},
		{Priority: 1, Target: ".", IPv4Hint: []netip.Addr{a("192.0.2.1")}, IPv6Hint: []netip.Addr{a("2001:db8::1"), a("2001:db8::2")}},
		{Priority: 1, Target: "other.test.", IPv4Hint: []netip.Addr{a("198.51.100.1")}},
	}, owner, owner, both)
	require.Equal(t, []netip.Addr{a("2001:db8::1"), a("192.0.2.1"), a("2001:db8::2"), a("192.0.2.2")}, p.Hints)
	if _, ok := (HTTPSPlan{}).Rank("tcp"); ok {
		t.Error("tcp: ranked; the records concern only quic and tls")
	}
}

// TestHTTPSTarget: the service endpoint the records point a race to.
func TestHTTPSTarget(t *testing.T) {
	const host = "Example.Test"
	rec := func(prio uint16, target string) HTTPSRecord { return HTTPSRecord{Priority: prio, Target: target} }
	for i, tt := range []struct {
		recs   []HTTPSRecord
		target string
		alias  bool
	}{
		{nil, "", false},
		{[]HTTPSRecord{rec(1, ".")}, "example.test.", false},
		{[]HTTPSRecord{rec(2, "."), rec(1, "svc.test."), rec(1, "svc2.test.")}, "svc.test.", false},
		{[]HTTPSRecord{rec(1, "svc.test."), rec(0, "alias.test.")}, "alias.test.", true}, // AliasMode wins
		{[]HTTPSRecord{rec(0, ".")}, "", false},                                          // not available
	} {
		target, alias := HTTPSTarget(tt.recs, host)
		if target != tt.target || alias != tt.alias {
			t.Errorf("#%d: got %q %v; want %q %v", i, target, alias, tt.target, tt.alias)
		}
	}
}

// TestHTTPSTargets: every service endpoint of the ServiceMode records,
// in the order to try them.
func TestHTTPSTargets(t *testing.T) {
	const host = "Example.Test"
	rec := func(prio uint16, target string) HTTPSRecord { return HTTPSRecord{Priority: prio, Target: target} }
	for i, tt := range []struct {
		recs []HTTPSRecord
		want []string
	}{
		{nil, nil},
		{[]HTTPSRecord{rec(3, "."), rec(1, "svc.test."), rec(2, "svc2.test."), rec(1, "svc3.test."), rec(2, "svc.test.")},
			[]string{"svc.test.", "svc3.test.", "svc2.test.", "example.test."}},
		{[]HTTPSRecord{rec(0, "alias.test."), rec(1, ".")}, []string{"example.test."}},
	} {
		if got := HTTPSTargets(tt.recs, host); !slices.Equal(got, tt.want) {
			t.Errorf("#%d: got %q; want %q", i, got, tt.want)
		}
	}
}

// answerMsg builds a response to the HTTPS query of name with id.
func answerMsg(t *testing.T, h dnsmessage.Header, name string, body func(b *dnsmessage.Builder)) []byte {
	t.Helper()
	h.Response = true
	b := dnsmessage.NewBuilder(nil, h)
	require.NoError(t, b.StartQuestions())
	require.NoError(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeHTTPS, Class: dnsmessage.ClassINET}))
	require.NoError(t, b.StartAnswers())
	if body != nil {
		body(&b)
	}
	msg, err := b.Finish()
	require.NoError(t, err)
	return msg
}

// TestParseHTTPSAnswer: the records of the name (through a CNAME), the
// malformed one dropped; no record for NXDOMAIN; the errors.
func TestParseHTTPSAnswer(t *testing.T) {
	const name = "www.example.test."
	hdr := func(owner string) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(owner), Class: dnsmessage.ClassINET, TTL: 60}
	}
	msg := answerMsg(t, dnsmessage.Header{ID: 7}, name, func(b *dnsmessage.Builder) {
		require.NoError(t, b.CNAMEResource(hdr(name), dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("cdn.example.test.")}))
		require.NoError(t, b.HTTPSResource(hdr("cdn.example.test."), dnsmessage.HTTPSResource{SVCBResource: svcb(1, ".", stacktest.ALPNParam("h3"))}))
		require.NoError(t, b.HTTPSResource(hdr("cdn.example.test."), dnsmessage.HTTPSResource{SVCBResource: svcb(2, ".", param(dnsmessage.SVCParamPort, 1))}))
		require.NoError(t, b.HTTPSResource(hdr("unrelated.test."), dnsmessage.HTTPSResource{SVCBResource: svcb(3, ".")}))
	})
	recs, err := ParseHTTPSAnswer(msg, 7, "WWW.example.test")
	require.NoError(t, err)
	require.Equal(t, []HTTPSRecord{{Priority: 1, Target: ".", ALPN: []string{"h3"}}}, recs)

	_, err = ParseHTTPSAnswer(msg, 8, name)
	require.ErrorIs(t, err, errNotOurs, "another ID")
	_, err = ParseHTTPSAnswer(msg, 7, "other.test")
	require.ErrorIs(t, err, errNotOurs, "another question")

	recs, err = ParseHTTPSAnswer(answerMsg(t, dnsmessage.Header{ID: 7, RCode: dnsmessage.RCodeNameError}, name, nil), 7, name)
	require.NoError(t, err)
	require.Empty(t, recs, "NXDOMAIN")

	_, err = ParseHTTPSAnswer(answerMsg(t, dnsmessage.Header{ID: 7, RCode: dnsmessage.RCodeServerFailure}, name, nil), 7, name)
	var de *net.DNSError
	require.ErrorAs(t, err, &de, "SERVFAIL")

	_, err = ParseHTTPSAnswer(answerMsg(t, dnsmessage.Header{ID: 7, Truncated: true}, name, nil), 7, name)
	require.ErrorIs(t, err, errTruncated)

	_, err = ParseHTTPSAnswer(msg[:len(msg)-3], 7, name)
	require.Error(t, err, "cut short")
}

func TestNameservers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	require.NoError(t, os.WriteFile(p, []byte("# c\nsearch x\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver bad\n"), 0o600))
	require.Equal(t, []string{"192.0.2.53:53", "[2001:db8::53]:53"}, nameservers(p))
	require.Equal(t, []string{"127.0.0.1:53", "[::1]:53"}, nameservers(filepath.Join(t.TempDir(), "none")))
}

// TestResolverLookupHTTPS: the records over a real DNS server on the
// loopback (through the Dial of the resolver WithDNSResolver would
// give), the port-prefixed name, no record for a name without any, and
// a query that is never answered ends with ctx.
func TestResolverLookupHTTPS(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	dns.AddHTTPS("svc.example.test", 1, ".", stacktest.ALPNParam("h3"), stacktest.PortParam(8443))
	dns.AddHTTPS("svc.example.test", 2, ".", param(dnsmessage.SVCParamALPN, 9, 'x')) // malformed: dropped
	dns.AddHTTPS("_8443._https.svc.example.test", 1, ".", stacktest.ALPNParam("h2"))
	dns.AddAddr("plain.example.test", netip.MustParseAddr("192.0.2.1"))
	r := Resolver{DNS: dns.Resolver()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	recs, err := r.LookupHTTPS(ctx, "svc.example.test")
	require.NoError(t, err)
	require.Equal(t, []HTTPSRecord{{Priority: 1, Target: ".", ALPN: []string{"h3"}, Port: 8443}}, recs)

	recs, err = r.LookupHTTPS(ctx, HTTPSName("svc.example.test", 8443))
	require.NoError(t, err)
	require.Equal(t, []HTTPSRecord{{Priority: 1, Target: ".", ALPN: []string{"h2"}}}, recs)

	recs, err = r.LookupHTTPS(ctx, "plain.example.test") // NODATA
	require.NoError(t, err)
	require.Empty(t, recs)
	recs, err = r.LookupHTTPS(ctx, "none.example.test") // NXDOMAIN
	require.NoError(t, err)
	require.Empty(t, recs)
	require.Contains(t, dns.Queries(), "HTTPS _8443._https.svc.example.test.")

	// another naming system for addresses and no DNS: no query
	n := len(dns.Queries())
	recs, err = Resolver{LookupNetIP: r.IPLookup()}.LookupHTTPS(ctx, "svc.example.test")
	require.NoError(t, err)
	require.Empty(t, recs)
	require.Len(t, dns.Queries(), n)

	dns.DropHTTPS(true)
	lctx, lcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer lcancel()
	start := time.Now()
	_, err = r.LookupHTTPS(lctx, "svc.example.test")
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	require.Less(t, time.Since(start), HTTPSLookupTimeout, "ctx's end, not the lookup's timeout, ended it")
}

// TestResolverLookupHTTPSTruncatedGoesTCP: a UDP answer with the TC bit
// makes LookupHTTPS ask again over TCP (two-byte length framing), whose
// answer has the records. The server is this test's: UDP truncates
// every answer, TCP answers in full.
func TestResolverLookupHTTPSTruncatedGoesTCP(t *testing.T) {
	const name = "big.example.test."
	answer := func(q []byte, truncated bool) []byte {
		var p dnsmessage.Parser
		h, err := p.Start(q)
		if err != nil {
			return nil
		}
		qu, err := p.Question()
		if err != nil {
			return nil
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Truncated: truncated})
		_ = b.StartQuestions()
		_ = b.Question(qu)
		_ = b.StartAnswers()
		if !truncated {
			_ = b.HTTPSResource(dnsmessage.ResourceHeader{Name: qu.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.HTTPSResource{SVCBResource: svcb(1, ".", stacktest.ALPNParam("h2"))})
		}
		out, _ := b.Finish()
		return out
	}
	uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{}, 2)
	t.Cleanup(func() {
		_ = uc.Close()
		_ = tl.Close()
		<-done
		<-done
	})
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 1500)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = uc.WriteTo(answer(buf[:n], true), from)
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err == nil {
				q := make([]byte, int(l[0])<<8|int(l[1]))
				if _, err := io.ReadFull(c, q); err == nil {
					a := answer(q, false)
					_, _ = c.Write(append([]byte{byte(len(a) >> 8), byte(len(a))}, a...))
				}
			}
			_ = c.Close()
		}
	}()
	var networks []string
	var mu sync.Mutex
	dns := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		mu.Lock()
		networks = append(networks, network)
		mu.Unlock()
		var d net.Dialer
		if network == "tcp" {
			return d.DialContext(ctx, "tcp", tl.Addr().String())
		}
		return d.DialContext(ctx, "udp", uc.LocalAddr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := Resolver{DNS: dns}.LookupHTTPS(ctx, name)
	require.NoError(t, err)
	require.Equal(t, []HTTPSRecord{{Priority: 1, Target: ".", ALPN: []string{"h2"}}}, recs)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"udp", "tcp"}, networks)
}

// FuzzParseHTTPSAnswer: any bytes give records or an error, never a
// panic, and every record given is well-formed (no-default-alpn only
// with alpn ids, none of them empty).
func FuzzParseHTTPSAnswer(f *testing.F) {
	const name = "example.test."
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeHTTPS, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.HTTPSResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET},
		dnsmessage.HTTPSResource{SVCBResource: svcb(1, ".", stacktest.ALPNParam("h3", "h2"), param(dnsmessage.SVCParamNoDefaultALPN),
			stacktest.PortParam(8443), param(dnsmessage.SVCParamIPv4Hint, 192, 0, 2, 1))})
	seed, err := b.Finish()
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		recs, err := ParseHTTPSAnswer(msg, 1, name)
		if err != nil && recs != nil {
			t.Fatalf("records %v with error %v", recs, err)
		}
		for _, r := range recs {
			if r.NoDefaultALPN && len(r.ALPN) == 0 {
				t.Fatalf("no-default-alpn without alpn: %+v", r)
			}
			for _, id := range r.ALPN {
				if id == "" {
					t.Fatalf("empty alpn id: %+v", r)
				}
			}
		}
		target, _ := HTTPSTarget(recs, name)
		_, _ = PlanHTTPS(recs, name, target, []string{"h3", "http/1.1"})
	})
}
