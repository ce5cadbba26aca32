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
//
// 0-RTT (InitiateWithSend of a safely replayable message, with a cached
// session ticket): the stack returns a transport before its handshake has
// completed (stacks.HandshakeWaiter), on which the first message may leave
// at once as early data, before any packet has come back from the server.
// Such an attempt is not established: the racer hands its transport over
// tentatively (transportOffered.tentative), so that the connection sends
// the first message on it, and the race goes on meanwhile (the next
// attempts start on schedule). The attempt wins when its handshake
// completes (candidateConfirmed: the connection is told
// transportConfirmed, and only then is Ready); it fails like any attempt
// when its handshake fails (the server gone, a dead address: the
// connection drops the transport, transportRetracted, and will send the
// first message again on the next one). Another attempt fully established
// first wins instead (the connection drops the tentative transport as it
// takes the winner's). One tentative transport at a time: another 0-RTT
// attempt whose dial returns meanwhile waits (tentWaiting), and is handed
// over if the tentative one fails, or wins if its handshake completes
// first. A server that rejects the early data completes the handshake
// all the same: the attempt then wins with a new stream of its
// connection (the early data went nowhere: the first message goes again).

// Racer messages.
type (
	// attemptTimer fires the next start; gen tells stale timers apart.
	attemptTimer   struct{ gen uint64 }
	candidateReady struct {
		idx int
		h   *Handoff
		// early: the transport's handshake has not completed (0-RTT, see
		// above): the attempt has not won yet
		early bool
	}
	// candidateConfirmed: the handshake of an early attempt completed
	// (its transport, already reported, is established now)
	candidateConfirmed struct{ idx int }
	candidateFailed    struct {
		idx int
		err error
	}
	// candidatesReplanned is a later DNS answer for the race: the
	// candidate list planned again over every address known now, and
	// whether an answer is still pending. failed is why planning failed
	// (resolved.err: no remote endpoint is left, a late SRV answer with
	// a "." target or targets that do not resolve having taken the last
	// one's fallback addresses, say), cands then empty: the candidates
	// not started yet are dropped, and failed is the race's failure
	// should every started attempt fail.
	candidatesReplanned struct {
		cands      []candidate
		more       bool
		unresolved error // resolved.unresolved
		failed     error
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
	sys     *System
	spec    *connSpec
	cands   []candidate
	order   []int
	started []int // in start order
	pending bool  // a DNS answer may still add candidates
	// unresolved: why the remote endpoints that did not resolve were
	// dropped (resolved.unresolved), the failure's cause when every
	// attempt fails
	unresolved error
	delay      time.Duration
	t0         time.Time // offsets are measured from here (the Initiate)
	cacheKey   string    // "" when not caching
	lastStart  time.Time
	gen        uint64
	timer      *time.Timer
	pids       map[string]int // running candidate pid -> index
	att        []*messages.EstablishmentAttempt
	errs       []error
	ended      []bool
	held       []bool // traced as AttemptHeld (SecureFallback only)
	live       int    // started, not ended
	report     *messages.EstablishmentReport
	done       bool // the outcome was sent: report is no longer ours
	self       *actor.PID
	// tent is the candidate whose 0-RTT transport the connection holds
	// tentatively (-1: none); tentWaiting are the other early attempts
	// whose transports wait for their handshake or for tent's failure
	tent        int
	tentWaiting []*candidateReady
}

// newRacerActor races cands, in their order; pending: a DNS answer may
// still add candidates (candidatesReplanned).
func newRacerActor(s *System, spec *connSpec, cands []candidate, pending bool, delay time.Duration, t0 time.Time, cacheKey string, fromCache bool) *racerActor {
	r := &racerActor{sys: s, spec: spec, cands: cands, pending: pending, delay: delay, t0: t0, cacheKey: cacheKey,
		pids: map[string]int{}, report: &messages.EstablishmentReport{FromCache: fromCache}, tent: -1}
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
	case *candidateConfirmed:
		r.confirmed(ctx, m.idx)
	case *tentativeFailed:
		if !r.done && m.attempt == r.tent { // not one retracted since
			r.stopCandidate(ctx, m.attempt)
			r.failedAttempt(ctx, m.attempt, m.err)
		}
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
// more, a race whose attempts all failed fails. A failed plan (no remote
// endpoint left) drops the candidates not started yet: the attempts
// running go on. A race that has ended ignores the answer: it keeps no
// unstarted attempt (RFC 8305 §5).
func (r *racerActor) replanned(ctx actor.Context, m *candidatesReplanned) {
	if r.done {
		return
	}
	r.pending = m.more
	if m.unresolved != nil { // a remote's failure is final: this one lists the earlier ones
		r.unresolved = m.unresolved
	}
	if m.failed != nil {
		r.unresolved = m.failed
		r.order = slices.Clone(r.started)
	}
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
	r.takeWaiting(idx)
	if idx == r.tent {
		// the connection drops the transport, and sends the first
		// message again on the next one: an early one waiting now, or
		// the winner's
		r.tent = -1
		ctx.Send(ctx.Parent(), &transportRetracted{})
		if len(r.tentWaiting) > 0 {
			next := r.tentWaiting[0]
			r.tentWaiting = r.tentWaiting[1:]
			r.offerTentative(ctx, next)
		}
	}
	r.startNext(ctx) // a failed attempt starts the next one at once
	if r.live == 0 && !r.done && !r.pending {
		// nothing left to start (a held candidate waits only on a running
		// attempt), and no DNS answer can add one
		r.lose(ctx, nil)
	}
}

func (r *racerActor) ready(ctx actor.Context, m *candidateReady) {
	switch {
	case r.done:
		m.h.Abandon() // a late second success is closed, never handed out
	case !m.early:
		r.win(ctx, m.idx, m.h)
	default:
		r.traceAttempt("AttemptEarly", m.idx, nil, time.Since(r.t0).Nanoseconds())
		if r.tent >= 0 {
			r.tentWaiting = append(r.tentWaiting, m) // one tentative transport at a time
			return
		}
		r.offerTentative(ctx, m)
	}
}

// offerTentative hands the 0-RTT transport of early attempt m over to the
// connection, which sends the first message on it while the attempt's
// handshake completes; the attempt runs on (it has not won).
func (r *racerActor) offerTentative(ctx actor.Context, m *candidateReady) {
	t, ok := m.h.Claim()
	if !ok {
		r.failedAttempt(ctx, m.idx, errCandidateGone)
		return
	}
	if !r.spec.link.offerTransport(t) { // the connection has ended (t is closed)
		r.lose(ctx, ErrClosed)
		return
	}
	r.tent = m.idx
	c := r.cands[m.idx]
	ctx.Send(ctx.Parent(), &transportOffered{stack: c.stack.Name(), local: t.LocalAddr(), remote: t.RemoteAddr(),
		tentative: true, attempt: m.idx})
}

// confirmed: the handshake of early attempt idx completed. The tentative
// one wins with the transport the connection holds; one that was waiting
// wins with its own (the connection drops the tentative one).
func (r *racerActor) confirmed(ctx actor.Context, idx int) {
	if r.done {
		return
	}
	if idx == r.tent {
		r.win(ctx, idx, nil)
		return
	}
	if m := r.takeWaiting(idx); m != nil {
		r.win(ctx, idx, m.h)
	}
}

// takeWaiting removes early attempt idx from tentWaiting and returns it
// (nil when it was not there).
func (r *racerActor) takeWaiting(idx int) *candidateReady {
	for i, m := range r.tentWaiting {
		if m.idx == idx {
			r.tentWaiting = slices.Delete(r.tentWaiting, i, i+1)
			return m
		}
	}
	return nil
}

// stopCandidate stops the actor of candidate idx, if it runs.
func (r *racerActor) stopCandidate(ctx actor.Context, idx int) {
	for _, pid := range ctx.Children() {
		if i, ok := r.pids[pid.Id]; ok && i == idx {
			ctx.Stop(pid)
		}
	}
}

// win ends the race with candidate idx the winner: its transport comes
// from h, or, when h is nil, it is the tentative one the connection holds
// already (its 0-RTT attempt's handshake completed).
func (r *racerActor) win(ctx actor.Context, idx int, h *Handoff) {
	var t stacks.Transport
	if h != nil {
		var ok bool
		if t, ok = h.Claim(); !ok {
			r.failedAttempt(ctx, idx, errCandidateGone)
			return
		}
	}
	r.takeWaiting(idx) // its first transport (early data rejected) goes with its candidate
	now := time.Since(r.t0)
	if !r.endAttempt(idx, nil, now.Nanoseconds()) {
		if t != nil {
			_ = t.Abort() // not a running attempt of ours: cannot happen
		}
		return
	}
	r.done = true
	r.stopTimer()
	c := r.cands[idx]
	r.att[idx].Won = true
	r.report.DurationNs = now.Nanoseconds()
	r.traceAttempt("AttemptWon", idx, nil, now.Nanoseconds())
	r.cancelLive(now)
	if r.cacheKey != "" {
		cacheFor(r.sys).store(r.cacheKey, raceWinner{stack: c.stack.Name(), remote: c.remote, path: c.path, at: time.Now()})
	}
	switch {
	case t == nil:
		ctx.Send(ctx.Parent(), &raceDone{won: &transportConfirmed{report: r.report}})
	case r.spec.link.offerTransport(t):
		// a tentative transport the connection holds is dropped as it
		// takes this one
		offered := &transportOffered{stack: c.stack.Name(), local: t.LocalAddr(), remote: t.RemoteAddr(), report: r.report}
		ctx.Send(ctx.Parent(), &raceDone{offered: offered})
	default:
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
	for _, i := range r.started {
		if !r.ended[i] {
			r.traceAttempt("AttemptCancelled", i, nil, now.Nanoseconds())
		}
	}
}

// lose ends the race without a winner: every attempt failed (cause nil:
// the failure's Err is then why remote endpoints were dropped unresolved,
// if any were), or the establishment timed out (cause
// ErrEstablishmentTimeout; running attempts end with that error).
func (r *racerActor) lose(ctx actor.Context, cause error) {
	off := time.Since(r.t0).Nanoseconds()
	for _, i := range r.started {
		if !r.ended[i] {
			r.endAttempt(i, cause, off)
			r.traceAttempt("AttemptCancelled", i, cause, off)
		}
	}
	r.done = true
	r.stopTimer()
	r.report.DurationNs = off
	f := &EstablishmentFailure{Err: cause, Report: r.report}
	if cause == nil {
		f.Err = r.unresolved
	}
	for _, i := range r.started { // in start order, as the report (candidate indices are plan order)
		a := r.att[i]
		f.Attempts = append(f.Attempts, AttemptError{Endpoint: a.Endpoint, Stack: a.Stack, Err: r.errs[i]})
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
// A transport whose handshake has not completed (0-RTT) is reported
// early (candidateReady.early); a second goroutine then waits for the
// handshake (awaitHandshake), whose outcome the candidate reports next:
// candidateConfirmed, candidateFailed, or (the server rejected the early
// data) candidateReady with the transport that replaces the first.
//
// It runs on controlDispatcher (system.go): the dial goroutine, once it
// has posted its result, runs the candidate, the racer, the preconnection
// and the connection up to Ready (as the handshake's goroutine does once
// it has posted its). So each is counted in dialing only until the dial
// (the handshake) has returned and its result is in res (hs), never while
// it posts: Stopping waits for dialing and may run on that very goroutine
// (the winner is stopped by the race it won) or on another one.
type candidateActor struct {
	idx     int
	c       candidate
	opts    *stacks.Options
	dctx    context.Context // the dial's, and the handshake's: cancelled by Stopping
	cancel  context.CancelFunc
	dialing sync.WaitGroup
	res     dialResult      // the dial's outcome, once dialing is done
	hs      handshakeResult // an early transport's handshake outcome, once done
	handled bool            // res reached the actor
	hsDone  bool            // hs reached the actor
	h       *Handoff
	h2      *Handoff // the transport that replaced h's (early data rejected)
}

type dialResult struct {
	t     stacks.Transport
	err   error
	early bool // t's handshake has not completed (stacks.HandshakeWaiter)
}

// handshakeResult is how the handshake of an early transport ended: t,
// when not nil, replaces it (stacks.HandshakeWaiter).
type handshakeResult struct {
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
		a.dctx, a.cancel = dctx, cancel
		root, self := ctx.ActorSystem().Root, ctx.Self()
		a.dialing.Add(1)
		go func() {
			growStack() // this goroutine runs the race's end up to Ready
			t, err := dialContained(dctx, a.c, *a.opts)
			early := false
			if err == nil {
				if early, err = handshakePending(t); err != nil {
					_ = t.Abort()
					t = nil
				}
			}
			a.res = dialResult{t: t, err: err, early: early}
			stopped := dctx.Err() != nil // by Stopping, which closes a.res.t
			a.dialing.Done()
			if !stopped {
				root.Send(self, &dialResult{t: t, err: err, early: early})
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
		if m.early {
			a.awaitHandshake(ctx, m.t) // before the report: a Stop it brings waits for it
		}
		ctx.Send(ctx.Parent(), &candidateReady{idx: a.idx, h: a.h, early: m.early})
	case *handshakeResult:
		a.hsDone = true
		switch {
		case m.err != nil:
			ctx.Send(ctx.Parent(), &candidateFailed{idx: a.idx, err: m.err})
			ctx.Stop(ctx.Self())
		case m.t != nil: // the server rejected the early data
			a.h2 = NewHandoff(m.t)
			ctx.Send(ctx.Parent(), &candidateReady{idx: a.idx, h: a.h2})
		default:
			ctx.Send(ctx.Parent(), &candidateConfirmed{idx: a.idx})
		}
	case *actor.Stopping:
		a.cancel()
		a.dialing.Wait() // dialing (or the handshake's wait) returns promptly once cancelled
		if a.h != nil {
			a.h.Abandon()
		} else if !a.handled && a.res.t != nil {
			_ = a.res.t.Abort() // dialed, but the result never reached us
		}
		if a.h2 != nil {
			a.h2.Abandon()
		} else if !a.hsDone && a.hs.t != nil {
			_ = a.hs.t.Abort() // the replacement never reached us
		}
	}
}

// awaitHandshake waits, in a goroutine counted in dialing until it has its
// result in hs (never while it posts it), for the handshake of early
// transport t. It runs in a handler (a Stopping, which waits for dialing,
// cannot run meanwhile).
func (a *candidateActor) awaitHandshake(ctx actor.Context, t stacks.Transport) {
	dctx, root, self := a.dctx, ctx.ActorSystem().Root, ctx.Self()
	a.dialing.Add(1)
	go func() {
		nt, err := t.(stacks.HandshakeWaiter).WaitHandshake(dctx)
		a.hs = handshakeResult{t: nt, err: err}
		stopped := dctx.Err() != nil // by Stopping, which closes a.hs.t
		a.dialing.Done()
		if !stopped {
			root.Send(self, &handshakeResult{t: nt, err: err})
		}
	}()
}

// handshakePending reports whether t's handshake has not completed yet (a
// QUIC 0-RTT transport: stacks.HandshakeWaiter); a panicking transport
// gives a *supervision.PanicError.
func handshakePending(t stacks.Transport) (pending bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			pending, err = false, &supervision.PanicError{Where: "transport handshake", Value: p, Stack: debug.Stack()}
		}
	}()
	hw, ok := t.(stacks.HandshakeWaiter)
	if !ok {
		return false, nil
	}
	select {
	case <-hw.HandshakeComplete():
		return false, nil
	default:
		return true, nil
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
