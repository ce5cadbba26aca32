package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// This file is where racing happens (RFC 9623 §4.3, RFC 8305 §5): the only
// place that spawns or stops candidate actors. The order of attempts and
// their start times come from race_plan.go.
//
// Candidates start one at a time, each Connection Attempt Delay after the
// previous one, earlier attempts running on; an attempt that fails starts
// the next at once. Under opportunistic security a plain candidate is
// skipped while a secure attempt to its target runs (pickAttempt): it
// starts when that attempt fails or after fallbackHold.
//
// Candidates can join a race that runs: a DNS answer that comes after
// the first ones (RFC 8305 §3: an A answer after a positive AAAA answer
// that started the race, an AAAA answer later than the resolution delay)
// is planned again by the preconnection and merged into the candidates
// not started yet (candidatesReplanned, mergePlan). A candidate that joins
// starts on the same schedule: one Connection Attempt Delay after the last
// start, or at once when every attempt so far has failed.
//
// The first candidate fully established wins: no new attempt starts,
// every other candidate is stopped (its socket closed), a late second
// success is closed, never handed out, and a later DNS answer is ignored.
// When every attempt started has failed and no DNS answer is pending, the
// race fails with an *EstablishmentFailure listing them all.

// Racer messages.
type (
	// attemptTimer fires the next start; gen tells stale timers apart.
	attemptTimer   struct{ gen uint64 }
	candidateReady struct {
		idx int
		h   *Handoff
	}
	candidateFailed struct {
		idx int
		err error
	}
	// candidatesReplanned is a later DNS answer for the race: the
	// candidate list planned again over every address known now (empty
	// when planning failed: the race keeps its candidates), and whether
	// an answer is still pending.
	candidatesReplanned struct {
		cands []candidate
		more  bool
	}
)

// errCandidateGone: the candidate's socket was closed before the racer
// claimed it.
var errCandidateGone = errors.New("candidate socket closed before hand-over")

// racerActor runs one race over a candidate list that later DNS answers
// may extend. Everything it knows is keyed by candidate index (a
// candidate keeps its index): att[i] is the report entry of candidate i
// (nil until it starts), errs[i] why it failed. order lists the
// candidates started or to start, in the order of attempts (the plan's
// at first; after a merge the started ones first, see mergePlan): a
// candidate not in it is never started.
type racerActor struct {
	sys       *System
	spec      *connSpec
	cands     []candidate
	order     []int
	started   []int // in start order
	pending   bool  // a DNS answer may still add candidates
	delay     time.Duration
	t0        time.Time // offsets are measured from here (the Initiate)
	cacheKey  string    // "" when not caching
	lastStart time.Time
	gen       uint64
	timer     *time.Timer
	pids      map[string]int // running candidate pid -> index
	att       []*messages.EstablishmentAttempt
	errs      []error
	ended     []bool
	held      []bool // traced as AttemptHeld (SecureFallback only)
	live      int    // started, not ended
	report    *messages.EstablishmentReport
	done      bool // the outcome was sent: report is no longer ours
	self      *actor.PID
}

// newRacerActor races cands, in their order; pending: a DNS answer may
// still add candidates (candidatesReplanned).
func newRacerActor(s *System, spec *connSpec, cands []candidate, pending bool, delay time.Duration, t0 time.Time, cacheKey string, fromCache bool) actor.Actor {
	r := &racerActor{sys: s, spec: spec, cands: cands, pending: pending, delay: delay, t0: t0, cacheKey: cacheKey,
		pids: map[string]int{}, report: &messages.EstablishmentReport{FromCache: fromCache}}
	r.order = make([]int, len(cands))
	for i := range r.order {
		r.order[i] = i
	}
	r.grow()
	return r
}

// grow sizes what is kept per candidate to the candidates.
func (r *racerActor) grow() {
	n := len(r.cands)
	r.att = append(r.att, make([]*messages.EstablishmentAttempt, n-len(r.att))...)
	r.errs = append(r.errs, make([]error, n-len(r.errs))...)
	r.ended = append(r.ended, make([]bool, n-len(r.ended))...)
	r.held = append(r.held, make([]bool, n-len(r.held))...)
}

func (r *racerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.self = ctx.Self()
		r.startNext(ctx)
	case *attemptTimer:
		if m.gen == r.gen && !r.done {
			r.startNext(ctx)
		}
	case *candidateFailed:
		r.failedAttempt(ctx, m.idx, m.err)
	case *candidateReady:
		r.ready(ctx, m)
	case *candidatesReplanned:
		r.replanned(ctx, m)
	case *establishTimeout:
		if !r.done {
			r.lose(ctx, m.cause())
		}
	case *actor.Terminated:
		delete(r.pids, m.Who.Id)
	case *actor.Stopping:
		r.stopTimer()
		if !r.done {
			r.cancelLive(time.Since(r.t0)) // stopped from above: Abort, ctx, shutdown
		}
	}
}

func (r *racerActor) stopTimer() {
	r.gen++
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// startNext starts the next candidate pickAttempt allows and arms the
// timer for the one after; when every candidate left is held back, the
// timer is armed for the first hold's end (a failure ends holds sooner).
func (r *racerActor) startNext(ctx actor.Context) {
	if r.done || !r.unstarted() {
		return
	}
	now := time.Now()
	view, st := r.view()
	pos, wake := pickAttempt(view, st, r.spec.cfg.SecureFallback, r.fallbackHold(), now)
	if r.spec.cfg.SecureFallback {
		r.traceHeld(pos, now)
	}
	if pos < 0 {
		if !wake.IsZero() {
			r.armTimer(ctx, wake.Sub(now))
		}
		return
	}
	idx := r.order[pos]
	c := r.cands[idx]
	// configs are immutable: shared, not copied. The connection replaces
	// its spec and cfg on SetProperty, with StackOptions derived from the
	// properties of the moment (setProperty): a re-establishment's racer
	// dials with the current ones, a race already running keeps its own.
	opts := &r.spec.cfg.StackOptions
	props := controlProps(func() actor.Actor { return newCandidateActor(idx, c, opts) })
	pid := ctx.SpawnPrefix(props, "candidate")
	r.pids[pid.Id] = idx
	r.live++
	r.started = append(r.started, idx)
	r.lastStart = now
	off := now.Sub(r.t0).Nanoseconds()
	a := &messages.EstablishmentAttempt{Endpoint: c.endpoint(), Stack: c.stack.Name(), Path: c.iface,
		StartOffsetNs: off, EndOffsetNs: -1, Label: c.label}
	r.att[idx] = a
	r.report.Attempts = append(r.report.Attempts, a)
	r.traceAttempt("AttemptStarted", idx, nil, off)
	if r.unstarted() {
		r.armTimer(ctx, nextStart(now, r.lastStart, r.delay, false).Sub(now))
	} else {
		r.stopTimer()
	}
}

// traceHeld traces AttemptHeld, once, for every candidate pickAttempt
// passed over: the unstarted ones before position pos of the order (all
// of them when pos < 0).
func (r *racerActor) traceHeld(pos int, now time.Time) {
	end := pos
	if pos < 0 {
		end = len(r.order)
	}
	for _, i := range r.order[:end] {
		if r.att[i] == nil && !r.held[i] {
			r.held[i] = true
			r.traceAttempt("AttemptHeld", i, nil, now.Sub(r.t0).Nanoseconds())
		}
	}
}

// armTimer makes the next attemptTimer fire after d, replacing any other.
func (r *racerActor) armTimer(ctx actor.Context, d time.Duration) {
	r.stopTimer()
	gen, root, self := r.gen, ctx.ActorSystem().Root, ctx.Self()
	r.timer = time.AfterFunc(d, func() { root.Send(self, &attemptTimer{gen: gen}) })
}

// fallbackHold is how long a plain attempt waits for a secure one that
// neither wins nor fails: secureFallbackHold, but at most half of the
// establishment timeout and half of what Initiate's ctx leaves, so that
// the fallback gets its chance within them.
func (r *racerActor) fallbackHold() time.Duration {
	hold := secureFallbackHold
	if d := r.spec.cfg.EstablishmentTimeout; d > 0 {
		hold = min(hold, d/2)
	}
	if dl := r.spec.deadline; dl != 0 {
		if left := time.Unix(0, dl).Sub(r.t0); left > 0 { // a later race (re-establishment) is past it
			hold = min(hold, left/2)
		}
	}
	return hold
}

// peerSpokeTLS reports whether err is the failure of a TLS handshake whose
// peer answered in TLS.
func peerSpokeTLS(err error) bool {
	var he *stacks.TLSHandshakeError
	return errors.As(err, &he) && he.PeerAnswered
}

// unstarted reports whether a candidate of the order has not started yet.
func (r *racerActor) unstarted() bool {
	return slices.ContainsFunc(r.order, func(i int) bool { return r.att[i] == nil })
}

// view is what pickAttempt needs: the candidates in the order of
// attempts, and the state of each.
func (r *racerActor) view() ([]candidate, []attemptState) {
	cands := make([]candidate, len(r.order))
	st := make([]attemptState, len(r.order))
	for pos, i := range r.order {
		cands[pos] = r.cands[i]
		if a := r.att[i]; a != nil {
			st[pos] = attemptState{start: r.t0.Add(time.Duration(a.StartOffsetNs)), ended: r.ended[i],
				spokeTLS: r.ended[i] && peerSpokeTLS(r.errs[i])}
		}
	}
	return cands, st
}

// replanned merges a later DNS answer into the race (mergePlan). A
// candidate that joins starts one Connection Attempt Delay after the last
// start, or at once when every attempt so far has failed (the race was
// waiting for this answer); when none joins and no answer is pending any
// more, a race whose attempts all failed fails. A race that has ended
// ignores the answer: it keeps no unstarted attempt (RFC 8305 §5).
func (r *racerActor) replanned(ctx actor.Context, m *candidatesReplanned) {
	if r.done {
		return
	}
	r.pending = m.more
	if len(m.cands) > 0 {
		r.cands, r.order = mergePlan(r.cands, r.started, m.cands)
		r.grow()
	}
	switch {
	case r.live == 0:
		r.startNext(ctx)
		if r.live == 0 && !r.pending {
			r.lose(ctx, nil)
		}
	case r.unstarted():
		now := time.Now()
		if d := nextStart(now, r.lastStart, r.delay, false).Sub(now); d > 0 {
			r.armTimer(ctx, d)
		} else {
			r.startNext(ctx)
		}
	}
}

// endAttempt closes candidate idx's report entry; false when it was not
// running (never started, or already ended).
func (r *racerActor) endAttempt(idx int, err error, off int64) bool {
	if idx < 0 || idx >= len(r.cands) || r.att[idx] == nil || r.ended[idx] {
		return false
	}
	r.ended[idx] = true
	r.live--
	r.att[idx].EndOffsetNs = off
	if err != nil {
		r.errs[idx] = err
		r.att[idx].Error = err.Error()
	}
	return true
}

func (r *racerActor) failedAttempt(ctx actor.Context, idx int, err error) {
	if r.done {
		return // stopped after the race ended; AttemptCancelled was traced
	}
	off := time.Since(r.t0).Nanoseconds()
	if !r.endAttempt(idx, err, off) {
		return
	}
	r.traceAttempt("AttemptFailed", idx, err, off)
	r.startNext(ctx) // a failed attempt starts the next one at once
	if r.live == 0 && !r.done && !r.pending {
		// nothing left to start (a held candidate waits only on a running
		// attempt), and no DNS answer can add one
		r.lose(ctx, nil)
	}
}

func (r *racerActor) ready(ctx actor.Context, m *candidateReady) {
	if r.done {
		m.h.Abandon() // a late second success is closed, never handed out
		return
	}
	t, ok := m.h.Claim()
	if !ok {
		r.failedAttempt(ctx, m.idx, errCandidateGone)
		return
	}
	now := time.Since(r.t0)
	if !r.endAttempt(m.idx, nil, now.Nanoseconds()) {
		_ = t.Abort() // not a running attempt of ours: cannot happen
		return
	}
	r.done = true
	r.stopTimer()
	c := r.cands[m.idx]
	r.att[m.idx].Won = true
	r.report.DurationNs = now.Nanoseconds()
	r.traceAttempt("AttemptWon", m.idx, nil, now.Nanoseconds())
	r.cancelLive(now)
	if r.cacheKey != "" {
		cacheFor(r.sys).store(r.cacheKey, raceWinner{stack: c.stack.Name(), remote: c.remote, path: c.path, at: time.Now()})
	}
	offered := &transportOffered{stack: c.stack.Name(), local: t.LocalAddr(), remote: t.RemoteAddr(), report: r.report}
	if r.spec.link.offerTransport(t) {
		ctx.Send(ctx.Parent(), &raceDone{offered: offered})
	} else {
		ctx.Send(ctx.Parent(), &raceDone{err: &EstablishmentFailure{Err: ErrClosed, Report: r.report}})
	}
	// the winner is handed over first: stopping a loser waits (briefly,
	// inline) until its cancelled dial has returned
	for _, pid := range ctx.Children() {
		ctx.Stop(pid) // losers: their Stopping closes their sockets
	}
}

// cancelLive traces every running attempt as cancelled; their report
// entries keep EndOffsetNs -1 (stopped unfinished).
func (r *racerActor) cancelLive(now time.Duration) {
	for i, a := range r.att {
		if a != nil && !r.ended[i] {
			r.traceAttempt("AttemptCancelled", i, nil, now.Nanoseconds())
		}
	}
}

// lose ends the race without a winner: every attempt failed (cause nil),
// or the establishment timed out (cause ErrEstablishmentTimeout; running
// attempts end with that error).
func (r *racerActor) lose(ctx actor.Context, cause error) {
	off := time.Since(r.t0).Nanoseconds()
	for i, a := range r.att {
		if a != nil && !r.ended[i] {
			r.endAttempt(i, cause, off)
			r.traceAttempt("AttemptCancelled", i, cause, off)
		}
	}
	r.done = true
	r.stopTimer()
	r.report.DurationNs = off
	f := &EstablishmentFailure{Err: cause, Report: r.report}
	for i, a := range r.att {
		if a != nil {
			f.Attempts = append(f.Attempts, AttemptError{Endpoint: a.Endpoint, Stack: a.Stack, Err: r.errs[i]})
		}
	}
	if r.cacheKey != "" && r.report.FromCache && !errors.Is(cause, context.Canceled) {
		cacheFor(r.sys).forget(r.cacheKey) // the cached winner failed too (not: the application gave up)
	}
	for _, pid := range ctx.Children() {
		ctx.Stop(pid)
	}
	ctx.Send(ctx.Parent(), &raceDone{err: f})
}

func (r *racerActor) traceAttempt(event string, idx int, err error, off int64) {
	c := r.cands[idx]
	if log := r.sys.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"connection", r.spec.id, "group", r.spec.groupID, "candidate", idx,
			"stack", c.stack.Name(), "endpoint", c.endpoint(), "offset", time.Duration(off)}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		log.Debug("racing: "+event, attrs...)
	}
	if !r.sys.Tracing() {
		return
	}
	rec := &messages.TraceRecord{Kind: "candidate", Event: event, ConnectionId: r.spec.id, GroupId: r.spec.groupID,
		Candidate: fmt.Sprint(idx), Stack: c.stack.Name(), Remote: c.endpoint(), OffsetNs: off}
	if err != nil {
		rec.Error = err.Error()
	}
	r.sys.trace(rec)
}

// HandleFailure makes the racer its candidates' supervisor: a candidate
// that panics is stopped (its Stopping closes its socket) and counts as a
// failed attempt. It runs on the racer's own goroutine.
func (r *racerActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	sup.StopChildren(child)
	if idx, ok := r.pids[child.Id]; ok {
		r.sys.AS.Root.Send(r.self, &candidateFailed{idx: idx, err: supervision.FromFailure("candidate", reason)})
	}
}

// candidateActor is one attempt: it dials in a goroutine it owns and holds
// the socket until the racer claims it; when stopped first, it closes it.
//
// It runs on controlDispatcher (system.go): the dial goroutine, once it
// has posted its result, runs the candidate, the racer, the preconnection
// and the connection up to Ready. So it is counted in dialing only until
// the dial has returned and its result is in res, never while it posts:
// Stopping waits for dialing and may run on that very goroutine (the
// winner is stopped by the race it won) or on another one.
type candidateActor struct {
	idx     int
	c       candidate
	opts    *stacks.Options
	cancel  context.CancelFunc
	dialing sync.WaitGroup
	res     dialResult // the dial's outcome, once dialing is done
	handled bool
	h       *Handoff
}

type dialResult struct {
	t   stacks.Transport
	err error
}

func newCandidateActor(idx int, c candidate, opts *stacks.Options) actor.Actor {
	return &candidateActor{idx: idx, c: c, opts: opts}
}

func (a *candidateActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		dctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		root, self := ctx.ActorSystem().Root, ctx.Self()
		a.dialing.Add(1)
		go func() {
			growStack() // this goroutine runs the race's end up to Ready
			t, err := dialContained(dctx, a.c, *a.opts)
			a.res = dialResult{t: t, err: err}
			stopped := dctx.Err() != nil // by Stopping, which closes a.res.t
			a.dialing.Done()
			if !stopped {
				root.Send(self, &dialResult{t: t, err: err})
			}
		}()
	case *dialResult:
		a.handled = true
		if m.err != nil {
			ctx.Send(ctx.Parent(), &candidateFailed{idx: a.idx, err: m.err})
			ctx.Stop(ctx.Self())
			return
		}
		a.h = NewHandoff(m.t)
		ctx.Send(ctx.Parent(), &candidateReady{idx: a.idx, h: a.h})
	case *actor.Stopping:
		a.cancel()
		a.dialing.Wait() // dialing returns promptly once cancelled
		if a.h != nil {
			a.h.Abandon()
		} else if !a.handled && a.res.t != nil {
			_ = a.res.t.Abort() // dialed, but the result never reached us
		}
	}
}

// dialContained dials c; a panicking stack gives a *supervision.PanicError
// (the attempt fails, the process goes on).
func dialContained(ctx context.Context, c candidate, opts stacks.Options) (t stacks.Transport, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, &supervision.PanicError{Where: "dial " + c.stack.Name(), Value: p, Stack: debug.Stack()}
		}
	}()
	opts.Local, opts.Interface, opts.Path = localFor(c), c.iface, c.path
	if name, ok := c.serverName(); ok {
		opts.ServerName = name // the endpoint this attempt reaches, not the first one
	}
	t, err = c.stack.Dial(ctx, c.remote, opts)
	switch {
	case err != nil && t != nil:
		_ = t.Abort()
		t = nil
	case err == nil && t == nil:
		err = errors.New("stack returned no transport")
	}
	return t, err
}

func localFor(c candidate) netip.AddrPort {
	if !c.local.IsValid() {
		return netip.AddrPort{}
	}
	return c.local
}
