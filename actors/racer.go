package actors

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// This file is where racing happens (RFC 9623 §4.3, RFC 8305 §5): the only
// place that spawns or stops candidate actors.
//
// Candidates start one at a time, each Connection Attempt Delay after the
// previous one, earlier attempts running on; an attempt that fails starts
// the next at once. The first candidate fully established wins: no new
// attempt starts, every other candidate is stopped (its socket closed), and
// a late second success is closed, never handed out.

type (
	attemptTimer   struct{ gen uint64 }
	candidateReady struct {
		idx int
		h   *Handoff
	}
	candidateFailed struct {
		idx int
		err error
	}
)

type racerActor struct {
	sys     *System
	spec    *connSpec
	cands   []candidate
	delay   time.Duration
	t0      time.Time
	next    int
	gen     uint64
	timer   *time.Timer
	running map[string]int // candidate pid -> index
	report  *messages.EstablishmentReport
	failed  []AttemptError
	done    bool
	self    *actor.PID
}

func newRacerActor(s *System, spec *connSpec, cands []candidate, delay time.Duration, t0 time.Time) actor.Actor {
	return &racerActor{sys: s, spec: spec, cands: cands, delay: delay, t0: t0,
		running: map[string]int{}, report: &messages.EstablishmentReport{}}
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
	case *actor.Terminated:
		delete(r.running, m.Who.Id)
	case *actor.Stopping:
		if r.timer != nil {
			r.timer.Stop()
		}
	}
}

func (r *racerActor) startNext(ctx actor.Context) {
	if r.done || r.next >= len(r.cands) {
		return
	}
	idx := r.next
	r.next++
	c := r.cands[idx]
	props := actor.PropsFromProducer(func() actor.Actor { return newCandidateActor(idx, c) })
	pid := ctx.SpawnPrefix(props, "candidate")
	r.running[pid.Id] = idx
	off := time.Since(r.t0)
	r.report.Attempts = append(r.report.Attempts, &messages.EstablishmentAttempt{
		Endpoint: c.remote.String(), Stack: c.stack.Name(), Path: c.iface, StartOffsetNs: off.Nanoseconds(), EndOffsetNs: -1})
	r.sys.trace(&messages.TraceRecord{Kind: "candidate", Event: "AttemptStarted", ConnectionId: r.spec.id,
		Candidate: fmt.Sprint(idx), Stack: c.stack.Name(), Remote: c.remote.String(), OffsetNs: off.Nanoseconds()})
	r.gen++
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.next < len(r.cands) {
		gen, root, self := r.gen, ctx.ActorSystem().Root, ctx.Self()
		r.timer = time.AfterFunc(r.delay, func() { root.Send(self, &attemptTimer{gen: gen}) })
	}
}

func (r *racerActor) attempt(idx int) *messages.EstablishmentAttempt {
	for _, a := range r.report.Attempts {
		if a.Endpoint == r.cands[idx].remote.String() && a.Stack == r.cands[idx].stack.Name() && a.EndOffsetNs < 0 {
			return a
		}
	}
	return &messages.EstablishmentAttempt{}
}

func (r *racerActor) failedAttempt(ctx actor.Context, idx int, err error) {
	if idx < 0 || idx >= len(r.cands) {
		return
	}
	c := r.cands[idx]
	a := r.attempt(idx)
	a.EndOffsetNs = time.Since(r.t0).Nanoseconds()
	a.Error = err.Error()
	r.sys.trace(&messages.TraceRecord{Kind: "candidate", Event: "AttemptFailed", ConnectionId: r.spec.id,
		Candidate: fmt.Sprint(idx), Stack: c.stack.Name(), Remote: c.remote.String(), Error: err.Error(), OffsetNs: a.EndOffsetNs})
	if r.done {
		return
	}
	r.failed = append(r.failed, AttemptError{Endpoint: c.remote.String(), Stack: c.stack.Name(), Err: err})
	if r.next < len(r.cands) {
		r.startNext(ctx) // a failed attempt starts the next one at once
		return
	}
	if len(r.failed) == len(r.cands) {
		r.done = true
		r.report.DurationNs = time.Since(r.t0).Nanoseconds()
		ctx.Send(ctx.Parent(), &raceDone{err: &EstablishmentFailure{Attempts: r.failed}})
	}
}

func (r *racerActor) ready(ctx actor.Context, m *candidateReady) {
	if r.done {
		m.h.Abandon() // a late second success is closed, never handed out
		return
	}
	t, ok := m.h.Claim()
	if !ok {
		r.failedAttempt(ctx, m.idx, errors.New("candidate socket closed before hand-over"))
		return
	}
	r.done = true
	if r.timer != nil {
		r.timer.Stop()
	}
	c := r.cands[m.idx]
	a := r.attempt(m.idx)
	a.EndOffsetNs = time.Since(r.t0).Nanoseconds()
	a.Won = true
	r.report.DurationNs = a.EndOffsetNs
	r.sys.trace(&messages.TraceRecord{Kind: "candidate", Event: "AttemptWon", ConnectionId: r.spec.id,
		Candidate: fmt.Sprint(m.idx), Stack: c.stack.Name(), Remote: c.remote.String(), OffsetNs: a.EndOffsetNs})
	for _, pid := range ctx.Children() {
		ctx.Stop(pid) // losers: their Stopping closes their sockets
	}
	offered := &transportOffered{stack: c.stack.Name(), local: t.LocalAddr(), remote: t.RemoteAddr(), report: r.report}
	if r.spec.link.offerTransport(t) {
		ctx.Send(ctx.Parent(), &raceDone{offered: offered})
	} else {
		ctx.Send(ctx.Parent(), &raceDone{err: &EstablishmentFailure{Err: ErrClosed}})
	}
}

// HandleFailure makes the racer its candidates' supervisor: a candidate that
// panics is stopped and counts as a failed attempt.
func (r *racerActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	sup.StopChildren(child)
	if idx, ok := r.running[child.Id]; ok {
		r.sys.AS.Root.Send(r.self, &candidateFailed{idx: idx, err: supervision.FromFailure("candidate", reason)})
	}
}

// candidateActor is one attempt: it dials in a goroutine it owns and holds
// the socket until the racer claims it; when stopped first, it closes it.
type candidateActor struct {
	idx     int
	c       candidate
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	res     dialResult
	handled bool
	h       *Handoff
}

type dialResult struct {
	t   stacks.Transport
	err error
}

func newCandidateActor(idx int, c candidate) actor.Actor { return &candidateActor{idx: idx, c: c} }

func (a *candidateActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		dctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		root, self := ctx.ActorSystem().Root, ctx.Self()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			t, err := a.c.stack.Dial(dctx, a.c.remote, stacks.Options{Local: localFor(a.c), Interface: a.c.iface})
			a.res = dialResult{t: t, err: err}
			root.Send(self, &a.res)
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
		a.wg.Wait() // dialing returns promptly once cancelled
		if a.h != nil {
			a.h.Abandon()
		} else if !a.handled && a.res.t != nil {
			_ = a.res.t.Abort() // dialed, but the result never reached us
		}
	}
}

func localFor(c candidate) netip.AddrPort {
	if !c.local.IsValid() {
		return netip.AddrPort{}
	}
	return c.local
}
