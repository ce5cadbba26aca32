package taps

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// Every test here resolves over real DNS on the loopback: a test DNS
// server (stacktest.DNSServer) that answers the zone example.test, reached
// through WithDNSResolver; no query leaves the machine.

var loopback4 = netip.MustParseAddr("127.0.0.1")

// srvPre is a length-prefix Preconnection to example.test's service svc,
// resolved by dns, over the stacks the options allow.
func srvPre(sys *System, dns *stacktest.DNSServer, svc string, opts ...PreconnectionOption) *Preconnection {
	opts = append([]PreconnectionOption{WithSystem(sys), WithDNSResolver(dns.Resolver()),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test").WithService(svc))}, opts...)
	pre := NewPreconnection(opts...)
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// requireEcho sends one message on c and waits for its echo.
func requireEcho(t *testing.T, c *Connection) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.Send(ctx, []byte("over SRV"), nil))
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "over SRV", string(m.Data))
	m.Release()
}

// wonEndpoint is the endpoint of the attempt that won c's race.
func wonEndpoint(t *testing.T, c *Connection) string {
	t.Helper()
	r := c.EstablishmentReport()
	require.NotNil(t, r)
	for _, a := range r.Attempts {
		if a.Won {
			return a.Endpoint
		}
	}
	t.Fatalf("no attempt won: %+v", r.Attempts)
	return ""
}

func portOf(t *testing.T, ln *Listener) uint16 {
	t.Helper()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	return ap.Port()
}

// TestSRVInitiateEcho: WithHostName("example.test").WithService("echo")
// connects to the target and port of _echo._tcp.example.test (the SRV
// record wins over echo's IANA port 7) and exchanges a message; only the
// "_tcp" name is asked for a TCP-only Preconnection, and only the target
// is attempted, not example.test's own address (127.0.0.2, whose answer
// may come first: it is looked up alongside the SRV records).
func TestSRVInitiateEcho(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 10, 5, portOf(t, ln), "target.example.test")
	dns.AddAddr("target.example.test", loopback4)
	dns.AddAddr("example.test", netip.MustParseAddr("127.0.0.2"))

	c, err := srvPre(sys, dns, "echo", WithProtocols("tcp")).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	requireEcho(t, c)
	require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), wonEndpoint(t, c))
	qs := dns.Queries()
	require.Contains(t, qs, "SRV _echo._tcp.example.test.")
	require.Contains(t, qs, "A target.example.test.")
	require.NotContains(t, qs, "SRV _echo._udp.example.test.", "no UDP stack is selected")
	for _, a := range c.EstablishmentReport().Attempts {
		require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), a.Endpoint,
			"only the SRV target is attempted")
	}
}

// TestSRVPriorityFallback: the target of the lowest priority number goes
// first; when it refuses, the race goes on at once to the next priority's
// target, whatever order the DNS answer lists them in. The failed attempt
// is in the report, with the SRV record's port.
func TestSRVPriorityFallback(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	refused := refusedAddr(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 20, 100, portOf(t, ln), "live.example.test") // listed first
	dns.AddSRV("_echo._tcp.example.test", 10, 0, refused.Port(), "dead.example.test")
	dns.AddAddr("live.example.test", loopback4)
	dns.AddAddr("dead.example.test", loopback4)

	// a Connection Attempt Delay long enough that the second attempt can
	// only start because the first failed
	c, err := srvPre(sys, dns, "echo", WithProtocols("tcp"), WithAttemptDelay(2*time.Second)).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	requireEcho(t, c)
	r := c.EstablishmentReport()
	require.NotNil(t, r)
	require.Len(t, r.Attempts, 2, "%+v", r.Attempts)
	require.Equal(t, refused.String(), r.Attempts[0].Endpoint, "priority 10 first")
	require.False(t, r.Attempts[0].Won)
	require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), r.Attempts[1].Endpoint)
	require.True(t, r.Attempts[1].Won)
	require.Less(t, r.Duration, 2*time.Second, "the fallback did not wait for the attempt delay")
}

// TestSRVEstablishmentErrorListsTargets: when every SRV target fails,
// the EstablishmentError lists an attempt per target address, with its
// record's port, in priority order.
func TestSRVEstablishmentErrorListsTargets(t *testing.T) {
	sys := newTestSystem(t)
	a, b := refusedAddr(t), refusedAddr(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 2, 0, b.Port(), "b.example.test")
	dns.AddSRV("_echo._tcp.example.test", 1, 0, a.Port(), "a.example.test")
	dns.AddAddr("a.example.test", loopback4)
	dns.AddAddr("b.example.test", loopback4)

	_, err := srvPre(sys, dns, "echo", WithProtocols("tcp")).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Len(t, ee.Attempts, 2, "%v", err)
	require.Equal(t, a.String(), ee.Attempts[0].Endpoint)
	require.Equal(t, b.String(), ee.Attempts[1].Endpoint)
	require.Equal(t, "tcp", ee.Attempts[0].Stack)
}

// TestSRVTargetDotIsServiceUnavailable: a single SRV target "." says the
// service is not available at example.test: Initiate fails with an
// EstablishmentError (ResolutionFailed) wrapping ErrServiceUnavailable,
// with no attempt (the IANA port is not tried, though the host name's
// addresses, looked up alongside the SRV records, are known).
func TestSRVTargetDotIsServiceUnavailable(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_http._tcp.example.test", 0, 0, 0, ".")
	dns.AddAddr("example.test", loopback4)

	_, err := srvPre(sys, dns, "http", WithProtocols("tcp")).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, ErrServiceUnavailable)
	require.Equal(t, ReasonResolutionFailed, ee.Reason, "%v", err)
	require.Empty(t, ee.Attempts)
	var re *stacks.ResolveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "_http._tcp.example.test", re.Host)
	require.Contains(t, dns.Queries(), "SRV _http._tcp.example.test.")
}

// TestSRVFallbackToIANAPort: without SRV records the host name is
// resolved and attempted with the service's IANA port (http: 80), as
// before SRV; a service with no IANA port and no SRV record is a
// resolution failure, with no attempt.
func TestSRVFallbackToIANAPort(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	want := netip.AddrPortFrom(loopback4, 80).String()

	c, err := srvPre(sys, dns, "http", WithProtocols("tcp")).Initiate(testCtx(t))
	if err == nil { // something listens on 127.0.0.1:80 on this host
		require.Equal(t, want, wonEndpoint(t, c))
		c.Abort()
	} else {
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.NotEmpty(t, ee.Attempts, "%v", err)
		for _, a := range ee.Attempts {
			require.Equal(t, want, a.Endpoint, "%v", err)
		}
	}
	require.Contains(t, dns.Queries(), "SRV _http._tcp.example.test.")
	require.Contains(t, dns.Queries(), "A example.test.")

	_, err = srvPre(sys, dns, "gotaps-nosvc", WithProtocols("tcp")).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonResolutionFailed, ee.Reason, "%v", err)
	require.Empty(t, ee.Attempts)
	var de *net.DNSError
	require.ErrorAs(t, err, &de, "%v", err)
	require.True(t, de.IsNotFound)
	require.ErrorContains(t, err, "not an IANA service name")
	require.ErrorIs(t, err, ErrNoServicePort)
	var se *stacks.ServiceError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "gotaps-nosvc", se.Service)
	require.Equal(t, "example.test", se.Host)

	// an IP address with a service name only has its IANA port: no SRV
	_, err = NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService("gotaps-nosvc"))).Initiate(testCtx(t))
	require.ErrorIs(t, err, ErrInvalidEndpoint)
}

// TestSRVExplicitPortWins: WithPort with WithService: the port is used,
// and no SRV record is looked up.
func TestSRVExplicitPortWins(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 0, 0, 0, ".")
	dns.AddAddr("example.test", loopback4)
	pre := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test").WithService("echo").WithPort(portOf(t, ln))))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	requireEcho(t, c)
	for _, q := range dns.Queries() {
		require.False(t, strings.HasPrefix(q, "SRV "), "no SRV query: %v", dns.Queries())
	}
}

// TestSRVQUICUsesUDPRecords: QUIC is attempted at the targets of
// _service._udp (QUIC runs over UDP), never at the "_tcp" ones; the
// server's certificate is verified against the name the application
// gave, not the SRV target's (here overridden to the test PKI's).
func TestSRVQUICUsesUDPRecords(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), quicOnly(t))
	tcpRefused := refusedAddr(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._udp.example.test", 1, 0, portOf(t, ln), "quic.example.test")
	dns.AddSRV("_echo._tcp.example.test", 1, 0, tcpRefused.Port(), "tcp.example.test")
	dns.AddAddr("quic.example.test", loopback4)
	dns.AddAddr("tcp.example.test", loopback4)

	c, err := srvPre(sys, dns, "echo", WithTransportProperties(quicOnly(t)),
		WithSecurityParameters(pki.clientSec().SetServerName("localhost"))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	requireEcho(t, c)
	r := c.EstablishmentReport()
	require.NotNil(t, r)
	for _, a := range r.Attempts {
		require.Equal(t, "quic", a.Stack)
		require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), a.Endpoint)
	}
	qs := dns.Queries()
	require.Contains(t, qs, "SRV _echo._udp.example.test.")
	require.NotContains(t, qs, "SRV _echo._tcp.example.test.", "no TCP stack is selected")
}

// TestSRVTLSVerifiesTheGivenName: a TLS attempt to an SRV target verifies
// the certificate against the host name the application gave
// (example.test), not the target's name (localhost, which the test
// certificate is for): the handshake fails on the name.
func TestSRVTLSVerifiesTheGivenName(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), tlsOnlyProps(t))
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 1, 0, portOf(t, ln), "tls.example.test")
	dns.AddAddr("tls.example.test", loopback4)

	_, err := srvPre(sys, dns, "echo", WithTransportProperties(tlsOnlyProps(t)),
		WithSecurityParameters(pki.clientSec())).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorContains(t, err, "example.test")
	require.True(t, slices.ContainsFunc(ee.Attempts, func(a AttemptError) bool {
		return a.Endpoint == netip.AddrPortFrom(loopback4, portOf(t, ln)).String()
	}), "%v", err)
}

// TestSRVLocalServiceNoSRV: a LocalEndpoint's service is its IANA port;
// no SRV record is looked up for it.
func TestSRVLocalServiceNoSRV(t *testing.T) {
	m, err := NewLocalEndpoint().WithHostName("example.test").WithService("http").e.toMessage(false, false)
	require.NoError(t, err)
	require.EqualValues(t, 80, m.Port)
	_, err = NewLocalEndpoint().WithHostName("example.test").WithService("gotaps-nosvc").e.toMessage(false, false)
	require.ErrorIs(t, err, ErrInvalidEndpoint)
}

// TestSRVWithResolverResolvesTargets: WithResolver replaces the A and
// AAAA lookups only: the SRV records still come from WithDNSResolver's
// resolver, and their targets are resolved by the lookup function.
func TestSRVWithResolverResolvesTargets(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 1, 0, portOf(t, ln), "private.example.test") // no address in DNS
	var asked []string
	var mu sync.Mutex
	lookup := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		mu.Lock()
		asked = append(asked, network+" "+host)
		mu.Unlock()
		if network == "ip4" && strings.TrimSuffix(host, ".") == "private.example.test" {
			return []netip.Addr{loopback4}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	c, err := srvPre(sys, dns, "echo", WithProtocols("tcp"), WithResolver(lookup)).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	requireEcho(t, c)
	require.Contains(t, dns.Queries(), "SRV _echo._tcp.example.test.")
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, asked, "ip4 private.example.test.")
}

// TestSRVNotForDialer: a NetConn dial to "host:service" means the
// service's IANA port, as net.Dial has it: no SRV record is looked up.
func TestSRVNotForDialer(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 1, 0, portOf(t, ln), "target.example.test")
	dns.AddAddr("target.example.test", loopback4)
	dns.AddAddr("example.test", loopback4)
	pre := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"))
	c, err := Dialer(pre)(testCtx(t), "tcp", "example.test:echo")
	if err == nil { // something listens on 127.0.0.1:7 on this host
		require.Equal(t, "127.0.0.1:7", c.RemoteAddr().String())
		c.Close()
	} else {
		require.ErrorContains(t, err, "127.0.0.1:7", "the IANA port is attempted")
	}
	require.Contains(t, dns.Queries(), "A example.test.")
	for _, q := range dns.Queries() {
		require.False(t, strings.HasPrefix(q, "SRV "), "no SRV query: %v", dns.Queries())
	}
}

// TestSRVLookupConcurrentWithHostName: the SRV query and the host name's
// A/AAAA queries go out together, so that a service without SRV records
// (the common case) costs no DNS round trip more than a plain host name:
// with every answer held back 300 ms, Initiate ends (Ready, or an
// EstablishmentError listing the IANA port's attempts) well before the
// 600 ms of the two round trips in a row. With SRV records held back
// 300 ms, the host name's addresses, in first, are attempted with the
// service's IANA port once the SRV answer has been waited for 50 ms (the
// resolution delay; echo: 7, at 127.0.0.2, where nothing listens), and
// the SRV target, in later, joins the race and wins.
func TestSRVLookupConcurrentWithHostName(t *testing.T) {
	const delay = 300 * time.Millisecond
	t.Run("no SRV record", func(t *testing.T) {
		sys := newTestSystem(t)
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", loopback4)
		for _, typ := range []string{"SRV", "A", "AAAA"} {
			dns.SetDelay(typ, delay)
		}
		// a rooted name: no resolv.conf search domain adds a round trip
		pre := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test.").WithService("http")))
		start := time.Now()
		c, err := pre.Initiate(testCtx(t))
		took := time.Since(start)
		want := netip.AddrPortFrom(loopback4, 80).String()
		if err == nil { // something listens on 127.0.0.1:80 on this host
			require.Equal(t, want, wonEndpoint(t, c))
			c.Abort()
		} else {
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.NotEmpty(t, ee.Attempts, "%v", err)
			require.Equal(t, want, ee.Attempts[0].Endpoint, "%v", err)
		}
		require.Contains(t, dns.Queries(), "SRV _http._tcp.example.test.")
		require.Less(t, took, 2*delay-50*time.Millisecond, "the A/AAAA queries waited for the SRV answer")
	})
	t.Run("SRV records", func(t *testing.T) {
		sys := newTestSystem(t)
		ln := listenLoopback(t, sys, framers.NewLengthPrefix())
		echoServer(t, ln)
		dns := stacktest.NewDNSServer(t)
		dns.AddAddr("example.test", netip.MustParseAddr("127.0.0.2"))
		dns.AddSRV("_echo._tcp.example.test", 1, 0, portOf(t, ln), "target.example.test")
		dns.AddAddr("target.example.test", loopback4)
		dns.SetDelay("SRV", delay)
		c, err := srvPre(sys, dns, "echo", WithProtocols("tcp")).Initiate(testCtx(t))
		require.NoError(t, err)
		defer c.Abort()
		requireEcho(t, c)
		fallback := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 7).String()
		won := wonEndpoint(t, c)
		if won == fallback {
			t.Skip("something listens on 127.0.0.2:7 on this host: the fallback won")
		}
		require.Equal(t, netip.AddrPortFrom(loopback4, portOf(t, ln)).String(), won)
		as := c.EstablishmentReport().Attempts
		require.Len(t, as, 2, "%+v", as)
		require.Equal(t, fallback, as[0].Endpoint, "the fallback is attempted before the SRV answer: %+v", as)
	})
}

// TestSRVNoIANAPortNeedsAnSRVName: a service with no IANA port has its
// port from SRV records alone, so a host name whose SRV records are never
// looked up (an IP literal, "localhost" or a name under it: RFC 6761
// §6.3) leaves it no port: Initiate fails with ErrInvalidEndpoint before
// any packet, as for an IP address, instead of attempting port 0.
func TestSRVNoIANAPortNeedsAnSRVName(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	for _, h := range []string{"localhost", "a.localhost.", "127.0.0.1", "::1"} {
		_, err := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName(h).WithService("gotaps-nosvc"))).Initiate(testCtx(t))
		require.ErrorIs(t, err, ErrInvalidEndpoint, "%s", h)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee, "%s", h)
		require.Empty(t, ee.Attempts, "%s: %v", h, err)
	}
	require.Empty(t, dns.Queries())
}

// TestEstablishmentErrorNamesUnresolvedRemote: of two remote endpoints,
// one name that does not resolve and one address that refuses, the
// EstablishmentError lists the refused attempt and unwraps to the name's
// resolution failure too (a *stacks.ResolveError naming it, wrapping the
// *net.DNSError), so that the application learns why nothing was tried
// there; its reason stays EstablishmentFailed (an attempt was made).
func TestEstablishmentErrorNamesUnresolvedRemote(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	refused := refusedAddr(t)
	_, err := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("nx.example.test").WithPort(refused.Port())),
		WithRemoteEndpoint(remote(refused))).Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Len(t, ee.Attempts, 1, "%v", err)
	require.Equal(t, refused.String(), ee.Attempts[0].Endpoint)
	require.Equal(t, ReasonEstablishmentFailed, ee.Reason, "%v", err)
	var re *stacks.ResolveError
	require.ErrorAs(t, err, &re, "%v", err)
	require.Equal(t, "nx.example.test", re.Host)
	var de *net.DNSError
	require.ErrorAs(t, err, &de)
	require.True(t, de.IsNotFound)
	require.ErrorContains(t, err, "nx.example.test")
}

// TestSRVLookupEndsWithInitiatesCtx: Initiate's ctx ending while the SRV
// and A/AAAA answers are held back (1 s) ends the Initiate at once with
// ReasonTimeout, no attempt, and no lookup left running (the package's
// goleak check).
func TestSRVLookupEndsWithInitiatesCtx(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	for _, typ := range []string{"SRV", "A", "AAAA"} {
		dns.SetDelay(typ, time.Second)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := srvPre(sys, dns, "http", WithProtocols("tcp")).Initiate(ctx)
	took := time.Since(start)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason, "%v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, ee.Attempts)
	require.Less(t, took, 900*time.Millisecond, "Initiate waited for the DNS answers")
}

// TestSRVRaceCacheKeyHasTheService: the race cache keys an Initiate by
// its remote endpoints' services too. A service's IANA port is the
// endpoint's port ("https": 443), so example.test with the service https
// (its SRV target, the listener) and example.test with the explicit port
// 443 (its own addresses) had one key though their candidates differ: the
// second found the first's winner among none of its candidates and, its
// AAAA answer in and its A answer pending, held its race the resolution
// delay (50 ms) for that winner's address, which could never come.
func TestSRVRaceCacheKeyHasTheService(t *testing.T) {
	var started sync.Map // remote -> time of its first AttemptStarted
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "candidate" && r.Event == "AttemptStarted" {
			started.LoadOrStore(r.Remote, time.Unix(0, r.TimeUnixNano))
		}
	}))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_https._tcp.example.test", 10, 5, portOf(t, ln), "target.example.test")
	dns.AddAddr("target.example.test", loopback4)
	// nothing listens on their port 443
	dns.AddAddr("example.test", netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.2"))
	for range 2 {
		c, err := srvPre(sys, dns, "https", WithProtocols("tcp")).Initiate(testCtx(t))
		require.NoError(t, err)
		requireEcho(t, c)
		c.Abort()
		<-c.Done()
	}
	dns.SetDelay("A", 300*time.Millisecond)
	pre := NewPreconnection(WithSystem(sys), WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test").WithPort(443)))
	begin := time.Now()
	if c, err := pre.Initiate(testCtx(t)); err == nil { // something listens on [::1]:443 here
		c.Abort()
		<-c.Done()
	}
	at, ok := started.Load("[::1]:443")
	require.True(t, ok, "[::1]:443 was attempted")
	require.Less(t, at.(time.Time).Sub(begin), stacks.ResolutionDelay,
		"the AAAA answer's address is attempted at once: no other endpoint's winner is waited for")
}

// TestSRVDroppedSRVAnswer: a DNS server that never answers SRV queries
// does not hold Initiate back for the resolver's timeout (5 s per
// attempt): once the host name's addresses are in, the SRV answer is
// waited for 50 ms at most (the resolution delay), then the host name is
// attempted with the service's IANA port (echo: 7; example.test is
// 127.0.0.2, where nothing listens). With Initiate's ctx ending after
// 1 s, that attempt is made, not none at all; its refusal does not end
// the race while the SRV answer is pending.
func TestSRVDroppedSRVAnswer(t *testing.T) {
	fallback := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 7).String()
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", netip.MustParseAddr("127.0.0.2"))
	dns.Drop("SRV")
	ctx, cancel := context.WithTimeout(testCtx(t), time.Second)
	defer cancel()
	c, err := srvPre(sys, dns, "echo", WithProtocols("tcp")).Initiate(ctx)
	if err == nil { // something listens on 127.0.0.2:7 on this host
		defer c.Abort()
		require.Equal(t, fallback, wonEndpoint(t, c))
		return
	}
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.NotEmpty(t, ee.Attempts, "no attempt before the SRV lookup's timeout: %v", err)
	require.Equal(t, fallback, ee.Attempts[0].Endpoint, "%v", err)
	require.Contains(t, dns.Queries(), "SRV _echo._tcp.example.test.")
}

// TestSRVAddRemoteServiceWithoutIANAPort: Connection.AddRemote takes a
// host name with a service that has no IANA port, as Initiate does (its
// port comes from the SRV records), and the connection's re-establishment
// goes to the SRV target; RemoveRemote takes it too. Where no SRV record
// is ever looked up (an IP address, localhost) such a service leaves no
// port: AddRemote refuses it with ErrInvalidEndpoint, naming the service.
func TestSRVAddRemoteServiceWithoutIANAPort(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_gotaps-nosvc._tcp.example.test", 1, 0, b.addr.Port(), "target.example.test")
	dns.AddAddr("target.example.test", loopback4)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithDNSResolver(dns.Resolver()), WithProtocols("tcp"),
		WithReestablishment(ReestablishPolicy{Initial: 10 * time.Millisecond, MaxAttempts: 5})}, a.remote())
	_, reestablished := epReestablishEvents(c)
	epEcho(t, ctx, c, "to a")

	srv := NewRemoteEndpoint().WithHostName("example.test").WithService("gotaps-nosvc")
	other := NewRemoteEndpoint().WithHostName("example.test").WithService("gotaps-other")
	require.NoError(t, c.AddRemote(ctx, srv, other))
	require.Equal(t, []string{a.addr.String(), "example.test:gotaps-nosvc", "example.test:gotaps-other"}, epRemotes(t, ctx, c))
	require.NoError(t, c.RemoveRemote(ctx, other), "another service of the same host name is another endpoint")
	require.Equal(t, []string{a.addr.String(), "example.test:gotaps-nosvc"}, epRemotes(t, ctx, c))
	for _, bad := range []*RemoteEndpoint{
		NewRemoteEndpoint().WithHostName("localhost").WithService("gotaps-nosvc"),
		NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService("gotaps-nosvc"),
	} {
		err := c.AddRemote(ctx, bad)
		require.ErrorIs(t, err, ErrInvalidEndpoint)
		require.ErrorIs(t, err, ErrNoServicePort)
		var se *stacks.ServiceError
		require.ErrorAs(t, err, &se)
		require.Equal(t, "gotaps-nosvc", se.Service)
		require.ErrorContains(t, err, `"gotaps-nosvc"`)
	}

	a.goAway()
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	b.next(t, ctx)
	epEcho(t, ctx, c, "to b, found over SRV")
	require.Contains(t, dns.Queries(), "SRV _gotaps-nosvc._tcp.example.test.")
}

// TestSRVResolve: Preconnection.Resolve derives a service's endpoints
// from its SRV records as Initiate does: one RemoteEndpoint per address
// of each target, with its record's port, in RFC 2782 order (priority
// first); without records, the host name's addresses with the IANA port;
// a service with neither fails with a *stacks.ServiceError naming it. With
// stacks over both TCP and UDP selected (TLS and QUIC), each endpoint
// names the stack it is for (the "_tcp" targets TLS, the "_udp" ones
// QUIC), so that an Initiate to them pairs each with its transport.
func TestSRVResolve(t *testing.T) {
	sys := newTestSystem(t)
	dns := stacktest.NewDNSServer(t)
	dns.AddAddr("example.test", loopback4)
	dns.AddSRV("_echo._tcp.example.test", 2, 0, 2002, "b.example.test")
	dns.AddSRV("_echo._tcp.example.test", 1, 0, 1001, "a.example.test")
	dns.AddSRV("_echo._udp.example.test", 1, 0, 3003, "c.example.test")
	dns.AddAddr("a.example.test", netip.MustParseAddr("127.0.0.2"))
	dns.AddAddr("b.example.test", netip.MustParseAddr("127.0.0.3"))
	dns.AddAddr("c.example.test", netip.MustParseAddr("127.0.0.4"))
	ctx := testCtx(t)
	labels := func(rs []*RemoteEndpoint) []string {
		var out []string
		for _, r := range rs {
			r.e.mu.Lock()
			l := r.e.label()
			if r.e.protocol != "" {
				l += "/" + r.e.protocol
			}
			r.e.mu.Unlock()
			out = append(out, l)
		}
		return out
	}

	_, rs, err := srvPre(sys, dns, "echo", WithProtocols("tcp")).Resolve(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.2:1001", "127.0.0.3:2002"}, labels(rs))

	_, rs, err = srvPre(sys, dns, "echo", WithProtocols("tls", "quic"),
		WithSecurityParameters(newTestPKI(t).clientSec())).Resolve(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.4:3003/quic", "127.0.0.2:1001/tls", "127.0.0.3:2002/tls"}, labels(rs),
		"QUIC, preferred, first")

	_, rs, err = srvPre(sys, dns, "http", WithProtocols("tcp")).Resolve(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:80"}, labels(rs), "no SRV record: the IANA port")

	_, _, err = srvPre(sys, dns, "gotaps-nosvc", WithProtocols("tcp")).Resolve(ctx)
	require.ErrorIs(t, err, ErrNoServicePort)
	var se *stacks.ServiceError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "gotaps-nosvc", se.Service)
}

// TestSRVRendezvousServiceWithoutIANAPort: a Rendezvous' remote endpoint
// takes only a service's IANA port (no SRV lookup, WithService's doc): a
// service with none is an *EndpointError wrapping a *stacks.ServiceError
// before any packet. Before, the Rendezvous converted its remotes as
// Initiate does and went on with port 0.
func TestSRVRendezvousServiceWithoutIANAPort(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithSecurityParameters(NewDisabledSecurityParameters()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("example.test").WithService("gotaps-nosvc")))
	_, err := pre.Rendezvous(testCtx(t))
	require.ErrorIs(t, err, ErrInvalidEndpoint)
	require.ErrorIs(t, err, ErrNoServicePort)
	var se *stacks.ServiceError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "gotaps-nosvc", se.Service)
}
