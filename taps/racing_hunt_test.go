package taps

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// localhostResolver resolves only "localhost", to addrs (no DNS query).
func localhostResolver(addrs ...string) func(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, s := range addrs {
			if a := netip.MustParseAddr(s); host == "localhost" && (network == "ip6") == a.Is6() {
				out = append(out, a)
			}
		}
		if len(out) == 0 {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return out, nil
	}
}

// Untested before, correct: a name with an IPv6 and an IPv4 loopback
// address, a listener on 127.0.0.1 only: ::1 goes first and is refused,
// 127.0.0.1 starts at once and wins; the next Initiate tries the cached
// winner first, alone.
func TestRacingLocalhostBothFamilies(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("needs IPv6 loopback:", err)
	} else {
		_ = ln.Close()
	}
	sys := newTestSystem(t)
	live := drainListener(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithResolver(localhostResolver("127.0.0.1", "::1")),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(live.Port())))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	r := c.EstablishmentReport()
	require.Len(t, r.Attempts, 2)
	require.Equal(t, netip.AddrPortFrom(netip.IPv6Loopback(), live.Port()).String(), r.Attempts[0].Endpoint)
	require.NotEmpty(t, r.Attempts[0].Err, "::1 is refused")
	require.Equal(t, live.String(), r.Attempts[1].Endpoint)
	require.True(t, r.Attempts[1].Won)
	require.Less(t, r.Attempts[1].Start, 250*time.Millisecond, "a refused attempt starts the next at once (no 250 ms stagger)")
	c.Abort()
	<-c.Done()

	c, err = pre.Initiate(testCtx(t))
	require.NoError(t, err)
	r = c.EstablishmentReport()
	require.True(t, r.FromCache)
	require.Len(t, r.Attempts, 1)
	require.Equal(t, live.String(), r.Attempts[0].Endpoint)
	c.Abort()
	<-c.Done()
}

// Untested before, correct: when the establishment timeout fires during
// racing, the EstablishmentError (ReasonTimeout) lists every attempt
// started: the refused one with its error, the silent one with
// ErrEstablishmentTimeout.
func TestEstablishmentTimeoutListsAttempts(t *testing.T) {
	sys := newTestSystem(t)
	refused, dead := refusedAddr(t), deadListener(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAttemptDelay(10*time.Millisecond),
		WithEstablishmentTimeout(200*time.Millisecond), WithRemoteEndpoint(remote(refused), remote(dead)))
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonTimeout, ee.Reason)
	require.ErrorIs(t, err, ErrEstablishmentTimeout)
	require.Len(t, ee.Attempts, 2, "%v", err)
	require.Equal(t, refused.String(), ee.Attempts[0].Endpoint)
	require.ErrorIs(t, ee.Attempts[0].Err, syscall.ECONNREFUSED)
	require.Equal(t, dead.String(), ee.Attempts[1].Endpoint)
	require.ErrorIs(t, ee.Attempts[1].Err, ErrEstablishmentTimeout)
}
