package actors

import (
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// Re-establishing a group on a multistreaming session (QUIC).
//
// The members of a group that share one QUIC session lose their transports
// together when the session ends. Each re-establishing on its own would
// dial one session per member, and the peer would see as many sessions,
// each a group of one. Instead, when its backoff ends, such a member asks
// its group (sessionRejoin): the first to ask dials (the leader); the
// others wait. Once the leader is Established again, each of them opens a
// stream on the leader's new session (OpenStream, as a Clone does) and
// starts on it: one new session, and on the peer's side one group of as
// many members. Members that ask later (their transports failed later)
// open their streams on that session too. A member that asks while no
// leader dials and no session was re-established, as when the peer reset
// its stream alone, first opens its stream on the session of a member
// that is still Established: one session and one group stay. The leader
// keeps the lead through its failed attempts (they are its backoff's);
// when it gives up, its attempts spent, the waiters end with it (the
// group's attempts are made by its leader: one row, not one per member),
// and so do the members that had lost their transports by then but ask
// only later (their backoff was due later): they lost them with the
// group, whose attempts are spent, unless a member is Established again
// when they ask, on whose session they open their streams, or another
// member's new row dials (they wait for it) or has got its session.
// A member whose transport was up as the group gave up, and fails only
// later, starts a row of its own. Should the leader end otherwise or
// leave the group, the waiters ask again and one of them dials. A member
// that cannot open a stream on the session it was given (gone too) asks
// again, and dials when no other session is left.

type (
	// sessionRejoin: a member of a multistreaming group is due to
	// re-establish; failedVia is the member on whose session it could not
	// open a stream (nil: none tried); last: this is the last attempt its
	// policy allows (MaxAttempts), should it dial
	sessionRejoin struct {
		from, failedVia *actor.PID
		last            bool
	}
	// rejoinDial: the group's answer to the leader: dial.
	rejoinDial struct{}
	// rejoinVia: the group's answer to a waiter: open a stream on the
	// session of via, Established again.
	rejoinVia struct{ via *actor.PID }
	// rejoinRetry: the leader ended without a session: ask again.
	rejoinRetry struct{}
	// rejoinGiveUp: the leader spent its attempts (err, its last
	// failure): the waiters end with it.
	rejoinGiveUp struct{ err error }
	// rejoinSession: the leader is Established again, or (declined) a
	// member told to dial no longer needs to (it was asked twice: a second
	// re-establishment came while it waited, and it got its stream).
	rejoinSession struct {
		from     *actor.PID
		declined bool
	}
)

// rejoinState is a group's session re-establishment.
type rejoinState struct {
	leader  *actor.PID   // the member dialing the new session
	waiters []*actor.PID // members waiting for it
	// via is the last leader that got a session: members that ask later
	// (their transports failed later) open their streams on it
	via *actor.PID
	// last: the leader dials the last attempt its policy allows
	last bool
	// spent is the failure of the last leader that gave up, its attempts
	// spent; lost, the members that had lost their transports by then
	// (re-establishing) and had not asked: they end with it when they
	// ask, unless a member is live then, a new row dials (they wait for
	// it) or has its session (they open their streams on it); they are
	// taken out at that first request, whatever its answer
	spent error
	lost  []*actor.PID
}

// rejoin answers a member due to re-establish: it opens a stream on the
// group's new session when there is one, waits while a leader dials, or
// else dials itself (the leader).
func (g *groupActor) rejoin(ctx actor.Context, m *sessionRejoin) {
	if g.rj == nil {
		g.rj = &rejoinState{}
	}
	r := g.rj
	if m.failedVia != nil && m.failedVia.Equal(r.via) {
		r.via = nil // that session is gone too
	}
	if r.leader != nil && !r.leader.Equal(m.from) && g.member(r.leader.Id) < 0 {
		g.rejoinEnded(ctx, r.leader, false) // a leader no longer in the group: its waiters ask again
	}
	var live *actor.PID
	if r.leader == nil && m.failedVia == nil {
		live = g.liveMember(m.from)
	}
	// whatever it is answered now (to wait for a new row, to open its
	// stream on a session, to end with the group), a member lost with the
	// group is one no longer: should it lose its transport again, that is
	// a later loss
	lost := r.dropLost(m.from)
	switch {
	case r.leader != nil && !r.leader.Equal(m.from):
		r.waiters = append(r.waiters, m.from)
	case r.leader == nil && r.via != nil && !r.via.Equal(m.from) && g.member(r.via.Id) >= 0:
		ctx.Send(m.from, &rejoinVia{via: r.via})
	case live != nil:
		// its stream alone was lost (the peer reset it): the session may
		// live on under the other members
		ctx.Send(m.from, &rejoinVia{via: live})
	case lost:
		// it lost its transport before the group gave up
		ctx.Send(m.from, &rejoinGiveUp{err: r.spent})
	default:
		r.leader, r.last = m.from, m.last
		ctx.Send(m.from, &rejoinDial{})
	}
}

// liveMember returns a member other than who that is Established (nil:
// none), whose session a member that lost only its own stream opens its
// new stream on. Whether it is a stream of a session at all is for that
// member to tell: one that is not, or whose session is gone too, answers
// OpenStream with an error, and the member asks again, naming it
// (failedVia), and is not sent to a live member again.
func (g *groupActor) liveMember(who *actor.PID) *actor.PID {
	for _, mb := range g.members {
		if !mb.PID.Equal(who) && mb.Link.State() == Established {
			return mb.PID
		}
	}
	return nil
}

// rejoinEnded ends the lead of who: with its new session (ok) the waiters
// open streams on it, otherwise they ask again.
func (g *groupActor) rejoinEnded(ctx actor.Context, who *actor.PID, ok bool) {
	r := g.rj
	if r == nil {
		return
	}
	if !ok && who.Equal(r.via) {
		r.via = nil
	}
	if r.leader == nil || !r.leader.Equal(who) {
		return
	}
	waiters := r.waiters
	r.leader, r.waiters = nil, nil
	if ok {
		r.via = who
	}
	var spent error
	if !ok && r.last {
		spent = g.spentLeader(who)
	}
	if spent != nil {
		g.noteLost(who, waiters, spent)
	}
	for _, pid := range waiters {
		switch {
		case ok:
			ctx.Send(pid, &rejoinVia{via: who})
		case spent != nil:
			ctx.Send(pid, &rejoinGiveUp{err: spent})
		default:
			ctx.Send(pid, &rejoinRetry{})
		}
	}
}

// noteLost records that the group gave up with leader's failure spent
// (rejoinState.spent), and the members other than leader and its waiters
// that had lost their transports (Ready before, Establishing again): they
// share the group's fate when they ask. The session of the last leader
// that got one is gone too (the leader dialed for want of a session).
func (g *groupActor) noteLost(leader *actor.PID, waiters []*actor.PID, spent error) {
	r := g.rj
	r.spent, r.lost, r.via = spent, r.lost[:0], nil
	for _, mb := range g.members {
		if mb.PID.Equal(leader) || slices.ContainsFunc(waiters, mb.PID.Equal) {
			continue
		}
		if mb.Link.State() == Establishing && mb.Link.WasReady() {
			r.lost = append(r.lost, mb.PID)
		}
	}
}

// dropLost takes who out of the members lost with the group, and reports
// whether it was one.
func (r *rejoinState) dropLost(who *actor.PID) bool {
	i := slices.IndexFunc(r.lost, who.Equal)
	if i < 0 {
		return false
	}
	r.lost = slices.Delete(r.lost, i, i+1)
	return true
}

// spentLeader returns the failure a leader that dialed its last attempt
// ended with when it gave up (its ConnectionError is that attempt's
// establishment failure), nil when it ended otherwise (Close, Abort, a
// panic) or left the group: then a waiter takes the lead.
func (g *groupActor) spentLeader(who *actor.PID) error {
	i := g.member(who.Id)
	if i < 0 {
		return nil
	}
	l := g.members[i].Link
	err := l.Err()
	var f *EstablishmentFailure
	if l.closeCalled.Load() || !errors.As(err, &f) {
		return nil
	}
	return err
}

// rejoinLeft takes a member that left the group out of the waiters: in a
// group of its own, it dials alone rather than open its stream on the
// group's session.
func (g *groupActor) rejoinLeft(ctx actor.Context, who *actor.PID) {
	r := g.rj
	if r == nil {
		return
	}
	r.dropLost(who) // in a group of its own, it dials alone
	for i, pid := range r.waiters {
		if pid.Equal(who) {
			r.waiters = append(r.waiters[:i], r.waiters[i+1:]...)
			ctx.Send(who, &rejoinDial{})
			return
		}
	}
}

// rejoinReceive handles this file's messages at a connection.
func (c *connActor) rejoinReceive(ctx actor.Context, m any) {
	waiting := c.state == Establishing && c.t == nil && c.rejoinWait
	switch m := m.(type) {
	case *rejoinDial:
		switch {
		case waiting:
			c.rejoinWait, c.rejoinLead = false, true
			c.spawnPreconnection(ctx)
		case !c.rejoinLead:
			// an answer to a second request: the group must not wait for
			// a session this member will not dial
			ctx.Send(c.spec.group, &rejoinSession{from: ctx.Self(), declined: true})
		}
	case *rejoinRetry:
		if waiting {
			c.askRejoin(ctx, nil)
		}
	case *rejoinGiveUp:
		if waiting {
			// the group's attempts, made by its leader, are spent: as
			// when its own are (reestablish refused)
			c.rejoinWait = false
			c.apply(InEstablishmentFailed, m.err)
			c.end(ctx)
		}
	case *rejoinVia:
		if waiting {
			c.rejoinVia = m.via
			dir := c.dir
			// it may end before it answers (an ended connection does not,
			// and Stop drops the requests queued for it): Terminated below
			ctx.Watch(m.via)
			ctx.Request(m.via, &OpenStream{Dir: &dir})
		}
	case *StreamOpened:
		if !waiting || c.rejoinVia == nil { // late: asked the group again meanwhile
			_ = m.T.Abort()
			return
		}
		ctx.Unwatch(c.rejoinVia)
		c.rejoinWait, c.rejoinVia = false, nil
		if c.sys.Tracing() {
			c.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRejoined", ConnectionId: c.spec.id, GroupId: c.spec.groupID, Stack: m.Stack})
		}
		c.t, c.stack = m.T, m.Stack
		c.local, c.remote = m.T.LocalAddr(), m.T.RemoteAddr()
		c.startTransport(ctx)
	case error, *actor.DeadLetterResponse, *actor.Terminated:
		// OpenStream failed, or the member asked ended (before it answered,
		// or already gone: a dead letter): that session is gone too, ask
		// again
		if t, ok := m.(*actor.Terminated); ok && !t.Who.Equal(c.rejoinVia) {
			return
		}
		if waiting && c.rejoinVia != nil {
			c.logger().Debug("no stream on the group's session", "error", fmt.Sprint(m))
			ctx.Unwatch(c.rejoinVia)
			c.askRejoin(ctx, c.rejoinVia)
			c.rejoinVia = nil
		}
	}
}

// rejoinDue starts the re-establishment due now: through the group when
// the lost transport was a stream of a multistreaming session.
func (c *connActor) rejoinDue(ctx actor.Context) {
	if !c.multistream || c.left {
		c.spawnPreconnection(ctx)
		return
	}
	c.rejoinWait = true
	c.askRejoin(ctx, nil)
}

// askRejoin asks the group how to re-establish (sessionRejoin), telling it
// whether this attempt is the last the policy allows.
func (c *connActor) askRejoin(ctx actor.Context, failedVia *actor.PID) {
	last := false
	if c.spec.cfg != nil && c.spec.cfg.Reestablish != nil {
		last = int(c.attempts) >= c.spec.cfg.Reestablish.Normalized().MaxAttempts
	}
	ctx.Send(c.spec.group, &sessionRejoin{from: ctx.Self(), failedVia: failedVia, last: last})
}

// rejoinReady tells the group a leader is Established again.
func (c *connActor) rejoinReady() {
	if c.rejoinLead {
		c.rejoinLead = false
		c.sys.AS.Root.Send(c.spec.group, &rejoinSession{from: c.spec.self})
	}
}

// noteMultistream records whether the transport is a stream of a
// multistreaming session.
func (c *connActor) noteMultistream() {
	_, c.multistream = c.t.(stacks.MultiStream)
}
