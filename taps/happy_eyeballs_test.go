package taps

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// needIPv6Loopback skips a test that needs ::1.
func needIPv6Loopback(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("needs IPv6 loopback (::1), which this host does not have:", err)
	}
	_ = ln.Close()
}

// listenOn6 starts a TCP Listener on [::1] (any port).
func listenOn6(t *testing.T, sys *System) *Listener {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("::1").WithPort(0)))
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(ln.Stop)
	return ln
}

// TestInitiateAAAAFirstStartsIPv6AtOnce: the AAAA answer comes first and
// the A answer 1.5 s later; RFC 8305 §3 starts connecting over IPv6 at
// once, without waiting for the A answer (gotaps used to wait for it).
func TestInitiateAAAAFirstStartsIPv6AtOnce(t *testing.T) {
	needIPv6Loopback(t)
	sys := newTestSystem(t)
	port := listenerAddr(t, listenOn6(t, sys)).Port()
	lookup := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		if network == "ip6" {
			return []netip.Addr{netip.IPv6Loopback()}, nil
		}
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	start := time.Now()
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithResolver(lookup),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("dual.example").WithPort(port))).Initiate(testCtx(t))
	elapsed := time.Since(start)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.Less(t, elapsed, 500*time.Millisecond, "the IPv6 attempt waited for the slow A answer")
	r := c.EstablishmentReport()
	require.Len(t, r.Attempts, 1)
	require.Equal(t, netip.AddrPortFrom(netip.IPv6Loopback(), port).String(), r.Attempts[0].Endpoint)
	require.True(t, r.Attempts[0].Won)
}

// TestInitiateLateAAAAJoinsRace: the A answer comes first and its address
// refuses; the AAAA answer comes 120 ms later, after the resolution delay.
// RFC 8305 §3 lets the late answer join the race: the race waits for it
// and connects over IPv6 (gotaps used to drop it and fail the Initiate).
func TestInitiateLateAAAAJoinsRace(t *testing.T) {
	needIPv6Loopback(t)
	sys := newTestSystem(t)
	port := listenerAddr(t, listenOn6(t, sys)).Port()
	refused := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	l, err := net.Listen("tcp4", refused.String()) // nothing listens there: it refuses
	if err != nil {
		t.Skipf("127.0.0.1:%d is taken, so it may not refuse: %v", port, err)
	}
	require.NoError(t, l.Close())
	lookup := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		if network == "ip4" {
			return []netip.Addr{refused.Addr()}, nil
		}
		select {
		case <-time.After(120 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []netip.Addr{netip.IPv6Loopback()}, nil
	}
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithResolver(lookup),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("dual.example").WithPort(port))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	r := c.EstablishmentReport()
	require.Len(t, r.Attempts, 2)
	require.Equal(t, refused.String(), r.Attempts[0].Endpoint)
	require.NotEmpty(t, r.Attempts[0].Err, "127.0.0.1 is refused")
	require.Equal(t, netip.AddrPortFrom(netip.IPv6Loopback(), port).String(), r.Attempts[1].Endpoint)
	require.True(t, r.Attempts[1].Won)
	require.GreaterOrEqual(t, r.Attempts[1].Start, 120*time.Millisecond, "started when the AAAA answer came")
}

// TestInitiateSlowNameDoesNotHoldBackLiteral: two remote endpoints, a host
// name listed first whose lookups hang until their ctx ends (a resolver
// that answers only at its 5 s timeout), and an IP literal with a live
// listener. The literal is attempted after the resolution delay, without
// waiting for the name (RFC 8305 §3, RFC 9623 §4; gotaps used to wait for
// every remote's first answer): Ready comes well before the lookup's
// timeout, and the lookup is cancelled, not timed out.
func TestInitiateSlowNameDoesNotHoldBackLiteral(t *testing.T) {
	sys := newTestSystem(t)
	live := listenerAddr(t, listenLoopback(t, sys))
	var timedOut, cancelled atomic.Int32
	lookup := func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		select {
		case <-time.After(5 * time.Second):
			timedOut.Add(1)
			return nil, &net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true}
		case <-ctx.Done():
			cancelled.Add(1)
			return nil, ctx.Err()
		}
	}
	start := time.Now()
	c, err := NewPreconnection(WithSystem(sys), WithResolver(lookup),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("slow.example").WithPort(live.Port())),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(live.Port()))).Initiate(testCtx(t))
	elapsed := time.Since(start)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.Less(t, elapsed, 2*time.Second, "the literal's attempt waited for the slow name")
	require.Zero(t, timedOut.Load(), "a lookup ran to its timeout")
	require.EqualValues(t, 2, cancelled.Load(), "both lookups (AAAA and A) were cancelled before Initiate returned")
	r := c.EstablishmentReport()
	require.Len(t, r.Attempts, 1)
	require.Equal(t, live.String(), r.Attempts[0].Endpoint)
	require.True(t, r.Attempts[0].Won)
}
