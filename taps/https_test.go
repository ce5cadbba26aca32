package taps

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

// The tests here resolve over a test DNS server on the loopback
// (stacktest.DNSServer, reached through WithDNSResolver) that serves the
// HTTPS records (RFC 9460) of example.test; the secure listener accepts
// QUIC and TLS on one port of 127.0.0.1.

// httpsPre is a length-prefix Preconnection to example.test:port,
// resolved by dns, whose application speaks HTTP (ALPN h3 and http/1.1,
// and the test listener's gotaps-test), verifying the test certificate
// (localhost).
func httpsPre(sys *System, dns *stacktest.DNSServer, pki *testPKI, port uint16, tp *TransportProperties) *Preconnection {
	if tp == nil {
		tp = NewTransportProperties()
	}
	pre := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithTransportProperties(tp),
		WithSecurityParameters(pki.clientSec().SetServerName("localhost").SetALPN("h3", "http/1.1", "gotaps-test")),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test").WithPort(port)))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// httpsOwner is the name of the HTTPS records of example.test:port.
func httpsOwner(port uint16) string { return fmt.Sprintf("_%d._https.example.test", port) }

// firstAttempt initiates pre and returns the connection's report's first
// attempt and the stack that won.
func firstAttempt(t *testing.T, pre *Preconnection) (Attempt, string) {
	t.Helper()
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	roundTrip(t, c, "over https records")
	r := c.EstablishmentReport()
	require.NotNil(t, r)
	require.NotEmpty(t, r.Attempts)
	return r.Attempts[0], c.GetProperties().Stack
}

// avoidQUIC ranks TLS over TCP first, without records.
func avoidQUIC(t *testing.T) *TransportProperties {
	tp := NewTransportProperties()
	require.NoError(t, tp.Avoid(Multistreaming))
	return tp
}

// TestHTTPSRecordH3TriesQUICFirst: a Preconnection that ranks TLS first
// (multistreaming avoided) tries QUIC first when the name's HTTPS record
// lists only h3 in its alpn (http/1.1 by default: TLS still comes, after);
// without the record it tries TLS first.
func TestHTTPSRecordH3TriesQUICFirst(t *testing.T) {
	pki := newTestPKI(t)
	for _, withRecord := range []bool{false, true} {
		sys := newTestSystem(t)
		ln := secureListener(t, sys, pki.serverSec(), nil)
		port := portOf(t, ln)
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", loopback4)
		want := "tls"
		if withRecord {
			dns.AddHTTPS(httpsOwner(port), 1, ".", stacktest.ALPNParam("h3"))
			want = "quic"
		}
		first, _ := firstAttempt(t, httpsPre(sys, dns, pki, port, avoidQUIC(t)))
		require.Equal(t, want, first.Stack, "record %v", withRecord)
		require.Contains(t, dns.Queries(), "HTTPS "+httpsOwner(port)+".")
	}
}

// TestHTTPSRecordHTTP11TriesTLSFirst: QUIC ranks first by default; an
// HTTPS record whose alpn is http/1.1 alone (no h3) makes TLS go first.
func TestHTTPSRecordHTTP11TriesTLSFirst(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	port := portOf(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.AddHTTPS(httpsOwner(port), 1, ".", stacktest.ALPNParam("http/1.1"))
	first, won := firstAttempt(t, httpsPre(sys, dns, pki, port, nil))
	require.Equal(t, "tls", first.Stack)
	require.Equal(t, "tls", won)
}

// TestHTTPSRecordPortRedirects: the record's port parameter sends the
// stacks it offers to that port: the application's port has nothing
// listening, the record's has the server.
func TestHTTPSRecordPortRedirects(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	dead := refusedAddr(t).Port()
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.AddHTTPS(httpsOwner(dead), 1, ".", stacktest.ALPNParam("h3", "h2"), stacktest.PortParam(portOf(t, ln)))
	c, err := httpsPre(sys, dns, pki, dead, nil).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	roundTrip(t, c, "redirected")
	require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), wonEndpoint(t, c))
	require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), c.EstablishmentReport().Attempts[0].Endpoint)
}

// TestHTTPSAnswerNeverComes: a DNS server that drops HTTPS queries delays
// the first attempt by the resolution delay (50 ms) after the addresses,
// and no more (well short of the HTTPS lookup's own timeout); the
// connection is made as without records (QUIC first by default).
func TestHTTPSAnswerNeverComes(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.DropHTTPS(true)
	first, _ := firstAttempt(t, httpsPre(sys, dns, pki, portOf(t, ln), nil))
	require.Equal(t, "quic", first.Stack)
	require.GreaterOrEqual(t, first.Start, stacks.ResolutionDelay, "the HTTPS answer was waited for")
	require.Less(t, first.Start, stacks.HTTPSLookupTimeout/2, "for the resolution delay only")
}

// TestHTTPSMalformedRecordChangesNothing: records that cannot be used
// (a malformed alpn value, a mandatory ech this client does not do)
// leave the order as without records: TLS first when multistreaming is
// avoided.
func TestHTTPSMalformedRecordChangesNothing(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	port := portOf(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.AddHTTPS(httpsOwner(port), 1, ".", dnsmessage.SVCParam{Key: dnsmessage.SVCParamALPN, Value: []byte{9, 'h', '3'}},
		stacktest.PortParam(1))
	dns.AddHTTPS(httpsOwner(port), 2, ".", dnsmessage.SVCParam{Key: dnsmessage.SVCParamMandatory, Value: []byte{0, 5}},
		stacktest.ALPNParam("h3"), dnsmessage.SVCParam{Key: dnsmessage.SVCParamECH, Value: []byte{1}})
	start := time.Now()
	first, won := firstAttempt(t, httpsPre(sys, dns, pki, port, avoidQUIC(t)))
	require.Equal(t, "tls", first.Stack)
	require.Equal(t, "tls", won)
	require.Equal(t, netip.AddrPortFrom(loopback4, port).String(), first.Endpoint)
	require.Contains(t, dns.Queries(), "HTTPS "+httpsOwner(port)+".")
	require.Less(t, time.Since(start), stacks.HTTPSLookupTimeout)
}

// TestHTTPSHintsStandForLateAddresses: with the A and AAAA answers held
// back, the record's ipv4hint is attempted (a resolution delay after the
// HTTPS answer) before they come.
func TestHTTPSHintsStandForLateAddresses(t *testing.T) {
	const late = 800 * time.Millisecond
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	port := portOf(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.AddHTTPS(httpsOwner(port), 1, ".", stacktest.ALPNParam("h3"),
		dnsmessage.SVCParam{Key: dnsmessage.SVCParamIPv4Hint, Value: loopback4.AsSlice()})
	dns.SetDelay("A", late)
	dns.SetDelay("AAAA", late)
	first, _ := firstAttempt(t, httpsPre(sys, dns, pki, port, avoidQUIC(t)))
	require.Equal(t, "quic", first.Stack)
	require.Equal(t, netip.AddrPortFrom(loopback4, port).String(), first.Endpoint)
	require.GreaterOrEqual(t, first.Start, stacks.ResolutionDelay)
	require.Less(t, first.Start, late, "the hint was attempted before the A answer came")
}

// loopback2 is a loopback address the test listeners are not bound to:
// connections to it are refused.
var loopback2 = netip.MustParseAddr("127.0.0.2")

// TestHTTPSRecordTargetName: a ServiceMode record naming another host
// (svc.example.test) sends the stack it offers (QUIC, h3 alone) to that
// host's addresses first; the name's own address (127.0.0.2, refused)
// comes after it.
func TestHTTPSRecordTargetName(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	port := portOf(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback2)
	dns.AddAddr("svc.example.test", loopback4)
	dns.AddHTTPS(httpsOwner(port), 1, "svc.example.test", stacktest.ALPNParam("h3"),
		dnsmessage.SVCParam{Key: dnsmessage.SVCParamNoDefaultALPN})
	first, won := firstAttempt(t, httpsPre(sys, dns, pki, port, avoidQUIC(t)))
	require.Equal(t, "quic", first.Stack)
	require.Equal(t, "quic", won)
	require.Equal(t, netip.AddrPortFrom(loopback4, port).String(), first.Endpoint)
}

// TestHTTPSAliasFollowedOnce: an AliasMode record (priority 0) is
// followed to its target's HTTPS records, whose "." record names the
// alias target itself: QUIC to its address first. An alias there is not
// followed again: the race goes as without records (TLS first, to the
// name's own address).
func TestHTTPSAliasFollowedOnce(t *testing.T) {
	pki := newTestPKI(t)
	for _, twice := range []bool{false, true} {
		sys := newTestSystem(t)
		ln := secureListener(t, sys, pki.serverSec(), nil)
		port := portOf(t, ln)
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", loopback4)
		dns.AddAddr("alias.example.test", loopback4)
		dns.AddHTTPS(httpsOwner(port), 0, "alias.example.test")
		if twice {
			dns.AddHTTPS("alias.example.test", 0, "again.example.test")
			dns.AddHTTPS("again.example.test", 1, ".", stacktest.ALPNParam("h3"))
		} else {
			dns.AddHTTPS("alias.example.test", 1, ".", stacktest.ALPNParam("h3"))
		}
		first, _ := firstAttempt(t, httpsPre(sys, dns, pki, port, avoidQUIC(t)))
		want := "quic"
		if twice {
			want = "tls"
		}
		require.Equal(t, want, first.Stack, "alias twice %v", twice)
		qs := dns.Queries()
		require.Contains(t, qs, "HTTPS alias.example.test.")
		require.NotContains(t, qs, "HTTPS again.example.test.")
	}
}
