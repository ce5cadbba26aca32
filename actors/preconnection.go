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
	// a resolution failure, ErrEstablishmentTimeout, no candidates. Nil
	// when every attempt failed.
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
	// the resolved remotes and locals, for a rendezvous (rendezvous.go),
	// which pairs every local address with every remote one; local is the
	// first local endpoint's first address (its STUN server's base)
	remotes []remoteAddrs
	locals  []localAddrs
	local   netip.AddrPort
	err     error
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

// raceDone is the racer's report to its preconnection.
type raceDone struct {
	offered *transportOffered
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
// It runs on controlDispatcher (system.go). Endpoints given as addresses
// need no resolver: they are planned at once, in Started. Names are
// resolved in a goroutine counted in resolving only while it resolves, so
// that Stopped, which waits for it, never waits for the goroutine that
// runs it.
type preconnActor struct {
	sys       *System
	spec      *connSpec
	start     time.Time
	cancel    context.CancelFunc
	resolving sync.WaitGroup
	timer     *time.Timer
	racer     *actor.PID
	done      bool
}

func newPreconnActor(s *System, spec *connSpec) actor.Actor {
	return &preconnActor{sys: s, spec: spec}
}

// preconnProps are the Props of a preconnection actor establishing spec's
// connection (a child of that connection).
func preconnProps(s *System, spec *connSpec) *actor.Props {
	return controlProps(func() actor.Actor { return newPreconnActor(s, spec) },
		actor.WithSupervisor(supervision.Strategy(supervision.Racer)))
}

func (p *preconnActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start = time.Now()
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if d := p.spec.cfg.EstablishmentTimeout; d > 0 {
			p.timer = time.AfterFunc(d, func() { root.Send(self, &establishTimeout{}) })
		}
		cfg := p.spec.cfg
		if !needsResolver(cfg) {
			p.race(ctx, resolveAll(context.Background(), cfg)) // addresses only: nothing blocks
			return
		}
		rctx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		p.resolving.Add(1)
		go func() {
			growStack() // this goroutine goes on to plan the race and start it
			r := resolveAll(rctx, cfg)
			p.resolving.Done()
			if rctx.Err() == nil {
				root.Send(self, r)
			}
		}()
	case *resolved:
		if p.done {
			return
		}
		p.race(ctx, m)
	case *raceDone:
		if m.err != nil {
			p.finish(ctx, &establishmentFailed{err: m.err})
			return
		}
		p.finish(ctx, m.offered)
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
		if p.cancel != nil {
			p.cancel()
		}
	case *actor.Stopped:
		p.resolving.Wait() // resolution ends once cancelled
	}
}

// race plans the candidates and spawns the racer.
func (p *preconnActor) race(ctx actor.Context, m *resolved) {
	if m.err != nil {
		p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: m.err}})
		return
	}
	cands := planCandidates(p.spec.cfg.Stacks, m.groups)
	if len(p.spec.failed) > 0 { // candidates a framer failed (FailConnection) are not tried again
		kept := cands[:0]
		for _, c := range cands {
			if !p.spec.failed[c.stack.Name()+" "+c.endpoint()] {
				kept = append(kept, c)
			}
		}
		cands = kept
	}
	if len(cands) == 0 {
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
		}
	}
	delay := ClampAttemptDelay(p.spec.cfg.AttemptDelay)
	props := controlProps(func() actor.Actor {
		return newRacerActor(p.sys, p.spec, cands, delay, p.start, key, fromCache)
	}, actor.WithSupervisor(supervision.Strategy(supervision.Candidate)))
	p.racer = ctx.SpawnPrefix(props, "racer")
}

// finish tells the connection the outcome and stops the preconnection (and
// with it the racer and any candidate still running).
func (p *preconnActor) finish(ctx actor.Context, outcome any) {
	if p.done {
		return
	}
	p.done = true
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
// concurrently (each with Happy Eyeballs resolution, see
// stacks.Resolver.Resolve), and plans the network paths of the candidate
// tree (planPaths): every local endpoint is a branch, the interface, pvd
// and useTemporaryLocalAddress Selection Properties bind, order or drop
// attempts. Remotes that fail to resolve are dropped; the result is an
// error only when nothing is left to attempt. A path property that cannot
// be satisfied gives an error wrapping ErrNoCandidates and the
// *stacks.PathError.
func resolveAll(ctx context.Context, cfg *messages.ConnectionConfig) *resolved {
	out := &resolved{}
	plan, err := pathPlanOf(cfg.Properties)
	if err != nil {
		out.err = fmt.Errorf("%w: %w", ErrNoCandidates, err)
		return out
	}
	locals, err := resolveLocals(ctx, cfg, false)
	if err != nil {
		out.err = err
		return out
	}
	remotes, err := resolveRemotes(ctx, cfg)
	if err != nil {
		out.err = err
		return out
	}
	out.remotes, out.locals = remotes, locals
	if len(locals) > 0 {
		out.local = netip.AddrPortFrom(netip.Addr{}, locals[0].port)
		if len(locals[0].addrs) > 0 {
			out.local = netip.AddrPortFrom(locals[0].addrs[0], locals[0].port)
		}
	}
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

// resolveRemotes resolves the remote endpoints, concurrently (each with
// Happy Eyeballs resolution, see stacks.Resolver.Resolve); those that fail
// to resolve are dropped. It fails only when none is left.
func resolveRemotes(ctx context.Context, cfg *messages.ConnectionConfig) ([]remoteAddrs, error) {
	type result struct {
		addrs []netip.Addr
		err   error
	}
	results := make([]result, len(cfg.Remotes))
	var wg sync.WaitGroup
	for i, r := range cfg.Remotes {
		switch {
		case r.IpAddress != "":
			a, err := netip.ParseAddr(r.IpAddress)
			results[i] = result{addrs: []netip.Addr{a.Unmap()}, err: err}
		case r.HostName != "":
			wg.Go(func() {
				as, err := cfg.Resolver.Resolve(ctx, r.HostName)
				results[i] = result{addrs: as, err: err}
			})
		}
	}
	wg.Wait()
	var errs []error
	var remotes []remoteAddrs
	for i, r := range cfg.Remotes {
		if results[i].err != nil {
			errs = append(errs, results[i].err)
			continue
		}
		ra := remoteAddrs{label: endpointLabel(r), iface: r.Interface}
		if r.Path != "" { // a Unix domain socket: one candidate, no address
			ra.label, ra.unix, ra.addrs = r.Path, r.Path, []netip.AddrPort{{}}
		}
		for _, a := range results[i].addrs {
			if r.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(r.Interface)
			}
			ra.addrs = append(ra.addrs, netip.AddrPortFrom(a, uint16(r.Port)))
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
// Initiate (the remote's path is what is dialed).
func resolveLocals(ctx context.Context, cfg *messages.ConnectionConfig, listen bool) ([]localAddrs, error) {
	var out []localAddrs
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
				return nil, fmt.Errorf("local endpoint: %w", err)
			}
			la.addrs = []netip.Addr{a.Unmap()}
		case l.HostName != "":
			as, err := cfg.Resolver.Resolve(ctx, l.HostName)
			if err != nil {
				return nil, err
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
	return out, nil
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

func endpointLabel(e *messages.Endpoint) string {
	host := e.HostName
	if host == "" {
		host = e.IpAddress
	}
	return net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
}
