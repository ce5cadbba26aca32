package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// outcome is what the fake stack does when dialing one address.
type outcome struct {
	// kind: "dead" (blocks until cancelled), "refused", "ok", "panic", or
	// "stubborn" (ok, but ignores cancellation: the connect completed
	// just as the racer gave up on it).
	kind  string
	after time.Duration // how long the dial takes ("refused", "ok")
}

// fakeStack dials by table: each remote address has an outcome. It records
// every dial and every transport it made.
type fakeStack struct {
	name   string
	secure bool // its Capabilities say Secure
	plan   map[netip.AddrPort]outcome
	mu     sync.Mutex
	dials  []netip.AddrPort
	made   map[netip.AddrPort]*pipeTransport
}

func newFakeStack(plan map[netip.AddrPort]outcome) *fakeStack {
	return &fakeStack{name: "fake", plan: plan, made: map[netip.AddrPort]*pipeTransport{}}
}

// newSecureFakeStack is newFakeStack named "sec", with Secure capabilities.
func newSecureFakeStack(plan map[netip.AddrPort]outcome) *fakeStack {
	s := newFakeStack(plan)
	s.name, s.secure = "sec", true
	return s
}

func (s *fakeStack) Name() string { return s.name }
func (s *fakeStack) Capabilities() stacks.Capabilities {
	return stacks.Capabilities{Reliability: true, Secure: s.secure}
}
func (s *fakeStack) Listen(context.Context, stacks.Options) (stacks.Listener, error) {
	return nil, errors.New("fake stack cannot listen")
}

func (s *fakeStack) Dial(ctx context.Context, remote netip.AddrPort, _ stacks.Options) (stacks.Transport, error) {
	s.mu.Lock()
	s.dials = append(s.dials, remote)
	s.mu.Unlock()
	o := s.plan[remote]
	if o.kind == "dead" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if o.kind == "panic" {
		panic("fake stack panics")
	}
	t := time.NewTimer(o.after)
	defer t.Stop()
	if o.kind == "stubborn" {
		<-t.C
	} else {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if o.kind == "refused" {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	a, b := net.Pipe()
	p := &pipeTransport{Conn: a, peer: b, remote: remote}
	s.mu.Lock()
	s.made[remote] = p
	s.mu.Unlock()
	return p, nil
}

func (s *fakeStack) transport(remote netip.AddrPort) *pipeTransport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.made[remote]
}

// pipeTransport is a net.Pipe end as a stacks.Transport; closing it closes
// the peer end too.
type pipeTransport struct {
	net.Conn
	peer   net.Conn
	remote netip.AddrPort
	closed atomic.Bool
}

func (p *pipeTransport) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(p.remote) }
func (p *pipeTransport) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40000"))
}
func (p *pipeTransport) CloseWrite() error { return p.peer.Close() }
func (p *pipeTransport) Abort() error      { return p.Close() }
func (p *pipeTransport) Close() error {
	p.closed.Store(true)
	_ = p.peer.Close()
	return p.Conn.Close()
}

// raceResult is what one establishment through the real actors gave.
type raceResult struct {
	err     error
	report  *messages.EstablishmentReport
	elapsed time.Duration
}

// runRace establishes one connection in sys with cfg, waits for Ready or
// the EstablishmentError, reads the report, and aborts the connection.
func runRace(t *testing.T, sys *System, cfg *messages.ConnectionConfig) raceResult {
	t.Helper()
	return runRaceBy(t, sys, cfg, time.Time{})
}

// runRaceBy is runRace for an Initiate whose ctx has deadline (zero: none).
func runRaceBy(t *testing.T, sys *System, cfg *messages.ConnectionConfig, deadline time.Time) raceResult {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	link := NewLink(sys.NewID(), 0, 0, true)
	res, err := Ask(ctx, sys, sys.Root, &InitiateConnection{Config: cfg, Link: link, Deadline: deadline})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	out := raceResult{err: link.EstablishmentErr(), elapsed: time.Since(start)}
	if out.err == nil {
		info, err := Ask(ctx, sys, conn, &messages.GetConnectionInfo{})
		require.NoError(t, err)
		out.report = info.(*messages.ConnectionInfo).EstablishmentReport
		_, err = Ask(ctx, sys, conn, &messages.AbortConnection{})
		require.NoError(t, err)
	} else {
		var f *EstablishmentFailure
		require.ErrorAs(t, out.err, &f)
		out.report = f.Report
	}
	<-link.Done()
	return out
}

// tracer collects trace records of kind "candidate".
type tracer struct {
	mu   sync.Mutex
	recs []*messages.TraceRecord
}

func (tr *tracer) record(r *messages.TraceRecord) {
	if r.Kind != "candidate" {
		return
	}
	tr.mu.Lock()
	tr.recs = append(tr.recs, r)
	tr.mu.Unlock()
}

func (tr *tracer) events() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, r := range tr.recs {
		out = append(out, r.Event+" "+r.Candidate)
	}
	return out
}

func shutdown(t *testing.T, sys *System) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, sys.Shutdown(ctx))
	// protoactor's dead-letter throttle leaves a goroutine that sleeps one
	// throttle interval (10 ms, see NewSystem); in a synctest bubble it
	// must end before the test does. In fake time this costs nothing.
	time.Sleep(20 * time.Millisecond)
}

var (
	addrA = netip.MustParseAddrPort("[2001:db8::1]:80")
	addrB = netip.MustParseAddrPort("192.0.2.1:80")
	addrC = netip.MustParseAddrPort("192.0.2.2:80")
)

func endpoints(addrs ...netip.AddrPort) []*messages.Endpoint {
	var out []*messages.Endpoint
	for _, a := range addrs {
		out = append(out, &messages.Endpoint{IpAddress: a.Addr().String(), Port: uint32(a.Port())})
	}
	return out
}

// TestRacerSchedule runs races through the real root, connection,
// preconnection, racer and candidate actors with a fake stack, in fake
// time: start offsets are exact.
func TestRacerSchedule(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		plan    map[netip.AddrPort]outcome
		delay   time.Duration
		timeout time.Duration
		// wantStarts are the start offsets of the attempts, in order;
		// wantEnds their end offsets (-1: cancelled unfinished).
		wantStarts, wantEnds []time.Duration
		wantWon              int // index of the winning attempt, -1 none
		wantErr              error
		wantEvents           []string
	}{
		{
			name:       "dead first, second starts after the delay",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok", after: 10 * ms}},
			wantStarts: []time.Duration{0, 250 * ms}, wantEnds: []time.Duration{-1, 260 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptStarted 1", "AttemptWon 1", "AttemptCancelled 0"},
		},
		{
			name:       "refused first, second starts at once",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 5 * ms}, addrB: {kind: "ok", after: 10 * ms}},
			wantStarts: []time.Duration{0, 5 * ms}, wantEnds: []time.Duration{5 * ms, 15 * ms}, wantWon: 1,
			wantEvents: []string{"AttemptStarted 0", "AttemptFailed 0", "AttemptStarted 1", "AttemptWon 1"},
		},
		{
			name:       "per-preconnection delay",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok"}},
			delay:      40 * ms,
			wantStarts: []time.Duration{0, 40 * ms}, wantEnds: []time.Duration{-1, 40 * ms}, wantWon: 1,
		},
		{
			name:       "delay clamped to 2s",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok"}},
			delay:      time.Hour,
			wantStarts: []time.Duration{0, 2 * time.Second}, wantEnds: []time.Duration{-1, 2 * time.Second}, wantWon: 1,
		},
		{
			name:       "first wins before the delay, no second attempt",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 100 * ms}, addrB: {kind: "ok"}},
			wantStarts: []time.Duration{0}, wantEnds: []time.Duration{100 * ms}, wantWon: 0,
		},
		{
			name:       "all dead, establishment timeout",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "dead"}, addrC: {kind: "dead"}},
			timeout:    600 * ms,
			wantStarts: []time.Duration{0, 250 * ms, 500 * ms}, wantEnds: []time.Duration{600 * ms, 600 * ms, 600 * ms},
			wantWon: -1, wantErr: ErrEstablishmentTimeout,
		},
		{
			name:       "all refused",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "refused", after: ms}, addrB: {kind: "refused", after: 2 * ms}, addrC: {kind: "refused", after: 3 * ms}},
			wantStarts: []time.Duration{0, ms, 3 * ms}, wantEnds: []time.Duration{ms, 3 * ms, 6 * ms},
			wantWon: -1, wantErr: syscall.ECONNREFUSED,
		},
		{
			name:       "panicking candidate counts as failed",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "panic"}, addrB: {kind: "ok", after: 10 * ms}},
			wantStarts: []time.Duration{0, 0}, wantEnds: []time.Duration{0, 10 * ms}, wantWon: 1,
		},
		{
			name:       "dead, refused, ok",
			plan:       map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "refused", after: 20 * ms}, addrC: {kind: "ok", after: 300 * ms}},
			wantStarts: []time.Duration{0, 250 * ms, 270 * ms}, wantEnds: []time.Duration{-1, 270 * ms, 570 * ms}, wantWon: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &tracer{}
				sys := NewSystem(Config{Tracer: tr.record})
				defer shutdown(t, sys)
				fs := newFakeStack(tt.plan)
				cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA, addrB, addrC), Stacks: []stacks.Stack{fs},
					AttemptDelay: tt.delay, EstablishmentTimeout: tt.timeout}
				got := runRace(t, sys, cfg)
				if tt.wantErr != nil {
					require.ErrorIs(t, got.err, tt.wantErr)
				} else {
					require.NoError(t, got.err)
				}
				require.NotNil(t, got.report)
				require.Len(t, got.report.Attempts, len(tt.wantStarts))
				for i, a := range got.report.Attempts {
					require.Equal(t, tt.wantStarts[i], time.Duration(a.StartOffsetNs), "start of attempt %d", i)
					require.Equal(t, tt.wantEnds[i], time.Duration(a.EndOffsetNs), "end of attempt %d", i)
					require.Equal(t, i == tt.wantWon, a.Won, "won flag of attempt %d", i)
					require.Equal(t, "fake", a.Stack)
				}
				if tt.wantErr != nil {
					var f *EstablishmentFailure
					require.ErrorAs(t, got.err, &f)
					require.Len(t, f.Attempts, len(tt.wantStarts), "the failure lists every attempt")
					for _, a := range f.Attempts {
						require.Error(t, a.Err)
					}
				}
				if tt.wantEvents != nil {
					require.Equal(t, tt.wantEvents, tr.events())
				}
			})
		})
	}
}

// TestRacerSecureFallback: under opportunistic security (SecureFallback)
// a plain attempt waits while the secure attempt to its remote runs, until
// that attempt fails or has run for secureFallbackHold; without it, the
// plain attempt starts after the attempt delay and can win against a slow
// TLS handshake (the plain TCP to a TLS port this fixes).
// raceAttempt is one attempt of a race report, as the racer tables
// expect them.
type raceAttempt struct {
	stack      string
	remote     netip.AddrPort
	start, end time.Duration // end -1: cancelled unfinished
	won        bool
}

// raceAttempts are report's attempts, in start order.
func raceAttempts(report *messages.EstablishmentReport) []raceAttempt {
	var got []raceAttempt
	for _, a := range report.Attempts {
		got = append(got, raceAttempt{a.Stack, netip.MustParseAddrPort(a.Endpoint), time.Duration(a.StartOffsetNs),
			time.Duration(a.EndOffsetNs), a.Won})
	}
	return got
}

func TestRacerSecureFallback(t *testing.T) {
	ms := time.Millisecond
	type attempt = raceAttempt
	tests := []struct {
		name     string
		secure   map[netip.AddrPort]outcome
		plain    map[netip.AddrPort]outcome
		remotes  []netip.AddrPort
		fallback bool
		timeout  time.Duration // the establishment timeout
		deadline time.Duration // Initiate's ctx deadline, from the start
		want     []attempt
		events   []string // the trace, when given
	}{
		{
			name:   "slow secure handshake wins, plain never starts",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 900 * ms}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true,
			want:   []attempt{{"sec", addrA, 0, 900 * ms, true}},
			events: []string{"AttemptStarted 0", "AttemptHeld 1", "AttemptWon 0"},
		},
		{
			name:   "without fallback plain starts after the delay and wins",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: 900 * ms}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA},
			want:    []attempt{{"sec", addrA, 0, -1, false}, {"fake", addrA, 250 * ms, 251 * ms, true}},
		},
		{
			name:   "secure fails: plain starts at once",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 80 * ms}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true,
			want: []attempt{{"sec", addrA, 0, 80 * ms, false}, {"fake", addrA, 80 * ms, 81 * ms, true}},
		},
		{
			name:   "secure silent: plain starts after the hold",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "dead"}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true,
			want: []attempt{{"sec", addrA, 0, -1, false}, {"fake", addrA, secureFallbackHold, secureFallbackHold + ms, true}},
		},
		{
			name:   "a short establishment timeout halves the hold",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "dead"}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true, timeout: time.Second,
			want: []attempt{{"sec", addrA, 0, -1, false}, {"fake", addrA, 500 * ms, 501 * ms, true}},
		},
		{
			name:   "a near ctx deadline halves the hold",
			secure: map[netip.AddrPort]outcome{addrA: {kind: "dead"}}, plain: map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true, deadline: 1200 * ms,
			want: []attempt{{"sec", addrA, 0, -1, false}, {"fake", addrA, 600 * ms, 601 * ms, true}},
		},
		{
			name:    "a held plain attempt is skipped for the next one",
			secure:  map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "refused", after: 300 * ms}},
			plain:   map[netip.AddrPort]outcome{addrA: {kind: "ok", after: ms}, addrB: {kind: "ok", after: 10 * ms}},
			remotes: []netip.AddrPort{addrA, addrB}, fallback: true,
			want: []attempt{{"sec", addrA, 0, -1, false}, {"sec", addrB, 250 * ms, 550 * ms, false}, {"fake", addrB, 550 * ms, 560 * ms, true}},
			events: []string{"AttemptStarted 0", "AttemptStarted 1", "AttemptHeld 2", "AttemptHeld 3", "AttemptFailed 1",
				"AttemptStarted 3", "AttemptWon 3", "AttemptCancelled 0"},
		},
		{
			name:    "every attempt fails: the race fails after the last",
			secure:  map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 5 * ms}},
			plain:   map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 5 * ms}},
			remotes: []netip.AddrPort{addrA}, fallback: true,
			want: []attempt{{"sec", addrA, 0, 5 * ms, false}, {"fake", addrA, 5 * ms, 10 * ms, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &tracer{}
				sys := NewSystem(Config{Tracer: tr.record})
				defer shutdown(t, sys)
				sec := newSecureFakeStack(tt.secure)
				cfg := &messages.ConnectionConfig{Remotes: endpoints(tt.remotes...),
					Stacks: []stacks.Stack{sec, newFakeStack(tt.plain)}, SecureFallback: tt.fallback,
					EstablishmentTimeout: tt.timeout}
				var deadline time.Time
				if tt.deadline > 0 {
					deadline = time.Now().Add(tt.deadline)
				}
				res := runRaceBy(t, sys, cfg, deadline)
				require.Equal(t, tt.want, raceAttempts(res.report))
				if tt.events != nil {
					require.Equal(t, tt.events, tr.events())
				}
			})
		})
	}
}

// TestRacerClosesLateSecondSuccess: the first candidate wins; the second,
// already dialing, succeeds later and its transport is closed.
func TestRacerClosesLateSecondSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{
			addrA: {kind: "ok", after: 300 * time.Millisecond},      // wins at 300 ms
			addrB: {kind: "stubborn", after: 51 * time.Millisecond}, // starts at 250 ms, succeeds at 301 ms
		})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA, addrB), Stacks: []stacks.Stack{fs}}
		link := NewLink(sys.NewID(), 0, 0, true)
		res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
		require.NoError(t, err)
		<-link.Ready()
		require.NoError(t, link.EstablishmentErr())
		time.Sleep(10 * time.Millisecond) // fake time: let the loser's dial finish
		synctest.Wait()
		require.False(t, fs.transport(addrA).closed.Load(), "the winner stays open")
		late := fs.transport(addrB)
		require.NotNil(t, late)
		require.True(t, late.closed.Load(), "a late second success is closed")
		_, err = Ask(context.Background(), sys, res.(*ConnectionStarted).Conn, &messages.AbortConnection{})
		require.NoError(t, err)
		<-link.Done()
		synctest.Wait()
		require.True(t, fs.transport(addrA).closed.Load())
	})
}

// TestRacerSecondSuccessSameInstant: both candidates succeed at the same
// instant; exactly one is handed out, the other closed.
func TestRacerSecondSuccessSameInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{
			addrA: {kind: "ok", after: 300 * time.Millisecond},
			addrB: {kind: "ok", after: 50 * time.Millisecond},
		})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA, addrB), Stacks: []stacks.Stack{fs}}
		got := runRace(t, sys, cfg)
		require.NoError(t, got.err)
		synctest.Wait()
		a, b := fs.transport(addrA), fs.transport(addrB)
		require.NotNil(t, a)
		require.True(t, a.closed.Load()) // the connection was aborted
		require.NotNil(t, b, "both dials completed")
		require.True(t, b.closed.Load(), "the second success is closed")
		won := 0
		for _, at := range got.report.Attempts {
			if at.Won {
				won++
			}
		}
		require.Equal(t, 1, won)
	})
}

// TestRacerCache: the second race to the same remotes tries the last
// winner first and says so; isolateSession turns that off.
// TestRacerCacheKeepsTryingSecureFirst: under opportunistic security a
// plain winner from the race cache does not skip the secure attempt the
// next time (a TLS attempt that failed once, say blocked by an attacker,
// would otherwise be skipped for as long as the cache keeps the entry):
// the secure attempt starts first again, and the plain one after it
// failed. Without the fallback, the cached winner goes first alone.
func TestRacerCacheKeepsTryingSecureFirst(t *testing.T) {
	for _, fallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sys := NewSystem(Config{})
				defer shutdown(t, sys)
				sec := newSecureFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "refused", after: 5 * time.Millisecond}})
				plain := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "ok", after: time.Millisecond}})
				cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA), Stacks: []stacks.Stack{sec, plain},
					SecureFallback: fallback}
				first := runRace(t, sys, cfg)
				require.NoError(t, first.err)
				second := runRace(t, sys, cfg)
				require.NoError(t, second.err)
				require.True(t, second.report.FromCache)
				var got []string
				for _, a := range second.report.Attempts {
					got = append(got, a.Stack)
				}
				if fallback {
					require.Equal(t, []string{"sec", "fake"}, got, "the secure attempt first again")
				} else {
					require.Equal(t, []string{"fake"}, got, "the cached winner alone")
				}
			})
		})
	}
}

func TestRacerCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "dead"}, addrB: {kind: "ok", after: time.Millisecond}})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA, addrB), Stacks: []stacks.Stack{fs}}

		first := runRace(t, sys, cfg)
		require.NoError(t, first.err)
		require.False(t, first.report.FromCache)
		require.Len(t, first.report.Attempts, 2)

		second := runRace(t, sys, cfg)
		require.NoError(t, second.err)
		require.True(t, second.report.FromCache)
		require.Len(t, second.report.Attempts, 1)
		require.Equal(t, addrB.String(), second.report.Attempts[0].Endpoint)
		require.Equal(t, time.Millisecond, second.elapsed)

		isolated := &messages.ConnectionConfig{Remotes: cfg.Remotes, Stacks: cfg.Stacks,
			Properties: &messages.Properties{Values: map[string]*messages.PropertyValue{
				"isolateSession": {Kind: &messages.PropertyValue_BoolValue{BoolValue: true}}}}}
		third := runRace(t, sys, isolated)
		require.NoError(t, third.err)
		require.False(t, third.report.FromCache)
		require.Len(t, third.report.Attempts, 2)
	})
}
