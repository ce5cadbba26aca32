package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsAnswer is one family's answer of a fake lookup: after a delay,
// addresses or an error; never: it does not answer before its ctx ends.
type dnsAnswer struct {
	after time.Duration
	addrs []netip.AddrPort
	err   error
	never bool
}

// timedResolver answers the AAAA and A queries of any name as told, in
// (fake) time; every lookup cut short by its ctx adds to cancelled.
func timedResolver(aaaa, a dnsAnswer, cancelled *atomic.Int32) stacks.Resolver {
	lookup := func(ctx context.Context, network, _ string) ([]netip.Addr, error) {
		ans := a
		if network == "ip6" {
			ans = aaaa
		}
		var wait <-chan time.Time
		if !ans.never {
			t := time.NewTimer(ans.after)
			defer t.Stop()
			wait = t.C
		}
		select {
		case <-ctx.Done():
			if cancelled != nil {
				cancelled.Add(1)
			}
			return nil, ctx.Err()
		case <-wait:
		}
		var out []netip.Addr
		for _, ap := range ans.addrs {
			out = append(out, ap.Addr())
		}
		return out, ans.err
	}
	return stacks.Resolver{LookupNetIP: lookup, Routable: func(netip.Addr) bool { return true }}
}

// named is a remote endpoint given by name, on addrA's port.
func named() []*messages.Endpoint {
	return []*messages.Endpoint{{HostName: "he.test", Port: uint32(addrA.Port())}}
}

// TestRacerStreamedResolution runs races whose name answers come apart
// (RFC 8305 §3) through the real preconnection, racer and candidate
// actors with fake stacks, in fake time: a positive AAAA answer starts
// connecting at once, a positive A answer first waits the resolution
// delay, a later answer joins the race, and a race whose attempts all
// failed waits for a pending answer before it fails.
func TestRacerStreamedResolution(t *testing.T) {
	ms := time.Millisecond
	errNX := errors.New("no such host")
	v4b := netip.MustParseAddrPort("192.0.2.9:80") // a second IPv4 address (addrC is 192.0.2.2)
	type attempt = raceAttempt
	tests := []struct {
		name     string
		aaaa, a  dnsAnswer
		plain    map[netip.AddrPort]outcome
		secure   map[netip.AddrPort]outcome // a second, secure stack raced first when set
		fallback bool
		remotes  []*messages.Endpoint // default: named()
		want     []attempt
		wantErr  error
		failAt   time.Duration // when the race fails (with wantErr)
		events   []string
	}{
		{
			name: "AAAA first starts at once, the A answer joins after the attempt delay",
			aaaa: dnsAnswer{addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{after: 100 * ms, addrs: []netip.AddrPort{addrB}},
			plain: map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok", after: 10 * ms}},
			want:  []attempt{{"fake", addrA, 0, -1, false}, {"fake", addrB, 250 * ms, 260 * ms, true}},
		},
		{
			name: "AAAA first, a very late A answer starts at once",
			aaaa: dnsAnswer{addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{after: 1500 * ms, addrs: []netip.AddrPort{addrB}},
			plain: map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok", after: 10 * ms}},
			want:  []attempt{{"fake", addrA, 0, -1, false}, {"fake", addrB, 1500 * ms, 1510 * ms, true}},
		},
		{
			name: "AAAA first wins before the A answer",
			aaaa: dnsAnswer{addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{never: true},
			plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 10 * ms}},
			want:  []attempt{{"fake", addrA, 0, 10 * ms, true}},
		},
		{
			name: "A first waits the resolution delay",
			aaaa: dnsAnswer{never: true}, a: dnsAnswer{addrs: []netip.AddrPort{addrB}},
			plain: map[netip.AddrPort]outcome{addrB: {kind: "ok", after: 10 * ms}},
			want:  []attempt{{"fake", addrB, stacks.ResolutionDelay, stacks.ResolutionDelay + 10*ms, true}},
		},
		{
			name: "A first, AAAA within the resolution delay goes first",
			aaaa: dnsAnswer{after: 30 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{addrs: []netip.AddrPort{addrB}},
			plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 10 * ms}, addrB: {kind: "ok", after: ms}},
			want:  []attempt{{"fake", addrA, 30 * ms, 40 * ms, true}},
		},
		{
			name: "late AAAA joins and is attempted next",
			aaaa: dnsAnswer{after: 120 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{addrs: []netip.AddrPort{addrB, v4b}},
			plain:  map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 10 * ms}, addrB: {kind: "dead"}, v4b: {kind: "ok", after: 10 * ms}},
			want:   []attempt{{"fake", addrB, 50 * ms, -1, false}, {"fake", addrA, 300 * ms, 310 * ms, true}},
			events: []string{"AttemptStarted 0", "AttemptStarted 2", "AttemptWon 2", "AttemptCancelled 0"},
		},
		{
			name: "refused IPv4, the race waits for the late AAAA and wins",
			aaaa: dnsAnswer{after: 120 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{addrs: []netip.AddrPort{addrB}},
			plain:  map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 10 * ms}, addrB: {kind: "refused", after: ms}},
			want:   []attempt{{"fake", addrB, 50 * ms, 51 * ms, false}, {"fake", addrA, 120 * ms, 130 * ms, true}},
			events: []string{"AttemptStarted 0", "AttemptFailed 0", "AttemptStarted 1", "AttemptWon 1"},
		},
		{
			name: "refused IPv4, the late AAAA is refused too: the race fails after it",
			aaaa: dnsAnswer{after: 120 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{addrs: []netip.AddrPort{addrB}},
			plain:   map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 5 * ms}, addrB: {kind: "refused", after: ms}},
			want:    []attempt{{"fake", addrB, 50 * ms, 51 * ms, false}, {"fake", addrA, 120 * ms, 125 * ms, false}},
			wantErr: syscall.ECONNREFUSED, failAt: 125 * ms,
		},
		{
			name: "refused IPv4, a negative late AAAA answer ends the race",
			aaaa: dnsAnswer{after: 300 * ms, err: errNX}, a: dnsAnswer{addrs: []netip.AddrPort{addrB}},
			plain:   map[netip.AddrPort]outcome{addrB: {kind: "refused", after: ms}},
			want:    []attempt{{"fake", addrB, 50 * ms, 51 * ms, false}},
			wantErr: syscall.ECONNREFUSED, failAt: 300 * ms,
		},
		{
			name: "refused IPv6, the race waits for the A answer",
			aaaa: dnsAnswer{addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{after: 400 * ms, addrs: []netip.AddrPort{addrB}},
			plain: map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 2 * ms}, addrB: {kind: "ok", after: 10 * ms}},
			want:  []attempt{{"fake", addrA, 0, 2 * ms, false}, {"fake", addrB, 400 * ms, 410 * ms, true}},
		},
		{
			// the name is listed first and answers within the resolution
			// delay: it goes first; its late A answer joins
			name: "two remotes: a name answering within the resolution delay goes first, the late answer joins",
			aaaa: dnsAnswer{after: 20 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{after: 100 * ms, addrs: []netip.AddrPort{addrB}},
			remotes: append(named(), endpoints(addrC)...),
			plain:   map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok", after: 10 * ms}, addrC: {kind: "dead"}},
			want: []attempt{{"fake", addrA, 20 * ms, -1, false}, {"fake", addrC, 270 * ms, -1, false},
				{"fake", addrB, 520 * ms, 530 * ms, true}},
		},
		{
			// the name listed first does not answer: the literal does not
			// wait for it past the resolution delay (RFC 8305 §3)
			name: "two remotes: a silent name does not hold back the literal past the resolution delay",
			aaaa: dnsAnswer{never: true}, a: dnsAnswer{never: true},
			remotes: append(named(), endpoints(addrC)...),
			plain:   map[netip.AddrPort]outcome{addrC: {kind: "ok", after: 10 * ms}},
			want:    []attempt{{"fake", addrC, stacks.ResolutionDelay, stacks.ResolutionDelay + 10*ms, true}},
		},
		{
			name: "two remotes: a slow name's answer joins the literal's race and goes next",
			aaaa: dnsAnswer{after: 200 * ms, addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{never: true},
			remotes: append(named(), endpoints(addrC)...),
			plain:   map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 10 * ms}, addrC: {kind: "dead"}},
			want: []attempt{{"fake", addrC, stacks.ResolutionDelay, -1, false},
				{"fake", addrA, stacks.ResolutionDelay + 250*ms, stacks.ResolutionDelay + 260*ms, true}},
		},
		{
			name: "opportunistic security: a late answer's plain attempts wait for their secure siblings",
			aaaa: dnsAnswer{addrs: []netip.AddrPort{addrA}}, a: dnsAnswer{after: 100 * ms, addrs: []netip.AddrPort{addrB}},
			secure:   map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "dead"}},
			plain:    map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}, addrB: {kind: "ok", after: ms}},
			fallback: true,
			want: []attempt{{"sec", addrA, 0, -1, false}, {"sec", addrB, 250 * ms, -1, false},
				{"fake", addrA, secureFallbackHold, secureFallbackHold + ms, true}},
			events: []string{"AttemptStarted 0", "AttemptStarted 2", "AttemptHeld 1", "AttemptHeld 3",
				"AttemptStarted 1", "AttemptWon 1", "AttemptCancelled 0", "AttemptCancelled 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &tracer{}
				sys := NewSystem(Config{Tracer: tr.record})
				defer shutdown(t, sys)
				plain := newFakeStack(tt.plain)
				sts := []stacks.Stack{plain}
				if tt.secure != nil {
					sts = []stacks.Stack{newSecureFakeStack(tt.secure), plain}
				}
				remotes := tt.remotes
				if remotes == nil {
					remotes = named()
				}
				cfg := &messages.ConnectionConfig{Remotes: remotes, Stacks: sts, SecureFallback: tt.fallback,
					Resolver: timedResolver(tt.aaaa, tt.a, nil)}
				res := runRace(t, sys, cfg)
				if tt.wantErr != nil {
					require.ErrorIs(t, res.err, tt.wantErr)
					var f *EstablishmentFailure
					require.ErrorAs(t, res.err, &f)
					require.Len(t, f.Attempts, len(tt.want), "the failure lists every attempt")
					require.Equal(t, tt.failAt, res.elapsed, "when the race failed")
				} else {
					require.NoError(t, res.err)
				}
				require.Equal(t, tt.want, raceAttempts(res.report))
				if tt.events != nil {
					require.Equal(t, tt.events, tr.events())
				}
			})
		})
	}
}

// TestRacerIgnoresAnswerAfterWin: an A answer that comes as the IPv6
// attempt wins (the same instant, in either order) starts nothing, even
// when its lookup does not heed cancellation; nothing is dialed later.
func TestRacerIgnoresAnswerAfterWin(t *testing.T) {
	for _, at := range []time.Duration{90 * time.Millisecond, 100 * time.Millisecond, 110 * time.Millisecond} {
		t.Run(at.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sys := NewSystem(Config{})
				defer shutdown(t, sys)
				fs := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 100 * time.Millisecond},
					addrB: {kind: "ok", after: time.Millisecond}})
				stubborn := func(ctx context.Context, network, _ string) ([]netip.Addr, error) {
					if network == "ip6" {
						return []netip.Addr{addrA.Addr()}, nil
					}
					time.Sleep(at) // answers late, cancelled or not
					return []netip.Addr{addrB.Addr()}, nil
				}
				cfg := &messages.ConnectionConfig{Remotes: named(), Stacks: []stacks.Stack{fs},
					Resolver: stacks.Resolver{LookupNetIP: stubborn, Routable: func(netip.Addr) bool { return true }}}
				res := runRace(t, sys, cfg)
				require.NoError(t, res.err)
				time.Sleep(time.Second) // fake time: a late attempt would have started by now
				synctest.Wait()
				fs.mu.Lock()
				dials := fs.dials
				fs.mu.Unlock()
				require.Equal(t, []netip.AddrPort{addrA}, dials, "only the winner was dialed")
				require.Len(t, res.report.Attempts, 1)
				require.True(t, res.report.Attempts[0].Won)
			})
		})
	}
}

// TestRacerAbortWhileAnswerPending: the only attempt failed and the AAAA
// answer is pending: the race waits; aborting the connection then ends
// it, cancels the lookup, and leaves no goroutine behind (synctest fails
// the test on one blocked at its end, goleak on one outside).
func TestRacerAbortWhileAnswerPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		var cancelled atomic.Int32
		fs := newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "refused", after: time.Millisecond}})
		cfg := &messages.ConnectionConfig{Remotes: named(), Stacks: []stacks.Stack{fs},
			Resolver: timedResolver(dnsAnswer{never: true}, dnsAnswer{addrs: []netip.AddrPort{addrB}}, &cancelled)}
		link := NewLink(sys.NewID(), 0, 0, true)
		r, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
		require.NoError(t, err)
		time.Sleep(time.Second) // fake time: the IPv4 attempt failed at 51 ms
		synctest.Wait()
		select {
		case <-link.Ready():
			t.Fatalf("the race ended while an answer was pending: %v", link.EstablishmentErr())
		default:
		}
		require.Zero(t, cancelled.Load())
		_, err = Ask(context.Background(), sys, r.(*ConnectionStarted).Conn, &messages.AbortConnection{})
		require.NoError(t, err)
		<-link.Done()
		synctest.Wait()
		require.Error(t, link.EstablishmentErr())
		require.Equal(t, int32(1), cancelled.Load(), "the pending AAAA lookup was cancelled")
		fs.mu.Lock()
		defer fs.mu.Unlock()
		require.Equal(t, []netip.AddrPort{addrB}, fs.dials)
	})
}

// TestRacerEndsWhileAnswerPending: the establishment timeout, or
// Initiate's ctx ending (the connection aborted with the ctx's error),
// ends a race waiting for an answer with the failure listing the failed
// attempt, and cancels the lookup.
func TestRacerEndsWhileAnswerPending(t *testing.T) {
	for _, byCtx := range []bool{false, true} {
		name := "establishment timeout"
		if byCtx {
			name = "ctx cancelled"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sys := NewSystem(Config{})
				defer shutdown(t, sys)
				var cancelled atomic.Int32
				fs := newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "refused", after: time.Millisecond}})
				cfg := &messages.ConnectionConfig{Remotes: named(), Stacks: []stacks.Stack{fs},
					Resolver: timedResolver(dnsAnswer{never: true}, dnsAnswer{addrs: []netip.AddrPort{addrB}}, &cancelled)}
				want := ErrEstablishmentTimeout
				if byCtx {
					want = context.Canceled
				} else {
					cfg.EstablishmentTimeout = 700 * time.Millisecond
				}
				start := time.Now()
				link := NewLink(sys.NewID(), 0, 0, true)
				r, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
				require.NoError(t, err)
				if byCtx {
					time.Sleep(700 * time.Millisecond)
					_, err = Ask(context.Background(), sys, r.(*ConnectionStarted).Conn, &messages.AbortConnection{Err: context.Canceled})
					require.NoError(t, err)
				}
				<-link.Ready()
				require.Equal(t, 700*time.Millisecond, time.Since(start))
				err = link.EstablishmentErr()
				require.ErrorIs(t, err, want)
				var f *EstablishmentFailure
				require.ErrorAs(t, err, &f)
				require.Len(t, f.Attempts, 1)
				require.ErrorIs(t, f.Attempts[0].Err, syscall.ECONNREFUSED)
				<-link.Done()
				synctest.Wait()
				require.Equal(t, int32(1), cancelled.Load(), "the pending AAAA lookup was cancelled")
			})
		})
	}
}

// TestRacerCacheWaitsForWinnersAnswer: the race cache's winner is an IPv4
// address and the AAAA answer comes first: the race waits for the A
// answer at most the resolution delay, so that the winner still goes
// first alone; past that, the race starts with IPv6 and the winner joins
// when its answer comes.
func TestRacerCacheWaitsForWinnersAnswer(t *testing.T) {
	ms := time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "refused", after: ms}, addrB: {kind: "ok", after: ms}})
		race := func(aaaa, a dnsAnswer) raceResult {
			cfg := &messages.ConnectionConfig{Remotes: named(), Stacks: []stacks.Stack{fs}, Resolver: timedResolver(aaaa, a, nil)}
			return runRace(t, sys, cfg)
		}
		v6 := dnsAnswer{addrs: []netip.AddrPort{addrA}}
		first := race(dnsAnswer{after: 10 * ms, addrs: []netip.AddrPort{addrA}}, dnsAnswer{addrs: []netip.AddrPort{addrB}})
		require.NoError(t, first.err)
		require.False(t, first.report.FromCache)
		require.Len(t, first.report.Attempts, 2, "[::1] refused, then the IPv4 winner")

		soon := race(v6, dnsAnswer{after: 20 * ms, addrs: []netip.AddrPort{addrB}})
		require.NoError(t, soon.err)
		require.True(t, soon.report.FromCache)
		require.Len(t, soon.report.Attempts, 1)
		require.Equal(t, addrB.String(), soon.report.Attempts[0].Endpoint)
		require.Equal(t, 20*ms, time.Duration(soon.report.Attempts[0].StartOffsetNs), "started on the A answer")

		fs.plan[addrA] = outcome{kind: "dead"}
		late := race(v6, dnsAnswer{after: 200 * ms, addrs: []netip.AddrPort{addrB}})
		require.NoError(t, late.err)
		require.False(t, late.report.FromCache)
		require.Len(t, late.report.Attempts, 2)
		require.Equal(t, addrA.String(), late.report.Attempts[0].Endpoint)
		require.Equal(t, stacks.ResolutionDelay, time.Duration(late.report.Attempts[0].StartOffsetNs), "waited the resolution delay")
		require.Equal(t, addrB.String(), late.report.Attempts[1].Endpoint)
		require.Equal(t, stacks.ResolutionDelay+250*ms, time.Duration(late.report.Attempts[1].StartOffsetNs))
		require.True(t, late.report.Attempts[1].Won)
	})
}

// TestRacerFailureListsAttemptsInStartOrder: when a late AAAA answer's
// address is attempted before an IPv4 address of the first answer (the
// families alternate again), the failure lists the attempts in the order
// they started, as the report does, not in the order the candidates were
// planned.
func TestRacerFailureListsAttemptsInStartOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		v4b := netip.MustParseAddrPort("192.0.2.9:80")
		dead := outcome{kind: "dead"}
		fs := newFakeStack(map[netip.AddrPort]outcome{addrA: dead, addrB: dead, v4b: dead})
		cfg := &messages.ConnectionConfig{Remotes: named(), Stacks: []stacks.Stack{fs}, EstablishmentTimeout: time.Second,
			Resolver: timedResolver(dnsAnswer{after: 120 * time.Millisecond, addrs: []netip.AddrPort{addrA}},
				dnsAnswer{addrs: []netip.AddrPort{addrB, v4b}}, nil)}
		res := runRace(t, sys, cfg)
		require.ErrorIs(t, res.err, ErrEstablishmentTimeout)
		var f *EstablishmentFailure
		require.ErrorAs(t, res.err, &f)
		var report, failure []string
		for _, a := range res.report.Attempts {
			report = append(report, a.Endpoint)
		}
		for _, a := range f.Attempts {
			failure = append(failure, a.Endpoint)
		}
		require.Equal(t, []string{addrB.String(), addrA.String(), v4b.String()}, report, "IPv4, the late IPv6, IPv4")
		require.Equal(t, report, failure, "the failure lists the attempts in start order")
	})
}

// TestRacerLateSRVDotDropsTheFallback (fake time): a service's SRV answer
// is late, so its host name's addresses race with the IANA port (the
// fallback) after the resolution delay; the answer then says "." (RFC
// 2782: the service is decidedly not available at the domain): the
// fallback's attempt already running goes on, but its addresses not
// attempted yet are dropped, and the race fails once that attempt has,
// naming ErrServiceUnavailable, rather than going on to them.
func TestRacerLateSRVDotDropsTheFallback(t *testing.T) {
	warmGoResolver()
	ms := time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 200 * ms},
			addrB: {kind: "ok", after: 10 * ms}})
		res := timedResolver(dnsAnswer{addrs: []netip.AddrPort{addrA}}, dnsAnswer{addrs: []netip.AddrPort{addrB}}, nil)
		res.DNS = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			c, peer := net.Pipe()
			go pipeDNSPeer(peer, func(dnsmessage.Question) (time.Duration, []dnsmessage.SVCBResource, []dnsmessage.SRVResource) {
				return 100 * ms, nil, []dnsmessage.SRVResource{{Target: dnsmessage.MustNewName(".")}}
			})
			return c, nil
		}}
		cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{fs}, Resolver: res,
			Remotes: []*messages.Endpoint{{HostName: "he.test.", Service: "http", Port: 80}}}
		r := runRace(t, sys, cfg)
		require.Equal(t, []raceAttempt{{"fake", addrA, stacks.ResolutionDelay, stacks.ResolutionDelay + 200*ms, false}},
			raceAttempts(r.report), "only the fallback's attempt started before the SRV answer")
		require.ErrorIs(t, r.err, stacks.ErrServiceUnavailable)
		require.ErrorIs(t, r.err, syscall.ECONNREFUSED)
		require.Equal(t, stacks.ResolutionDelay+200*ms, r.elapsed)
	})
}
