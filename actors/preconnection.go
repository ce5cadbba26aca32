package actors

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
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
	Attempts []AttemptError
	Err      error // resolution failure, timeout, cancellation
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
	remotes []remoteAddrs
	local   netip.AddrPort
	err     error
}

type establishTimeout struct{}

// raceDone is the racer's report to its preconnection.
type raceDone struct {
	offered *transportOffered
	err     error
}

// preconnActor establishes one connection from the Preconnection snapshot:
// it resolves the endpoints (in a goroutine it owns), builds the candidate
// tree and runs a racer over it. It is a child of the connection it
// establishes, so stopping that connection (Abort, ctx cancelled) stops the
// whole establishment subtree.
type preconnActor struct {
	sys    *System
	spec   *connSpec
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
	timer  *time.Timer
	done   bool
}

func newPreconnActor(s *System, spec *connSpec) actor.Actor {
	return &preconnActor{sys: s, spec: spec}
}

func (p *preconnActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start = time.Now()
		rctx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if d := p.spec.cfg.EstablishmentTimeout; d > 0 {
			p.timer = time.AfterFunc(d, func() { root.Send(self, &establishTimeout{}) })
		}
		cfg := p.spec.cfg
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			root.Send(self, resolveAll(rctx, cfg))
		}()
	case *resolved:
		if p.done {
			return
		}
		if m.err != nil {
			p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: m.err}})
			return
		}
		cands := planCandidates(p.spec.cfg.Stacks, m.remotes, m.local)
		if len(cands) == 0 {
			p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: errors.New("no candidates")}})
			return
		}
		props := actor.PropsFromProducer(func() actor.Actor {
			return newRacerActor(p.sys, p.spec, cands, ClampAttemptDelay(p.spec.cfg.AttemptDelay), p.start)
		}, actor.WithSupervisor(supervision.Strategy(supervision.Candidate)))
		ctx.SpawnPrefix(props, "racer")
	case *raceDone:
		if m.err != nil {
			p.finish(ctx, &establishmentFailed{err: m.err})
			return
		}
		p.finish(ctx, m.offered)
	case *establishTimeout:
		p.finish(ctx, &establishmentFailed{err: &EstablishmentFailure{Err: ErrEstablishmentTimeout}})
	case *actor.Stopping:
		if p.timer != nil {
			p.timer.Stop()
		}
		p.cancel()
	case *actor.Stopped:
		p.wg.Wait()
	}
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

// resolveAll resolves every remote endpoint and the local one.
func resolveAll(ctx context.Context, cfg *messages.ConnectionConfig) *resolved {
	out := &resolved{}
	if len(cfg.Locals) > 0 {
		l := cfg.Locals[0]
		var addr netip.Addr
		if l.IpAddress != "" {
			a, err := netip.ParseAddr(l.IpAddress)
			if err != nil {
				out.err = fmt.Errorf("local endpoint: %w", err)
				return out
			}
			addr = a
		} else if l.HostName != "" {
			addrs, err := cfg.Resolver.Resolve(ctx, l.HostName)
			if err != nil {
				out.err = err
				return out
			}
			addr = addrs[0]
		}
		out.local = netip.AddrPortFrom(addr, uint16(l.Port))
	}
	var errs []error
	for _, r := range cfg.Remotes {
		label := endpointLabel(r)
		var addrs []netip.Addr
		switch {
		case r.IpAddress != "":
			a, err := netip.ParseAddr(r.IpAddress)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addrs = []netip.Addr{a}
		case r.HostName != "":
			as, err := cfg.Resolver.Resolve(ctx, r.HostName)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addrs = as
		}
		ra := remoteAddrs{label: label, iface: r.Interface}
		for _, a := range addrs {
			if out.local.Addr().IsValid() && out.local.Addr().Is4() != a.Is4() {
				continue // a local address of the other family cannot reach it
			}
			if r.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
				a = a.WithZone(r.Interface)
			}
			ra.addrs = append(ra.addrs, netip.AddrPortFrom(a, uint16(r.Port)))
		}
		if len(ra.addrs) > 0 {
			out.remotes = append(out.remotes, ra)
		}
	}
	if len(out.remotes) == 0 {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no usable remote address"))
		}
		out.err = errors.Join(errs...)
	}
	return out
}

func endpointLabel(e *messages.Endpoint) string {
	host := e.HostName
	if host == "" {
		host = e.IpAddress
	}
	return host + ":" + strconv.Itoa(int(e.Port))
}
