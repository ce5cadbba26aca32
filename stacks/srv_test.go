package stacks

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestOrderSRV: RFC 2782's order, priority first, weighted random
// selection within a priority, with the draws given.
func TestOrderSRV(t *testing.T) {
	rec := func(target string, prio, weight uint16) *net.SRV {
		return &net.SRV{Target: target, Priority: prio, Weight: weight, Port: 1}
	}
	tests := []struct {
		name  string
		recs  []*net.SRV
		draws []int // randN's answers, in order (each checked to be < n)
		want  []string
	}{
		{"empty", nil, nil, []string{}},
		{"priority lowest first", []*net.SRV{rec("c", 30, 0), rec("a", 10, 0), rec("b", 20, 0)}, nil,
			[]string{"a", "b", "c"}},
		{"all weights 0 keep their order, no draw", []*net.SRV{rec("a", 1, 0), rec("b", 1, 0)}, nil,
			[]string{"a", "b"}},
		// weights 1 and 3: sums 1, 4; a draw of 0 or 1 picks a, 2..4 picks b
		{"draw 1 picks the first", []*net.SRV{rec("a", 1, 1), rec("b", 1, 3)}, []int{1}, []string{"a", "b"}},
		{"draw 2 picks the second", []*net.SRV{rec("a", 1, 1), rec("b", 1, 3)}, []int{2}, []string{"b", "a"}},
		{"draw 4 (the sum) picks the last", []*net.SRV{rec("a", 1, 1), rec("b", 1, 3)}, []int{4}, []string{"b", "a"}},
		// weight 0 goes first in the list: picked by a draw of 0 only
		{"zero weight on a draw of 0", []*net.SRV{rec("a", 1, 5), rec("z", 1, 0)}, []int{0}, []string{"z", "a"}},
		{"zero weight after the others", []*net.SRV{rec("a", 1, 5), rec("z", 1, 0)}, []int{3}, []string{"a", "z"}},
		// three of one priority, then one of another: draws per pick
		{"three weighted then the next priority",
			[]*net.SRV{rec("low", 2, 9), rec("x", 1, 10), rec("y", 1, 20), rec("z", 1, 30)},
			[]int{45, 25}, // 60 total: 45 > 10+20 picks z; then 30 total: 25 > 10 picks y
			[]string{"z", "y", "x", "low"}},
		{"nil records dropped", []*net.SRV{nil, rec("a", 1, 0)}, nil, []string{"a"}},
	}
	for i, tt := range tests {
		in := append([]*net.SRV(nil), tt.recs...)
		draws := tt.draws
		got := OrderSRV(tt.recs, func(n int) int {
			require.NotEmpty(t, draws, "#%d %s: a draw more than expected", i, tt.name)
			d := draws[0]
			draws = draws[1:]
			require.Less(t, d, n, "#%d %s: the draw is out of [0, %d)", i, tt.name, n)
			return d
		})
		require.Empty(t, draws, "#%d %s: draws left", i, tt.name)
		names := []string{}
		for _, r := range got {
			names = append(names, r.Target)
		}
		require.Equal(t, tt.want, names, "#%d %s", i, tt.name)
		require.Equal(t, in, tt.recs, "#%d %s: the input is not modified", i, tt.name)
	}
}

// TestOrderSRVWeights: over many orderings with a real random source, the
// heavier record of a priority goes first about as often as RFC 2782's
// draw says, and a record of a later priority never does.
func TestOrderSRVWeights(t *testing.T) {
	recs := []*net.SRV{{Target: "later", Priority: 2, Weight: 100}, {Target: "a", Priority: 1, Weight: 1}, {Target: "b", Priority: 1, Weight: 3}}
	first := map[string]int{}
	const n = 4000
	for range n {
		ord := OrderSRV(recs, rand.IntN)
		first[ord[0].Target]++
		require.Equal(t, "later", ord[2].Target)
	}
	// r is drawn in [0, 4]: a (listed first) wins on 0 and 1, b on 2 to 4
	require.InDelta(t, 0.6, float64(first["b"])/n, 0.04, "b's share: %v", first)
}

// TestValidServiceName: RFC 6335 §5.1 service names.
func TestValidServiceName(t *testing.T) {
	for s, want := range map[string]bool{
		"http": true, "xmpp-client": true, "h2": true, "a": true, "x-1": true,
		"": false, "443": false, "-http": false, "http-": false, "a--b": false,
		"sixteen-letters-": false, "has.dot": false, "has_us": false, "has space": false,
		"fifteen-letters": true,
	} {
		require.Equal(t, want, ValidServiceName(s), "%q", s)
	}
}

// TestResolverLookupSRV: SRV records over real DNS on the loopback (a
// test server): ordered by priority, "." is ErrServiceUnavailable, a name
// without SRV records is not found; the resolver's DNS also answers A.
func TestResolverLookupSRV(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	dns.AddSRV("_echo._tcp.example.test", 20, 0, 2002, "b.example.test")
	dns.AddSRV("_echo._tcp.example.test", 10, 0, 1001, "a.example.test")
	dns.AddSRV("_echo._udp.example.test", 0, 0, 0, ".")
	dns.AddAddr("example.test", netip.MustParseAddr("127.0.0.1"))
	r := Resolver{DNS: dns.Resolver()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	recs, err := r.LookupSRV(ctx, "echo", "tcp", "example.test")
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "a.example.test.", recs[0].Target)
	require.EqualValues(t, 1001, recs[0].Port)
	require.Equal(t, "b.example.test.", recs[1].Target)

	_, err = r.LookupSRV(ctx, "echo", "udp", "example.test")
	var re *ResolveError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrServiceUnavailable)
	require.Equal(t, "_echo._udp.example.test", re.Host)

	_, err = r.LookupSRV(ctx, "http", "tcp", "example.test")
	var de *net.DNSError
	require.ErrorAs(t, err, &de, "%v", err)
	require.True(t, de.IsNotFound, "%v", err)
	require.False(t, errors.Is(err, ErrServiceUnavailable))

	addrs, err := r.Resolve(ctx, "example.test")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, addrs, "A through the same DNS")
	require.Contains(t, dns.Queries(), "SRV _echo._tcp.example.test.")
}

// TestResolverLookupSRVCancelEndsTheLookup: an SRV lookup whose ctx is
// cancelled (a ctx with no deadline) while the DNS server drops the query
// returns ctx's error at once, and leaves no goroutine behind: the
// resolver's query ends with the cancel, not with its timeout (5 s per
// attempt, net.Resolver heeding only a ctx's deadline). The test DNS
// server closes its resolver's sockets only when the test ends, after
// the check.
func TestResolverLookupSRVCancelEndsTheLookup(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	dns.Drop("SRV")
	r := Resolver{DNS: dns.Resolver()}
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := r.LookupSRV(ctx, "echo", "tcp", "example.test")
		errc <- err
	}()
	select {
	case <-dns.Asked("SRV _echo._tcp.example.test."):
	case err := <-errc:
		t.Fatalf("LookupSRV returned %v before its query was asked", err)
	}
	start := time.Now()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Less(t, time.Since(start), time.Second, "LookupSRV waited after its ctx was cancelled")
	goleak.VerifyNone(t, before) // the lookup's goroutine has ended too
}

// TestResolveStreamCancelEndsTheLookups: as for SRV, a host name's A and
// AAAA lookups through a DNS resolver (Resolver.DNS) whose ctx is
// cancelled while the server drops the queries end with the cancel: no
// goroutine of theirs is left waiting for the resolver's timeout.
func TestResolveStreamCancelEndsTheLookups(t *testing.T) {
	dns := stacktest.NewDNSServer(t)
	dns.Drop("A")
	dns.Drop("AAAA")
	r := Resolver{DNS: dns.Resolver()}
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := r.Resolve(ctx, "example.test")
		errc <- err
	}()
	select {
	case <-dns.Asked("A example.test."):
	case err := <-errc:
		t.Fatalf("Resolve returned %v before its A query was asked", err)
	}
	<-dns.Asked("AAAA example.test.")
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	goleak.VerifyNone(t, before) // the lookups' goroutines have ended too
}
