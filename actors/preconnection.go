package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// AttemptError is one failed leaf of the candidate tree.
type AttemptError struct {
	Endpoint string
	Stack    string
	Err      error
}

func (e AttemptError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Stack, e.Endpoint, e.Err)
}

// EstablishmentFailure is the cause of an EstablishmentError: every attempt
// and why it failed, or why there was nothing to attempt.
type EstablishmentFailure struct {
	// Attempts are every attempt started, in start order, each with why it
	// failed (for a timeout, running attempts carry the timeout).
	Attempts []AttemptError
	// Err is the overall cause when it is not just the attempts' failures:
	// a resolution failure, ErrEstablishmentTimeout, no candidates. When
	// every attempt failed it is nil, or the resolution failures of the
	// remote endpoints dropped because they did not resolve (others did).
	Err error
	// Report is what racing did (nil when no race started). The racer no
	// longer touches it once the failure is sent.
	Report *messages.EstablishmentReport
}

func (e *EstablishmentFailure) Error() string {
	var b strings.Builder
	switch {
	case e.Err != nil && len(e.Attempts) == 0:
		b.WriteString(e.Err.Error())
	case e.Err != nil:
		b.WriteString(e.Err.Error())
		b.WriteString(" after ")
		b.WriteString(strconv.Itoa(len(e.Attempts)))
		b.WriteString(" attempt(s)")
	default:
		b.WriteString("all ")
		b.WriteString(strconv.Itoa(len(e.Attempts)))
		b.WriteString(" attempt(s) failed")
	}
	for _, a := range e.Attempts {
		b.WriteString("; ")
		b.WriteString(a.Error())
	}
	return b.String()
}

// Unwrap returns the overall cause and every attempt's error.
func (e *EstablishmentFailure) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}

type resolved struct {
	groups []pathGroup
	// more: a DNS answer is still pending, and a resolved planned again
	// over what it adds will follow (resolveStream)
	more bool
	// the resolved remotes and locals, for a rendezvous (rendezvous.go),
	// which pairs every local address with every remote one
	remotes []remoteAddrs
	locals  []localAddrs
	err     error
	// unresolved joins the failures of the remote and local endpoints
	// dropped because they did not resolve while others did (nil: none),
	// for the EstablishmentFailure should every attempt fail
	unresolved error
}

// establishTimeout ends the establishment: the establishment timeout fired
// (err nil: ErrEstablishmentTimeout), or the connection was aborted while
// establishing (err: the abort's cause, such as Initiate's ctx ending), so
// that the failure lists the attempts made.
type establishTimeout struct{ err error }

func (m *establishTimeout) cause() error {
	if m.err == nil {
		return ErrEstablishmentTimeout
	}
	return m.err
}

// raceDone is the racer's report to its preconnection: a winner whose
// transport it offers, the tentative (0-RTT) transport the connection
// holds is the winner (won), or the race failed (err).
type raceDone struct {
	offered *transportOffered
	won     *transportConfirmed
	err     error
}

// ErrNoCandidates is the EstablishmentFailure cause when resolution gave
// addresses but no [path, stack, endpoint] leaf is left to attempt.
var ErrNoCandidates = errors.New("no candidates")

// preconnActor establishes one connection from the Preconnection snapshot:
// it resolves the endpoints (in a goroutine it owns), builds the candidate
// tree (race_plan.go), reorders it by the race cache (racecache.go) and
// runs a racer over it. It is a child of the connection it establishes, so
// stopping that connection (Abort, ctx cancelled) stops the whole
// establishment subtree. The establishment timeout covers resolution and
// racing; when it fires during the race the racer reports the failure, so
// that the attempts are listed.
//
// Resolution streams (resolveStream, RFC 8305 §3): the race starts on the
// first answers, and each later answer comes as another resolved, planned
// again over every address known, which the preconnection passes to the
// racer (candidatesReplanned) until the race ends.
//
// It runs on controlDispatcher (system.go). Endpoints given as addresses
// need no resolver: they are planned at once, in Started. Names are
// resolved in goroutines counted in resolving: one per remote endpoint
// name (which never posts to an actor), and the one that plans and posts,
// counted only while it resolves or waits for a later answer, never while
// it posts, so that finish and Stopped, which wait for resolving once
// they have cancelled it, never wait for the goroutine that runs them.
type preconnActor struct {
	sys       *System
	spec      *connSpec
	start     time.Time
	cancel    context.CancelFunc
	resolving busyCount
	timer     *time.Timer
	racer     *actor.PID
	done      bool
	// held is the first plan, held back while the race cache's winner
	// waits for its answer (cacheWaitOver); holdTimer bounds that wait
	held      *resolved
	holdTimer *time.Timer
	holdOver  bool
}

// cacheWaitOver: the race cache's winner was waited for long enough.
type cacheWaitOver struct{}

// busyCount counts goroutines while they run or block; wait returns once
// none does. Unlike a sync.WaitGroup, a goroutine may leave and enter
// again while another waits: it leaves while it posts to an actor whose
// handler (run inline by that post, controlDispatcher) may be the one
// waiting.
type busyCount struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero, for the waiters then
}

func (b *busyCount) enter() {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
}

func (b *busyCount) leave() {
	b.mu.Lock()
	if b.n--; b.n == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
	b.mu.Unlock()
}

func (b *busyCount) wait() {
	b.mu.Lock()
	if b.n == 0 {
		b.mu.Unlock()
		return
	}
	if b.idle == nil {
		b.idle = make(chan struct{})
	}
	idle := b.idle
	b.mu.Unlock()
	<-idle
}

func newPreconnActor(s *System, spec *connSpec, began time.Time) actor.Actor {
	return &preconnActor{sys: s, spec: spec, start: began}
}

// preconnProps are the Props of a preconnection actor establishing spec's
// connection (a child of that connection); began is when the
// establishment's first race started (a race run again after a framer
// failed has what is left of the establishment timeout).
func preconnProps(s *System, spec *connSpec, began time.Time) *actor.Props {
	return controlProps(func() actor.Actor { return newPreconnActor(s, spec, began) },
		actor.WithSupervisor(supervision.Strategy(supervision.Racer)))
}

func (p *preconnActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if p.start.IsZero() {
			p.start = time.Now()
		}
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if d := p.spec.cfg.EstablishmentTimeout; d > 0 {
			p.timer = time.AfterFunc(max(d-time.Since(p.start), 0), func() { root.Send(self, &establishTimeout{}) })
		}
		cfg := p.spec.cfg
		if !needsResolver(cfg) {
			p.race(ctx, resolveAll(context.Background(), cfg)) // addresses only: nothing blocks
			return
		}
		rctx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		p.resolving.enter()
		go func() {
			growStack() // this goroutine goes on to plan the race and start it
			defer p.resolving.leave()
			resolveStream(rctx, cfg, &p.resolving, func(r *resolved) {
				p.resolving.leave() // the post may run Stopped, which waits for resolving
				root.Send(self, r)
				p.resolving.enter()
			})
		}()
	case *resolved:
		switch {
		case p.done:
		case p.racer != nil:
			p.replan(ctx, m)
		default:
			p.held = nil
			p.race(ctx, m)
		}
	case *cacheWaitOver:
		p.holdOver = true
		if h := p.held; h != nil && !p.done && p.racer == nil {
			p.held = nil
			p.race(ctx, h)
		}
	case *raceDone:
		switch {
		case m.err != nil:
			p.finish(ctx, &establishmentFailed{err: m.err})
		case m.won != nil:
			p.finish(ctx, m.won)
		default:
			p.finish(ctx, m.offered)
		}
	case *transportOffered, *transportRetracted: // a tentative 0-RTT transport, while the race goes on (racer.go)
		if !p.done {
			ctx.Send(ctx.Parent(), m)
		}
	case *tentativeFailed: // from the connection: the tentative transport failed
		if p.racer != nil && !p.done {
			ctx.Send(p.racer, m)
		}
	case *establishTimeout:
		if p.racer != nil && !p.done {
			ctx.Send(p.racer, m) // the racer answers raceDone listing its attempts
			return
		}
		p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: m.cause()}})
	case *actor.Stopping:
		if p.timer != nil {
			p.timer.Stop()
		}
		if p.holdTimer != nil {
			p.holdTimer.Stop()
		}
		if p.cancel != nil {
			p.cancel()
		}
	case *actor.Stopped:
		p.resolving.wait() // resolution ends once cancelled
	}
}

// candidates flattens the candidate tree of m: every [path, stack,
// endpoint] leaf but those a framer failed (FailConnection), which are not
// tried again.
func (p *preconnActor) candidates(m *resolved) []candidate {
	cands := planCandidates(p.spec.cfg.Stacks, m.groups)
	if len(p.spec.failed) > 0 {
		kept := cands[:0]
		for _, c := range cands {
			if !p.spec.failed[c.stack.Name()+" "+c.endpoint()] {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	return cands
}

// race plans the candidates and spawns the racer. With nothing to attempt
// yet while a DNS answer is pending (an AAAA answer whose addresses no
// local endpoint can reach, say), it waits for the next resolved. When
// the race cache has a winner whose address is not known yet while an
// answer is pending (an IPv4 winner, and the AAAA answer came first), it
// waits for that answer at most stacks.ResolutionDelay, as a positive A
// answer waits for the AAAA answer: the winner then goes first alone, as
// when every answer comes at once.
func (p *preconnActor) race(ctx actor.Context, m *resolved) {
	if m.err != nil {
		if !m.more {
			p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: m.err}})
		}
		return
	}
	cands := p.candidates(m)
	if len(cands) == 0 {
		if m.more {
			return
		}
		err := error(ErrNoCandidates)
		if p.spec.framerErr != nil {
			err = p.spec.framerErr
		}
		p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: err}})
		return
	}
	key := raceCacheKey(p.spec.cfg)
	fromCache := false
	if key != "" {
		if w, ok := cacheFor(p.sys).lookup(key, time.Now()); ok {
			cands, fromCache = promoteWinner(cands, w)
			if !fromCache && m.more && !p.holdOver {
				p.held = m
				if p.holdTimer == nil {
					root, self := ctx.ActorSystem().Root, ctx.Self()
					p.holdTimer = time.AfterFunc(stacks.ResolutionDelay, func() { root.Send(self, &cacheWaitOver{}) })
				}
				return
			}
		}
	}
	delay := ClampAttemptDelay(p.spec.cfg.AttemptDelay)
	props := controlProps(func() actor.Actor {
		r := newRacerActor(p.sys, p.spec, cands, m.more, delay, p.start, key, fromCache)
		r.unresolved = m.unresolved
		return r
	}, actor.WithSupervisor(supervision.Strategy(supervision.Candidate)))
	p.racer = ctx.SpawnPrefix(props, "racer")
}

// replan passes a later DNS answer to the racer: the candidates planned
// again, the same way as the first ones, over every address known now,
// or the planning's failure (the racer drops the candidates not started).
func (p *preconnActor) replan(ctx actor.Context, m *resolved) {
	var cands []candidate
	if m.err == nil {
		cands = p.candidates(m)
	}
	ctx.Send(p.racer, &candidatesReplanned{cands: cands, more: m.more, unresolved: m.unresolved, failed: m.err})
}

// finish tells the connection the outcome and stops the preconnection (and
// with it the racer and any candidate still running). A DNS lookup still
// running is cancelled, and has returned, before the outcome is told
// (WithResolver's contract: the application's lookup function is not
// running any more when Initiate returns).
func (p *preconnActor) finish(ctx actor.Context, outcome any) {
	if p.done {
		return
	}
	p.done = true
	if p.cancel != nil {
		p.cancel()
		p.resolving.wait()
	}
	ctx.Send(ctx.Parent(), outcome)
	ctx.Stop(ctx.Self())
}

// needsResolver reports whether an endpoint of cfg is a name: resolveAll
// then blocks, and runs in a goroutine.
func needsResolver(cfg *messages.ConnectionConfig) bool {
	for _, l := range cfg.Locals {
		if l.IpAddress == "" && l.HostName != "" {
			return true
		}
	}
	for _, r := range cfg.Remotes {
		if r.IpAddress == "" && r.HostName != "" {
			return true
		}
	}
	return false
}

// resolveAll resolves every local and remote endpoint, the remotes
// concurrently (each in full, see stacks.Resolver.Resolve), and plans the
// network paths of the candidate tree (planResolved). Remotes that fail to
// resolve are dropped; the result is an error only when nothing is left to
// attempt. A rendezvous resolves with it; a race follows resolveStream.
func resolveAll(ctx context.Context, cfg *messages.ConnectionConfig) *resolved {
	plan, err := pathPlanOf(cfg.Properties)
	if err != nil {
		return &resolved{err: fmt.Errorf("%w: %w", ErrNoCandidates, err)}
	}
	locals, unresolved, err := resolveLocals(ctx, cfg, false)
	if err != nil {
		return &resolved{err: err}
	}
	remotes, err := resolveRemotes(ctx, cfg)
	if err != nil {
		return &resolved{err: err}
	}
	out := planResolved(remotes, locals, plan)
	out.unresolved = unresolved
	return out
}

// resolveStream resolves cfg's endpoints for a race, as the answers come
// (RFC 8305 §3): the local endpoints first, in full (resolveLocals), then
// the remote endpoints concurrently, each through
// stacks.Resolver.ResolveStream, or, for a host name with a service,
// through resolveSRVStream (its SRV records, answered in full, once, or
// without any its host name as ResolveStream streams it, both looked up
// at once). send gets the first plan (planResolved) once every remote
// endpoint has answered (its first addresses, or its failure: a remote
// that fails is dropped, as in resolveAll), or stacks.ResolutionDelay
// after a remote first gave addresses (an address literal at once), which
// ever comes first: a remote whose lookup is slow, or never answers
// before ctx ends, does not hold back the attempts to the others (RFC
// 8305 §3, RFC 9623 §4: racing starts on the first usable addresses), and
// the remotes known in time keep their order. A remote whose HTTPS
// records are looked up (httpsName) has answered once its HTTPS answer is
// in too (Happy Eyeballs v3), within the same ResolutionDelay (once
// every remote has addresses, counted from the first positive address
// answer, stacks.Resolver.ResolveStreamSince, also for the host name
// addresses of an SRV fallback, which came a ResolutionDelay before the
// fallback itself: the two waits do not add up); a remote resolved by
// its SRV records does not wait for it (the records do not describe the
// SRV targets); when every remote has failed while an HTTPS answer is
// pending, the failure waits for it ResolutionDelay (its TargetName may
// resolve where the host name did not). The
// records' address hints stand for its addresses until its first address
// answer (they arm that delay as addresses do). Then send
// gets the plan made again over every address known after each later
// answer (a late remote joins the race so; a late HTTPS answer reorders
// the attempts not started yet), with more true while an address answer
// is still pending (an HTTPS answer is not counted: it reorders the
// attempts and adds only its service endpoints' addresses, so a race
// whose attempts all failed does not wait for it). send runs on the calling
// goroutine, and never once ctx has ended. resolveStream returns when no
// answer is pending, or once ctx has ended and its lookups have returned;
// the goroutines it starts are counted in busy until they end.
func resolveStream(ctx context.Context, cfg *messages.ConnectionConfig, busy *busyCount, send func(*resolved)) {
	post := func(r *resolved) {
		if ctx.Err() == nil {
			send(r)
		}
	}
	plan, err := pathPlanOf(cfg.Properties)
	if err != nil {
		post(&resolved{err: fmt.Errorf("%w: %w", ErrNoCandidates, err)})
		return
	}
	locals, localsUnresolved, err := resolveLocals(ctx, cfg, false)
	if err != nil {
		post(&resolved{err: err})
		return
	}
	type update struct {
		i     int
		addrs []netip.Addr
		sets  []remoteAddrs // the endpoints derived from SRV records (resolveSRVStream)
		final bool
		err   error
		// httpsDone: this is the answer of the remote's HTTPS records
		// (resolve_https.go): https what they say (zero: nothing
		// usable), hints their address hints for the host itself when it
		// resolves by its host name (no SRV lookup)
		httpsDone bool
		https     httpsAnswer
		hints     []netip.Addr
		// since: when the remote's first positive address answer came
		// (stacks.Resolver.ResolveStreamSince; zero: not known)
		since time.Time
	}
	updates := make(chan update)
	var wg sync.WaitGroup
	defer wg.Wait() // the streams end with their final answer, or with ctx
	results := make([]remoteResult, len(cfg.Remotes))
	answered := make([]bool, len(cfg.Remotes))
	waiting, pending := 0, 0 // remotes that have not answered yet; whose resolution goes on
	// the HTTPS lookups the first plan waits for (as for waiting, at most
	// stacks.ResolutionDelay once addresses are in); those still running.
	// They count apart from pending: their answers reorder the attempts
	// and add no address of the remote's own (only their service
	// endpoints'), so that a race whose attempts all failed does not
	// wait for them
	httpsWaiting, httpsPending := 0, 0
	httpsAwaited := make([]bool, len(cfg.Remotes)) // the remotes whose HTTPS answer httpsWaiting counts
	unawait := func(i int) {
		if httpsAwaited[i] {
			httpsAwaited[i] = false
			httpsWaiting--
		}
	}
	for i, r := range cfg.Remotes {
		switch {
		case r.IpAddress != "":
			a, err := netip.ParseAddr(r.IpAddress)
			results[i] = remoteResult{addrs: []netip.Addr{a.Unmap()}, err: err}
		case r.HostName != "":
			waiting++
			pending++
			busy.enter()
			wg.Go(func() {
				defer busy.leave()
				put := func(u update) {
					select {
					case updates <- u:
					case <-ctx.Done():
					}
				}
				if protos := srvProtos(r, cfg.Stacks); len(protos) > 0 {
					resolveSRVStream(ctx, cfg, r, protos, func(addrs []netip.Addr, sets []remoteAddrs, final bool, err error, since time.Time) {
						put(update{i: i, addrs: addrs, sets: sets, final: final, err: err, since: since})
					})
					return
				}
				err := cfg.Resolver.ResolveStreamSince(ctx, r.HostName, func(addrs []netip.Addr, final bool, since time.Time) {
					put(update{i: i, addrs: addrs, final: final, since: since})
				})
				if err != nil {
					put(update{i: i, final: true, err: err})
				}
			})
			if name := httpsName(cfg, r); name != "" {
				httpsWaiting++
				httpsAwaited[i] = true
				httpsPending++
				busy.enter()
				wg.Go(func() {
					defer busy.leave()
					a := lookupHTTPS(ctx, cfg, name, r.HostName)
					u := update{i: i, httpsDone: true, https: a}
					if a.plan != nil && len(srvProtos(r, cfg.Stacks)) == 0 {
						u.hints = a.plan.Hints
					}
					select {
					case updates <- u:
					case <-ctx.Done():
					}
				})
			}
		}
	}
	// the first plan waits for every remote's first answer and HTTPS
	// answer, but, once a remote has given addresses, at most
	// stacks.ResolutionDelay (delay): a slow or silent lookup does not
	// hold back the attempts to the others, and the remotes known by then
	// keep their order (Happy Eyeballs v3: the HTTPS answer is waited for
	// the Resolution Delay after the first addresses)
	posted := false
	var delay <-chan time.Time
	var since time.Time // the first positive address answer of a remote
	for {
		remotes, err := remotesOf(cfg, results)
		// every remote failed while an HTTPS answer is pending: it may
		// name another service endpoint (a TargetName) that resolves, so
		// the failure waits for it as addresses do, from now on
		failing := err != nil && waiting == 0 && httpsWaiting > 0
		if !posted && (waiting > 0 || httpsWaiting > 0) && (err == nil || failing) && delay == nil {
			d := stacks.ResolutionDelay
			if waiting == 0 && !since.IsZero() {
				// only HTTPS answers are missing: the delay runs from the
				// first positive address answer (HEv3), which ResolveStream
				// may have held back for the other family's
				d = max(d-time.Since(since), 0)
			}
			t := time.NewTimer(d)
			defer t.Stop()
			delay = t.C
		}
		if posted || (waiting == 0 && httpsWaiting == 0) {
			var out *resolved
			if err != nil {
				out = &resolved{err: err}
			} else {
				out = planResolved(remotes, locals, plan)
				out.unresolved = errors.Join(localsUnresolved, unresolvedOf(results))
			}
			out.more = pending > 0
			post(out)
			posted, delay = true, nil
		}
		if pending == 0 && httpsPending == 0 {
			return
		}
		select {
		case u := <-updates:
			if u.httpsDone {
				httpsPending--
				unawait(u.i)
				results[u.i].https = u.https
				if !answered[u.i] && len(u.hints) > 0 {
					// the hints stand for the addresses until the first
					// address answer replaces them (RFC 9460 §7.3, HEv3)
					results[u.i].addrs = u.hints
				}
				if u.https.plan == nil && u.https.targets == nil && posted {
					continue // nothing to reorder: the plan stands
				}
				break
			}
			if !answered[u.i] {
				answered[u.i] = true
				waiting--
			}
			if !u.since.IsZero() && (since.IsZero() || u.since.Before(since)) {
				since = u.since
			}
			if u.final {
				pending--
			}
			if u.sets != nil {
				// resolved by its SRV records, whose targets its HTTPS
				// records do not describe (remotesOf): nothing to wait for
				unawait(u.i)
			}
			results[u.i] = remoteResult{addrs: u.addrs, sets: u.sets, err: u.err, https: results[u.i].https}
		case <-delay: // the remotes still silent join with their first answer
			waiting, httpsWaiting = 0, 0
			clear(httpsAwaited)
		case <-ctx.Done():
			return
		}
	}
}

// planResolved plans the network paths of the candidate tree (planPaths)
// over the resolved remotes and locals: every local endpoint is a branch,
// the interface, pvd and useTemporaryLocalAddress Selection Properties
// bind, order or drop attempts. A path property that cannot be satisfied
// gives an error wrapping ErrNoCandidates and the *stacks.PathError.
func planResolved(remotes []remoteAddrs, locals []localAddrs, plan stacks.PathPlan) *resolved {
	out := &resolved{remotes: remotes, locals: locals}
	groups, err := planPaths(remotes, locals, plan, hostLookup{})
	if err != nil {
		var pe *stacks.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%w: %w", ErrNoCandidates, err)
		}
		out.err = err
		return out
	}
	out.groups = groups
	return out
}

// remoteResult is what resolving one remote endpoint gave: its
// addresses, or the endpoints derived from its SRV records
// (resolveSRVStream).
type remoteResult struct {
	addrs []netip.Addr
	sets  []remoteAddrs
	err   error
	https httpsAnswer // what its HTTPS records say (resolve_https.go)
}

// unresolvedOf joins the failures of the remote endpoints that did not
// resolve (results as for remotesOf); nil when none failed.
func unresolvedOf(results []remoteResult) error {
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

// resolveRemotes resolves the remote endpoints, concurrently (each in
// full, see stacks.Resolver.Resolve); those that fail to resolve are
// dropped. It fails only when none is left.
func resolveRemotes(ctx context.Context, cfg *messages.ConnectionConfig) ([]remoteAddrs, error) {
	results := make([]remoteResult, len(cfg.Remotes))
	var wg sync.WaitGroup
	for i, r := range cfg.Remotes {
		switch {
		case r.IpAddress != "":
			a, err := netip.ParseAddr(r.IpAddress)
			results[i] = remoteResult{addrs: []netip.Addr{a.Unmap()}, err: err}
		case r.HostName != "":
			wg.Go(func() {
				as, err := cfg.Resolver.Resolve(ctx, r.HostName)
				results[i] = remoteResult{addrs: as, err: err}
			})
		}
	}
	wg.Wait()
	return remotesOf(cfg, results)
}

// remotesOf builds the derived endpoints of cfg's remote endpoints from
// what resolving gave each (results[i] for cfg.Remotes[i]), in cfg's
// order; those that failed or have no address are dropped. It fails only
// when none is left.
func remotesOf(cfg *messages.ConnectionConfig, results []remoteResult) ([]remoteAddrs, error) {
	var errs []error
	var remotes []remoteAddrs
	for i, r := range cfg.Remotes {
		https, after := results[i].https.plan, false
		if ts := results[i].https.targets; len(ts) > 0 && results[i].sets == nil {
			// the service endpoints its HTTPS records name, in their
			// order, over the stacks their records offer (ranked with
			// the host's by SvcPriority: rankHTTPS); the host's own
			// addresses, when no record names the host, after them
			// over every stack, as without records
			for _, t := range ts {
				rt := remoteAddrs{label: endpointLabel(r), iface: r.Interface, protocol: r.Protocol, https: t.plan, httpsOnly: true}
				for _, a := range t.addrs {
					rt.addrs = append(rt.addrs, scopedAddr(r, a, uint16(r.Port)))
				}
				remotes = append(remotes, rt)
			}
			after = https == nil
		}
		if results[i].err != nil {
			errs = append(errs, results[i].err)
			continue
		}
		if results[i].sets != nil {
			remotes = append(remotes, results[i].sets...)
			continue
		}
		ra := remoteAddrs{label: endpointLabel(r), iface: r.Interface, protocol: r.Protocol, https: https, httpsAfter: after}
		if r.Path != "" { // a Unix domain socket: one candidate, no address
			ra.label, ra.unix, ra.addrs = r.Path, r.Path, []netip.AddrPort{{}}
		}
		for _, a := range results[i].addrs {
			ra.addrs = append(ra.addrs, scopedAddr(r, a, uint16(r.Port)))
		}
		if len(ra.addrs) > 0 {
			remotes = append(remotes, ra)
		}
	}
	if len(remotes) == 0 {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no usable remote address"))
		}
		return nil, errors.Join(errs...)
	}
	return remotes, nil
}

// resolveLocals resolves the local endpoints: an IP address, or every
// address of a host name (at most maxDerivedEndpoints; only the first
// when listen). Unix socket paths are kept for listeners and skipped for
// Initiate (the remote's path is what is dialed). A host name that fails
// to resolve fails a listener (it listens on every local endpoint); for
// an Initiate it is pruned as a failed candidate is (RFC 9623 §4.1), and
// its failure joined in unresolved, while another local endpoint is left:
// err is the failures, each wrapped as a local endpoint's, when none is.
func resolveLocals(ctx context.Context, cfg *messages.ConnectionConfig, listen bool) (_ []localAddrs, unresolved, err error) {
	var out []localAddrs
	var failed []error
	for _, l := range cfg.Locals {
		la := localAddrs{label: endpointLabel(l), port: uint16(l.Port), iface: l.Interface}
		switch {
		case l.Path != "":
			if !listen {
				continue
			}
			la.label, la.path = l.Path, l.Path
		case l.IpAddress != "":
			a, err := netip.ParseAddr(l.IpAddress)
			if err != nil {
				return nil, nil, fmt.Errorf("local endpoint: %w", err)
			}
			la.addrs = []netip.Addr{a.Unmap()}
		case l.HostName != "":
			as, err := cfg.Resolver.Resolve(ctx, l.HostName)
			if err != nil {
				if listen || ctx.Err() != nil {
					return nil, nil, err
				}
				failed = append(failed, fmt.Errorf("local endpoint: %w", err))
				continue
			}
			if len(as) > maxDerivedEndpoints {
				as = as[:maxDerivedEndpoints]
			}
			if listen && len(as) > 1 {
				as = as[:1]
			}
			la.addrs = as
		}
		out = append(out, la)
	}
	if len(failed) > 0 && len(out) == 0 {
		// nothing left to bind to (an empty list would mean any address)
		return nil, nil, errors.Join(failed...)
	}
	return out, errors.Join(failed...), nil
}

// pathPlanOf reads the path Selection Properties (interface, pvd,
// useTemporaryLocalAddress) of props and plans them against the host's
// interfaces (enumerated only when the interface property has entries).
func pathPlanOf(props *messages.Properties) (stacks.PathPlan, error) {
	vals := props.GetValues()
	named := func(name string) map[string]int8 {
		m := map[string]int8{}
		for k, v := range vals[name].GetNamedPreferences().GetPreferences() {
			if v >= int32(stacks.Prohibit) && v <= int32(stacks.Require) && v != 0 {
				m[k] = int8(v)
			}
		}
		return m
	}
	prefs := stacks.PathPrefs{Interface: named("interface"), PvD: named("pvd")}
	if v := vals["useTemporaryLocalAddress"].GetPreference(); v >= int32(stacks.Prohibit) && v <= int32(stacks.Require) {
		prefs.TemporaryAddress = int8(v)
	}
	var ifs []stacks.NetInterface
	if len(prefs.Interface) > 0 {
		var err error
		if ifs, err = stacks.Interfaces(); err != nil {
			return stacks.PathPlan{}, fmt.Errorf("interface: %w", err)
		}
	}
	return stacks.PlanPaths(prefs, ifs)
}

// endpointLabel names an endpoint as the application did: "host:port",
// or "host:service" for a service with no IANA port (its port comes from
// SRV records alone).
func endpointLabel(e *messages.Endpoint) string {
	host := e.HostName
	if host == "" {
		host = e.IpAddress
	}
	return net.JoinHostPort(host, endpointPort(e))
}

// endpointPort is the port part of an endpoint's label: its port, or its
// service when it has no port.
func endpointPort(e *messages.Endpoint) string {
	if e.Port == 0 && e.Service != "" {
		return e.Service
	}
	return strconv.Itoa(int(e.Port))
}
