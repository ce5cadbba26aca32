package actors

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

func TestClampAttemptDelay(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, 250 * time.Millisecond},
		{time.Nanosecond, 10 * time.Millisecond},
		{9 * time.Millisecond, 10 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{3 * time.Second, 2 * time.Second},
	}
	for i, tt := range tests {
		if got := ClampAttemptDelay(tt.in); got != tt.want {
			t.Errorf("#%d: got %v; want %v", i, got, tt.want)
		}
	}
}

func TestPlanCandidatesOrder(t *testing.T) {
	a6 := netip.MustParseAddrPort("[::1]:80")
	a4 := netip.MustParseAddrPort("127.0.0.1:80")
	b4 := netip.MustParseAddrPort("127.0.0.2:80")
	got := plan(t, []stacks.Stack{stacks.TCP()}, []remoteAddrs{
		{label: "a", addrs: []netip.AddrPort{a6, a4}},
		{label: "b", addrs: []netip.AddrPort{b4}},
	})
	want := []netip.AddrPort{a6, b4, a4}
	if len(got) != len(want) {
		t.Fatalf("got %d candidates; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].remote != want[i] {
			t.Errorf("#%d: got %v; want %v", i, got[i].remote, want[i])
		}
	}
	if got := planCandidates(nil, nil); len(got) != 0 {
		t.Errorf("empty plan has %d candidates", len(got))
	}
}

func TestNextStart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	tests := []struct {
		now, last  time.Duration // offsets from t0
		delay      time.Duration
		lastFailed bool
		want       time.Duration
	}{
		{now: 0, last: 0, delay: 250 * ms, want: 250 * ms},
		{now: 100 * ms, last: 0, delay: 250 * ms, want: 250 * ms},
		{now: 100 * ms, last: 0, delay: 250 * ms, lastFailed: true, want: 100 * ms},
		{now: 5 * ms, last: 0, delay: 10 * ms, lastFailed: true, want: 5 * ms},
		{now: 300 * ms, last: 250 * ms, delay: 250 * ms, want: 500 * ms},
	}
	for i, tt := range tests {
		got := nextStart(t0.Add(tt.now), t0.Add(tt.last), tt.delay, tt.lastFailed).Sub(t0)
		if got != tt.want {
			t.Errorf("#%d: got %v; want %v", i, got, tt.want)
		}
	}
}

// simulate plays a staggered race in virtual time with nextStart: attempt
// i fails after fail[i] (>0), succeeds after ok[i] (>0), or hangs (both
// 0). It returns the start offsets and the winner (-1 none).
func simulate(delay time.Duration, fail, ok []time.Duration) (starts []time.Duration, winner int) {
	t0 := time.Unix(0, 0)
	type ev struct {
		at  time.Duration
		idx int
		ok  bool
	}
	var pending []ev
	start := func(now time.Duration) {
		i := len(starts)
		starts = append(starts, now)
		switch {
		case fail[i] > 0:
			pending = append(pending, ev{now + fail[i], i, false})
		case ok[i] > 0:
			pending = append(pending, ev{now + ok[i], i, true})
		}
	}
	start(0)
	for {
		next := time.Duration(-1)
		if len(starts) < len(fail) {
			next = nextStart(t0, t0.Add(starts[len(starts)-1]), delay, false).Sub(t0)
		}
		first := -1
		for j, e := range pending {
			if first < 0 || e.at < pending[first].at {
				first = j
			}
		}
		if first >= 0 && (next < 0 || pending[first].at <= next) {
			e := pending[first]
			pending = append(pending[:first], pending[first+1:]...)
			if e.ok {
				return starts, e.idx
			}
			if len(starts) < len(fail) {
				start(nextStart(t0.Add(e.at), t0.Add(starts[len(starts)-1]), delay, true).Sub(t0))
			}
			continue
		}
		if next < 0 {
			return starts, -1
		}
		start(next)
	}
}

func TestStaggeredSchedule(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		fail, ok   []time.Duration
		wantStarts []time.Duration
		wantWinner int
	}{
		// dead first: the second starts after the delay
		{fail: []time.Duration{0, 0}, ok: []time.Duration{0, 10 * ms}, wantStarts: []time.Duration{0, 250 * ms}, wantWinner: 1},
		// refused first: the second starts at once
		{fail: []time.Duration{5 * ms, 0}, ok: []time.Duration{0, 10 * ms}, wantStarts: []time.Duration{0, 5 * ms}, wantWinner: 1},
		// the first wins before the delay: nothing else starts
		{fail: []time.Duration{0, 0}, ok: []time.Duration{100 * ms, 1}, wantStarts: []time.Duration{0}, wantWinner: 0},
		// an older attempt failing starts the next at once
		{fail: []time.Duration{300 * ms, 0, 0}, ok: []time.Duration{0, 0, 1}, wantStarts: []time.Duration{0, 250 * ms, 300 * ms}, wantWinner: 2},
		// all hang
		{fail: []time.Duration{0, 0, 0}, ok: []time.Duration{0, 0, 0}, wantStarts: []time.Duration{0, 250 * ms, 500 * ms}, wantWinner: -1},
	}
	for i, tt := range tests {
		starts, winner := simulate(250*ms, tt.fail, tt.ok)
		if winner != tt.wantWinner || len(starts) != len(tt.wantStarts) {
			t.Errorf("#%d: got starts %v winner %d; want %v winner %d", i, starts, winner, tt.wantStarts, tt.wantWinner)
			continue
		}
		for j := range starts {
			if starts[j] != tt.wantStarts[j] {
				t.Errorf("#%d: start %d: got %v; want %v", i, j, starts[j], tt.wantStarts[j])
			}
		}
	}
}

func TestPlanCandidatesPathsAndStacks(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:80")
	b := netip.MustParseAddrPort("192.0.2.2:80")
	c := netip.MustParseAddrPort("192.0.2.3:80")
	s1, s2 := stacks.TCP(), namedStack{stacks.TCP(), "tcp2"}
	got := plan(t, []stacks.Stack{s1, s2}, []remoteAddrs{
		{label: "a", addrs: []netip.AddrPort{a}, iface: "eth0"},
		{label: "b", addrs: []netip.AddrPort{b}, iface: "eth1"},
		{label: "c", addrs: []netip.AddrPort{c}, iface: "eth0"},
	})
	want := []string{"eth0 tcp 192.0.2.1:80", "eth0 tcp 192.0.2.3:80", "eth0 tcp2 192.0.2.1:80", "eth0 tcp2 192.0.2.3:80",
		"eth1 tcp 192.0.2.2:80", "eth1 tcp2 192.0.2.2:80"}
	var gotS []string
	for _, c := range got {
		gotS = append(gotS, c.iface+" "+c.stack.Name()+" "+c.remote.String())
	}
	if len(gotS) != len(want) {
		t.Fatalf("got %v; want %v", gotS, want)
	}
	for i := range want {
		if gotS[i] != want[i] {
			t.Errorf("#%d: got %v; want %v", i, gotS[i], want[i])
		}
	}
}

func TestPlanCandidatesBoundsDerivedEndpoints(t *testing.T) {
	var addrs []netip.AddrPort
	for i := range 100 {
		addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80))
	}
	got := plan(t, []stacks.Stack{stacks.TCP()}, []remoteAddrs{{label: "many", addrs: addrs}})
	if len(got) != maxDerivedEndpoints {
		t.Errorf("got %d candidates; want %d", len(got), maxDerivedEndpoints)
	}
}

func TestPromote(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:80")
	b := netip.MustParseAddrPort("192.0.2.2:80")
	c := netip.MustParseAddrPort("192.0.2.3:80")
	cands := plan(t, []stacks.Stack{stacks.TCP()}, []remoteAddrs{{addrs: []netip.AddrPort{a, b, c}}})
	got, ok := promote(cands, "tcp", c)
	if !ok || got[0].remote != c || got[1].remote != a || got[2].remote != b {
		t.Errorf("promote c: got %v %v", ok, got)
	}
	if cands[0].remote != a {
		t.Error("promote modified its input")
	}
	if got, ok := promote(cands, "tcp", a); !ok || got[0].remote != a || got[1].remote != b || got[2].remote != c {
		t.Errorf("promote a (first already): got %v %v", ok, got)
	}
	if _, ok := promote(cands, "quic", c); ok {
		t.Error("promote matched another stack")
	}
	if _, ok := promote(cands, "tcp", netip.MustParseAddrPort("192.0.2.9:80")); ok {
		t.Error("promote matched another address")
	}
}

func TestRaceCache(t *testing.T) {
	var c raceCache
	now := time.Unix(1000, 0)
	w := raceWinner{stack: "tcp", remote: netip.MustParseAddrPort("192.0.2.1:80"), at: now}
	if _, ok := c.lookup("k", now); ok {
		t.Fatal("empty cache hit")
	}
	c.store("k", w)
	if got, ok := c.lookup("k", now.Add(time.Minute)); !ok || got != w {
		t.Errorf("got %v %v; want %v", got, ok, w)
	}
	if _, ok := c.lookup("k", now.Add(raceCacheTTL+time.Second)); ok {
		t.Error("expired entry returned")
	}
	c.store("k", w)
	c.forget("k")
	if _, ok := c.lookup("k", now); ok {
		t.Error("forgotten entry returned")
	}
	for i := range raceCacheMax + 10 {
		c.store(strconv.Itoa(i), raceWinner{at: now.Add(time.Duration(i))})
	}
	if len(c.m) > raceCacheMax {
		t.Errorf("cache holds %d entries; max %d", len(c.m), raceCacheMax)
	}
	if _, ok := c.lookup("0", now); ok {
		t.Error("oldest entry not evicted")
	}
}

func TestRaceCacheKey(t *testing.T) {
	e1 := &messages.Endpoint{HostName: "example.org", Port: 443}
	e2 := &messages.Endpoint{IpAddress: "2001:db8::1", Port: 443}
	k1 := raceCacheKey(&messages.ConnectionConfig{Remotes: []*messages.Endpoint{e1, e2}})
	k2 := raceCacheKey(&messages.ConnectionConfig{Remotes: []*messages.Endpoint{e2, e1}})
	if k1 == "" || k1 != k2 {
		t.Errorf("keys %q and %q; want equal, non-empty", k1, k2)
	}
	iso := &messages.ConnectionConfig{Remotes: []*messages.Endpoint{e1}, Properties: &messages.Properties{
		Values: map[string]*messages.PropertyValue{"isolateSession": {Kind: &messages.PropertyValue_BoolValue{BoolValue: true}}}}}
	if k := raceCacheKey(iso); k != "" {
		t.Errorf("isolateSession key %q; want none", k)
	}
}

// TestRaceCacheKeyHasWhatMakesTheCandidates: configurations whose
// candidates differ have different race cache keys (a winner cached for
// one and absent from the other's candidates held the other's race up to
// the resolution delay): the remote's service (SRV targets instead of the
// host's addresses at the service's IANA port), its protocol, a multicast
// source, the local endpoints and the path preferences.
func TestRaceCacheKeyHasWhatMakesTheCandidates(t *testing.T) {
	base := func() *messages.ConnectionConfig {
		return &messages.ConnectionConfig{Remotes: []*messages.Endpoint{{HostName: "example.org", Port: 443}},
			Stacks: []stacks.Stack{stacks.TLS()}}
	}
	prefs := func(name string, p map[string]int32) *messages.Properties {
		return &messages.Properties{Values: map[string]*messages.PropertyValue{
			name: {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{Preferences: p}}}}}
	}
	for name, change := range map[string]func(*messages.ConnectionConfig){
		"service":         func(c *messages.ConnectionConfig) { c.Remotes[0].Service = "https" },
		"protocol":        func(c *messages.ConnectionConfig) { c.Remotes[0].Protocol = "quic" },
		"local address":   func(c *messages.ConnectionConfig) { c.Locals = []*messages.Endpoint{{IpAddress: "192.0.2.7"}} },
		"local host name": func(c *messages.ConnectionConfig) { c.Locals = []*messages.Endpoint{{HostName: "me.example"}} },
		"local interface": func(c *messages.ConnectionConfig) { c.Locals = []*messages.Endpoint{{Interface: "lo"}} },
		"interface preference": func(c *messages.ConnectionConfig) {
			c.Properties = prefs("interface", map[string]int32{"lo": int32(stacks.Require)})
		},
		"pvd preference": func(c *messages.ConnectionConfig) {
			c.Properties = prefs("pvd", map[string]int32{"example.net": int32(stacks.Avoid)})
		},
		// an HTTP app has the HTTPS records looked up: their targets
		// are candidates of its own
		"HTTPS records": func(c *messages.ConnectionConfig) {
			c.StackOptions.TLS = &tls.Config{NextProtos: []string{"h2"}}
		},
		"temporary address": func(c *messages.ConnectionConfig) {
			c.Properties = &messages.Properties{Values: map[string]*messages.PropertyValue{
				"useTemporaryLocalAddress": {Kind: &messages.PropertyValue_Preference{Preference: int32(stacks.Prohibit)}}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := base()
			change(c)
			require.NotEqual(t, raceCacheKey(base()), raceCacheKey(c))
		})
	}
	asm := &messages.ConnectionConfig{Remotes: []*messages.Endpoint{{IpAddress: "232.1.1.1", Port: 443, Multicast: true}}}
	ssm := &messages.ConnectionConfig{Remotes: []*messages.Endpoint{{IpAddress: "232.1.1.1", Port: 443, Multicast: true, MulticastSource: "192.0.2.1"}}}
	require.NotEqual(t, raceCacheKey(asm), raceCacheKey(ssm), "any-source and single-source multicast")
}

// namedStack renames a stack.
type namedStack struct {
	stacks.Stack
	name string
}

func (s namedStack) Name() string { return s.name }

// plan is planPaths without local endpoints or path properties, then
// planCandidates.
func plan(t *testing.T, sts []stacks.Stack, remotes []remoteAddrs) []candidate {
	t.Helper()
	groups, err := planPaths(remotes, nil, stacks.PathPlan{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return planCandidates(sts, groups)
}

// TestPlanCandidatesPairsUnixPathsWithTheUnixStack: a Unix socket path is
// tried over the unix stack only and an address over the others, so that
// a path and an address given together are both reachable (every remote
// was paired with every stack: the path over TCP, the address over unix).
func TestPlanCandidatesPairsUnixPathsWithTheUnixStack(t *testing.T) {
	a4 := netip.MustParseAddrPort("127.0.0.1:80")
	sts := []stacks.Stack{stacks.TCP(), stacks.Unix(), stacks.TLS()}
	tests := []struct {
		name    string
		remotes []remoteAddrs
		want    []string // stack and path or address, in order
	}{
		{"path only", []remoteAddrs{{label: "/s", unix: "/s", addrs: []netip.AddrPort{{}}}},
			[]string{"unix /s"}},
		{"address only", []remoteAddrs{{label: "a", addrs: []netip.AddrPort{a4}}},
			[]string{"tcp 127.0.0.1:80", "tls 127.0.0.1:80"}},
		{"path and address", []remoteAddrs{{label: "/s", unix: "/s", addrs: []netip.AddrPort{{}}}, {label: "a", addrs: []netip.AddrPort{a4}}},
			[]string{"tcp 127.0.0.1:80", "unix /s", "tls 127.0.0.1:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range plan(t, sts, tt.remotes) {
				to := c.remote.String()
				if c.path != "" {
					to = c.path
				}
				got = append(got, c.stack.Name()+" "+to)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestPlanCandidatesPairsProtocolEndpointsWithTheirStack: the endpoint of
// a RemoteEndpoint made specific to one protocol (WithProtocol, RFC 9622
// §6.1: "QUIC on 8443, TCP on 443") is attempted over that stack only,
// and an endpoint without one over every stack; two endpoints for two
// protocols at the same address and port are both attempted (each remote
// was paired with every selected stack, and the second was dropped as a
// duplicate of the first).
func TestPlanCandidatesPairsProtocolEndpointsWithTheirStack(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:443")
	b := netip.MustParseAddrPort("127.0.0.1:8443")
	sts := []stacks.Stack{stacks.TCP(), stacks.QUIC(), stacks.UDP()}
	tests := []struct {
		name    string
		remotes []remoteAddrs
		want    []string // stack and address, in order
	}{
		{"no protocol", []remoteAddrs{{label: "a", addrs: []netip.AddrPort{a}}},
			[]string{"tcp 127.0.0.1:443", "quic 127.0.0.1:443", "udp 127.0.0.1:443"}},
		{"tcp on 443, quic on 8443", []remoteAddrs{
			{label: "a", addrs: []netip.AddrPort{a}, protocol: "tcp"},
			{label: "b", addrs: []netip.AddrPort{b}, protocol: "quic"}},
			[]string{"tcp 127.0.0.1:443", "quic 127.0.0.1:8443"}},
		{"one with, one without", []remoteAddrs{
			{label: "a", addrs: []netip.AddrPort{a}, protocol: "udp"},
			{label: "b", addrs: []netip.AddrPort{b}}},
			[]string{"tcp 127.0.0.1:8443", "quic 127.0.0.1:8443", "udp 127.0.0.1:443", "udp 127.0.0.1:8443"}},
		{"tcp and quic on one port", []remoteAddrs{
			{label: "a", addrs: []netip.AddrPort{a}, protocol: "tcp"},
			{label: "a", addrs: []netip.AddrPort{a}, protocol: "quic"}},
			[]string{"tcp 127.0.0.1:443", "quic 127.0.0.1:443"}},
		{"a stack not selected", []remoteAddrs{{label: "a", addrs: []netip.AddrPort{a}, protocol: "tls"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range plan(t, sts, tt.remotes) {
				got = append(got, c.stack.Name()+" "+c.remote.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestPickAttempt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	tls, tcp, quic := stacks.TLS(), stacks.TCP(), stacks.QUIC()
	a := netip.MustParseAddrPort("192.0.2.1:443")
	b := netip.MustParseAddrPort("192.0.2.2:443")
	cand := func(st stacks.Stack, remote netip.AddrPort, iface string) candidate {
		return candidate{stack: st, remote: remote, iface: iface}
	}
	// run is a started attempt (offset from t0), "end" one that ended
	type run struct {
		at       time.Duration
		ended    bool
		spokeTLS bool // it ended after its peer answered in TLS
	}
	tests := []struct {
		name     string
		cands    []candidate
		runs     map[int]run // started candidates
		fallback bool
		now      time.Duration
		want     int
		wantWake time.Duration // -1: zero
	}{
		{name: "nothing started: the first", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			fallback: true, want: 0, wantWake: -1},
		{name: "plain held while its secure sibling runs", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0}}, fallback: true, now: 250 * ms, want: -1, wantWake: 2000 * ms},
		{name: "without fallback the plain one starts", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0}}, now: 250 * ms, want: 1, wantWake: -1},
		{name: "the sibling failed: released at once", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0, ended: true}}, fallback: true, now: 100 * ms, want: 1, wantWake: -1},
		{name: "the hold is over", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0}}, fallback: true, now: 2000 * ms, want: 1, wantWake: -1},
		{name: "another remote's secure attempt holds nothing", cands: []candidate{cand(tls, a, ""), cand(tcp, b, "")},
			runs: map[int]run{0: {at: 0}}, fallback: true, now: 250 * ms, want: 1, wantWake: -1},
		{name: "another path's secure attempt holds nothing", cands: []candidate{cand(tls, a, "eth0"), cand(tcp, a, "wlan0")},
			runs: map[int]run{0: {at: 0}}, fallback: true, now: 250 * ms, want: 1, wantWake: -1},
		{name: "a held one is skipped for the next", cands: []candidate{cand(tls, a, ""), cand(tls, b, ""), cand(tcp, a, ""), cand(tcp, b, "")},
			runs: map[int]run{0: {at: 0}, 1: {at: 250 * ms, ended: true}}, fallback: true, now: 500 * ms, want: 3, wantWake: -1},
		{name: "the latest of two holds counts; the earliest held wakes", cands: []candidate{cand(tls, a, ""), cand(quic, a, ""), cand(tls, b, ""), cand(tcp, a, ""), cand(tcp, b, "")},
			runs: map[int]run{0: {at: 0}, 1: {at: 250 * ms}, 2: {at: 500 * ms}}, fallback: true, now: 750 * ms, want: -1, wantWake: 2250 * ms},
		{name: "a cached plain winner put first still waits for its secure sibling", cands: []candidate{cand(tcp, a, ""), cand(tls, a, "")},
			fallback: true, want: 1, wantWake: -1},
		{name: "then held while the sibling runs", cands: []candidate{cand(tcp, a, ""), cand(tls, a, "")},
			runs: map[int]run{1: {at: 0}}, fallback: true, now: 250 * ms, want: -1, wantWake: 2000 * ms},
		{name: "without fallback the cached plain winner goes first", cands: []candidate{cand(tcp, a, ""), cand(tls, a, "")},
			want: 0, wantWake: -1},
		{name: "the sibling failed after its peer answered in TLS: never started", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0, ended: true, spokeTLS: true}}, fallback: true, now: 100 * ms, want: -1, wantWake: -1},
		{name: "a TLS peer's plain fallback is skipped for another remote's", cands: []candidate{cand(tls, a, ""), cand(tls, b, ""), cand(tcp, a, ""), cand(tcp, b, "")},
			runs: map[int]run{0: {at: 0, ended: true, spokeTLS: true}, 1: {at: 250 * ms, ended: true}}, fallback: true, now: 500 * ms, want: 3, wantWake: -1},
		{name: "without fallback a TLS peer's plain attempt starts", cands: []candidate{cand(tls, a, ""), cand(tcp, a, "")},
			runs: map[int]run{0: {at: 0, ended: true, spokeTLS: true}}, now: 100 * ms, want: 1, wantWake: -1},
		{name: "everything started", cands: []candidate{cand(tls, a, "")},
			runs: map[int]run{0: {at: 0}}, fallback: true, now: 10 * ms, want: -1, wantWake: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := make([]attemptState, len(tt.cands))
			for i, r := range tt.runs {
				st[i] = attemptState{start: t0.Add(r.at), ended: r.ended, spokeTLS: r.spokeTLS}
			}
			got, wake := pickAttempt(tt.cands, st, tt.fallback, secureFallbackHold, t0.Add(tt.now))
			if got != tt.want {
				t.Errorf("got candidate %d; want %d", got, tt.want)
			}
			var want time.Time
			if tt.wantWake >= 0 {
				want = t0.Add(tt.wantWake)
			}
			if !wake.Equal(want) {
				t.Errorf("wake %v; want %v", wake.Sub(t0), tt.wantWake)
			}
		})
	}
}

func TestCandidateServerName(t *testing.T) {
	tests := []struct {
		label string
		name  string
		ok    bool
	}{
		{"localhost:443", "localhost", true},
		{"example.org:8443", "example.org", true},
		{"127.0.0.1:443", "", true},
		{"[::1]:443", "", true},
		{"[fe80::1%eth0]:443", "", true},
		{"", "", false},
		{"no-port", "", false},
	}
	for _, tt := range tests {
		if name, ok := (candidate{label: tt.label}).serverName(); name != tt.name || ok != tt.ok {
			t.Errorf("%q: got %q, %v; want %q, %v", tt.label, name, ok, tt.name, tt.ok)
		}
	}
}

// TestMergePlan: candidates planned again after a later DNS answer join
// the race (RFC 8305 §3, §4): in the order of the new plan, the families
// alternating again from each block's last attempt on; indices of the
// race's candidates stay theirs.
func TestMergePlan(t *testing.T) {
	ap := netip.MustParseAddrPort
	v6a, v6b := ap("[2001:db8::1]:443"), ap("[2001:db8::2]:443")
	v4a, v4b, v4c := ap("192.0.2.1:443"), ap("192.0.2.2:443"), ap("192.0.2.3:443")
	v4x := ap("198.51.100.1:443")
	tcp, quic := stacks.TCP(), stacks.QUIC()
	one := func(label string, addrs ...netip.AddrPort) remoteAddrs {
		return remoteAddrs{label: label, addrs: addrs}
	}
	tests := []struct {
		name          string
		sts           []stacks.Stack
		before, after []remoteAddrs // the remotes planned first, and again
		started       []int         // indices of the first plan's candidates, in start order
		want          []string      // the order: started, then the rest
	}{
		{name: "AAAA first: the late IPv4 goes next", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v6a, v6b)}, after: []remoteAddrs{one("h", v6a, v4a, v6b, v4b)},
			started: []int{0}, want: []string{"tcp " + v6a.String(), "tcp " + v4a.String(), "tcp " + v6b.String(), "tcp " + v4b.String()}},
		{name: "A first: the late IPv6 alternates with the IPv4 left", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v4a, v4b, v4c)}, after: []remoteAddrs{one("h", v6a, v4a, v6b, v4b, v4c)},
			started: []int{0}, want: []string{"tcp " + v4a.String(), "tcp " + v6a.String(), "tcp " + v4b.String(), "tcp " + v6b.String(), "tcp " + v4c.String()}},
		{name: "A first, two IPv4 attempts made", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v4a, v4b, v4c)}, after: []remoteAddrs{one("h", v6a, v4a, v6b, v4b, v4c)},
			started: []int{0, 1}, want: []string{"tcp " + v4a.String(), "tcp " + v4b.String(), "tcp " + v6a.String(), "tcp " + v4c.String(), "tcp " + v6b.String()}},
		{name: "nothing started yet: the new plan's order", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v4a)}, after: []remoteAddrs{one("h", v6a, v4a)},
			want: []string{"tcp " + v6a.String(), "tcp " + v4a.String()}},
		{name: "a stack's block with no attempt keeps the plan's order", sts: []stacks.Stack{quic, tcp},
			before: []remoteAddrs{one("h", v6a, v6b)}, after: []remoteAddrs{one("h", v6a, v4a, v6b)},
			started: []int{0},
			want: []string{"quic " + v6a.String(), "quic " + v4a.String(), "quic " + v6b.String(),
				"tcp " + v6a.String(), "tcp " + v4a.String(), "tcp " + v6b.String()}},
		{name: "remotes keep alternating", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v6a), one("x", v4x)}, after: []remoteAddrs{one("h", v6a, v4a), one("x", v4x)},
			started: []int{0}, want: []string{"tcp " + v6a.String(), "tcp " + v4x.String(), "tcp " + v4a.String()}},
		{name: "an answer that adds nothing changes nothing", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v6a, v4a)}, after: []remoteAddrs{one("h", v6a, v4a)},
			started: []int{0}, want: []string{"tcp " + v6a.String(), "tcp " + v4a.String()}},
		{name: "everything started: only the new ones are left", sts: []stacks.Stack{tcp},
			before: []remoteAddrs{one("h", v4a, v4b)}, after: []remoteAddrs{one("h", v6a, v4a, v6b, v4b)},
			started: []int{1, 0}, want: []string{"tcp " + v4b.String(), "tcp " + v4a.String(), "tcp " + v6a.String(), "tcp " + v6b.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := plan(t, tt.sts, tt.before)
			out, order := mergePlan(first, tt.started, plan(t, tt.sts, tt.after))
			for i, c := range first {
				if out[i].key() != c.key() {
					t.Errorf("candidate %d moved: %v; was %v", i, out[i].key(), c.key())
				}
			}
			var got []string
			for _, i := range order {
				got = append(got, out[i].stack.Name()+" "+out[i].endpoint())
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestMergePlanDropsUnplanned: an unstarted candidate the new plan no
// longer has is not attempted; a started one stays in the order.
func TestMergePlanDropsUnplanned(t *testing.T) {
	ap := netip.MustParseAddrPort
	tcp := stacks.TCP()
	c := func(a string) candidate { return candidate{stack: tcp, remote: ap(a), label: "h"} }
	cands := []candidate{c("192.0.2.1:1"), c("192.0.2.2:1"), c("192.0.2.3:1")}
	out, order := mergePlan(cands, []int{1}, []candidate{c("192.0.2.1:1"), c("192.0.2.4:1")})
	if len(out) != 4 || out[3].remote != ap("192.0.2.4:1") {
		t.Fatalf("got candidates %v", out)
	}
	if fmt.Sprint(order) != fmt.Sprint([]int{1, 0, 3}) {
		t.Errorf("got order %v; want [1 0 3]", order)
	}
}
