package stacks

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeAnswer is one family's answer: after a delay, addresses or an error.
type fakeAnswer struct {
	after time.Duration
	addrs []string
	err   error
}

func fakeLookup(aaaa, a fakeAnswer) func(context.Context, string, string) ([]netip.Addr, error) {
	return func(ctx context.Context, network, _ string) ([]netip.Addr, error) {
		ans := a
		if network == "ip6" {
			ans = aaaa
		} else if network != "ip4" {
			return nil, errors.New("unexpected network " + network)
		}
		t := time.NewTimer(ans.after)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		var out []netip.Addr
		for _, s := range ans.addrs {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, ans.err
	}
}

// TestResolveHappyEyeballs: Resolve gives every address, in the order to
// attempt them, once both answers are in.
func TestResolveHappyEyeballs(t *testing.T) {
	ms := time.Millisecond
	errNX := errors.New("no such host")
	v6 := []string{"2001:db8::1", "2001:db8::2"}
	v4 := []string{"192.0.2.1", "192.0.2.2"}
	tests := []struct {
		name       string
		aaaa, a    fakeAnswer
		unroutable bool
		want       []string
		wantTime   time.Duration
		wantErr    bool
	}{
		{name: "both at once, interleaved from IPv6", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{addrs: v4},
			want: []string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}},
		{name: "A first, AAAA within the resolution delay", aaaa: fakeAnswer{after: 40 * ms, addrs: v6}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: []string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}, wantTime: 40 * ms},
		{name: "A first, AAAA after the resolution delay is waited for", aaaa: fakeAnswer{after: 100 * ms, addrs: v6}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: []string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}, wantTime: 100 * ms},
		{name: "AAAA first, A later is waited for", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{after: 200 * ms, addrs: v4},
			want: []string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}, wantTime: 200 * ms},
		{name: "negative A first does not start the delay", aaaa: fakeAnswer{after: 100 * ms, addrs: v6}, a: fakeAnswer{err: errNX},
			want: v6, wantTime: 100 * ms},
		{name: "AAAA fails", aaaa: fakeAnswer{err: errNX}, a: fakeAnswer{after: 5 * ms, addrs: v4}, want: v4, wantTime: 5 * ms},
		{name: "no route to IPv6: IPv4 first", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{addrs: v4}, unroutable: true,
			want: []string{"192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"}},
		{name: "duplicates and mapped addresses", aaaa: fakeAnswer{addrs: []string{"2001:db8::1", "2001:db8::1", "::ffff:192.0.2.1"}}, a: fakeAnswer{addrs: []string{"192.0.2.1", "192.0.2.1"}},
			want: []string{"2001:db8::1", "192.0.2.1"}},
		{name: "both fail", aaaa: fakeAnswer{err: errNX}, a: fakeAnswer{err: errNX}, wantErr: true},
		{name: "both empty", aaaa: fakeAnswer{}, a: fakeAnswer{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := Resolver{LookupNetIP: fakeLookup(tt.aaaa, tt.a), Routable: func(netip.Addr) bool { return !tt.unroutable }}
				start := time.Now()
				got, err := r.Resolve(context.Background(), "example.org")
				if tt.wantErr {
					var re *ResolveError
					require.ErrorAs(t, err, &re)
					require.Equal(t, "example.org", re.Host)
					require.NotContains(t, err.Error(), "\n", "one line")
					if tt.aaaa.err != nil {
						require.ErrorIs(t, err, tt.aaaa.err)
						require.Equal(t, 1, strings.Count(err.Error(), tt.aaaa.err.Error()), "both families failed alike: said once")
					}
					return
				}
				require.NoError(t, err)
				var gotS []string
				for _, a := range got {
					gotS = append(gotS, a.String())
				}
				require.Equal(t, tt.want, gotS)
				require.Equal(t, tt.wantTime, time.Since(start))
			})
		})
	}
}

// TestResolutionStart: when connecting starts, from the answers in so far
// (RFC 8305 §3).
func TestResolutionStart(t *testing.T) {
	P, N, W := answerPositive, answerNegative, answerPending
	tests := []struct {
		preferred, other answerState
		delayOver        bool
		start, arm       bool
	}{
		{preferred: W, other: W},
		{preferred: P, other: W, start: true},
		{preferred: P, other: N, start: true},
		{preferred: P, other: P, start: true},
		{preferred: W, other: P, arm: true},
		{preferred: W, other: P, delayOver: true, start: true},
		{preferred: N, other: P, start: true},
		{preferred: W, other: N},
		{preferred: N, other: W},
		{preferred: N, other: N},
	}
	for i, tt := range tests {
		start, arm := resolutionStart(tt.preferred, tt.other, tt.delayOver)
		if start != tt.start || arm != tt.arm {
			t.Errorf("#%d: resolutionStart(%d, %d, %v) = %v, %v; want %v, %v", i, tt.preferred, tt.other, tt.delayOver,
				start, arm, tt.start, tt.arm)
		}
	}
}

// TestResolveStream: the yields of a streaming resolution, in fake time:
// a positive AAAA answer goes out at once, a positive A answer first waits
// for the AAAA answer at most ResolutionDelay, and a later answer is
// yielded when it comes (every address known so far, interleaved).
func TestResolveStream(t *testing.T) {
	ms := time.Millisecond
	errNX := errors.New("no such host")
	v6 := []string{"2001:db8::1", "2001:db8::2"}
	v4 := []string{"192.0.2.1", "192.0.2.2"}
	both := []string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"}
	type yield struct {
		at    time.Duration
		addrs []string
		final bool
	}
	tests := []struct {
		name       string
		aaaa, a    fakeAnswer
		unroutable bool
		want       []yield
	}{
		{name: "AAAA first starts at once, A joins", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{after: 200 * ms, addrs: v4},
			want: []yield{{0, v6, false}, {200 * ms, both, true}}},
		{name: "A first waits the resolution delay, late AAAA joins", aaaa: fakeAnswer{after: 120 * ms, addrs: v6}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: []yield{{55 * ms, v4, false}, {120 * ms, both, true}}},
		{name: "A first, AAAA within the resolution delay", aaaa: fakeAnswer{after: 30 * ms, addrs: v6}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: []yield{{30 * ms, both, true}}},
		{name: "A first, AAAA negative within the delay", aaaa: fakeAnswer{after: 20 * ms, err: errNX}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: []yield{{20 * ms, v4, true}}},
		{name: "A first, late AAAA negative ends the stream", aaaa: fakeAnswer{after: 300 * ms, err: errNX}, a: fakeAnswer{addrs: v4},
			want: []yield{{50 * ms, v4, false}, {300 * ms, v4, true}}},
		{name: "AAAA first, A negative", aaaa: fakeAnswer{after: 10 * ms, addrs: v6}, a: fakeAnswer{after: 40 * ms, err: errNX},
			want: []yield{{10 * ms, v6, false}, {40 * ms, v6, true}}},
		{name: "negative AAAA first waits for A without delay", aaaa: fakeAnswer{err: errNX}, a: fakeAnswer{after: 300 * ms, addrs: v4},
			want: []yield{{300 * ms, v4, true}}},
		{name: "unroutable AAAA first waits the resolution delay for A", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{after: 200 * ms, addrs: v4},
			unroutable: true,
			want:       []yield{{50 * ms, v6, false}, {200 * ms, []string{"192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"}, true}}},
		{name: "unroutable AAAA first, A within the delay goes first", aaaa: fakeAnswer{addrs: v6}, a: fakeAnswer{after: 20 * ms, addrs: v4},
			unroutable: true,
			want:       []yield{{20 * ms, []string{"192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"}, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := Resolver{LookupNetIP: fakeLookup(tt.aaaa, tt.a), Routable: func(netip.Addr) bool { return !tt.unroutable }}
				start := time.Now()
				var got []yield
				err := r.ResolveStream(context.Background(), "example.org", func(addrs []netip.Addr, final bool) {
					y := yield{at: time.Since(start), final: final}
					for _, a := range addrs {
						y.addrs = append(y.addrs, a.String())
					}
					got = append(got, y)
				})
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
			})
		})
	}
}

// TestResolveStreamCancelAfterFirstYield: ctx ending while an answer is
// pending ends the stream at once, with no further yield and no lookup
// left running.
func TestResolveStreamCancelAfterFirstYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r := Resolver{LookupNetIP: fakeLookup(fakeAnswer{addrs: []string{"2001:db8::1"}}, fakeAnswer{after: time.Hour})}
		yields := 0
		err := r.ResolveStream(ctx, "example.org", func([]netip.Addr, bool) {
			yields++
			cancel()
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 1, yields)
	})
}

func TestResolveLiteralAndCancel(t *testing.T) {
	got, err := Resolver{}.Resolve(context.Background(), "::ffff:127.0.0.1")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, got)

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r := Resolver{LookupNetIP: fakeLookup(fakeAnswer{after: time.Hour}, fakeAnswer{after: time.Hour})}
		_, err := r.Resolve(ctx, "example.org")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestResolveLocalhost(t *testing.T) {
	got, err := Resolver{}.Resolve(context.Background(), "localhost")
	require.NoError(t, err)
	require.NotEmpty(t, got)
	for _, a := range got {
		require.True(t, a.IsLoopback(), "%v", a)
	}
}

func TestHasRouteLoopback(t *testing.T) {
	require.True(t, hasRoute(netip.MustParseAddr("127.0.0.1")))
}
