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
		{name: "A first, AAAA too late", aaaa: fakeAnswer{after: 100 * ms, addrs: v6}, a: fakeAnswer{after: 5 * ms, addrs: v4},
			want: v4, wantTime: 55 * ms},
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
