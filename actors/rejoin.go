package actors

import (
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
// open their streams on that session too. The leader keeps the lead
// through its failed attempts (they are its backoff's); should it end or
// leave the group, the waiters ask again and one of them dials. A member
// that cannot open a stream on the session it was given (gone too) asks
// again, and dials when no other session is left.

type (
	// sessionRejoin: a member of a multistreaming group is due to
	// re-establish; failedVia is the member on whose session it could not
	// open a stream (nil: none tried)
	sessionRejoin struct{ from, failedVia *actor.PID }
	// rejoinDial: the group's answer to the leader: dial.
	rejoinDial struct{}
	// rejoinVia: the group's answer to a waiter: open a stream on the
	// session of via, Established again.
	rejoinVia struct{ via *actor.PID }
	// rejoinRetry: the leader ended without a session: ask again.
	rejoinRetry struct{}
	// rejoinSession: the leader is Established again.
	rejoinSession struct{ from *actor.PID }
)

// rejoinState is a group's session re-establishment.
type rejoinState struct {
	leader  *actor.PID   // the member dialing the new session
	waiters []*actor.PID // members waiting for it
	// via is the last leader that got a session: members that ask later
	// (their transports failed later) open their streams on it
	via *actor.PID
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
	switch {
	case r.leader != nil && !r.leader.Equal(m.from):
		r.waiters = append(r.waiters, m.from)
	case r.leader == nil && r.via != nil && !r.via.Equal(m.from) && g.member(r.via.Id) >= 0:
		ctx.Send(m.from, &rejoinVia{via: r.via})
	default:
		r.leader = m.from
		ctx.Send(m.from, &rejoinDial{})
	}
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
	for _, pid := range waiters {
		if ok {
			ctx.Send(pid, &rejoinVia{via: who})
		} else {
			ctx.Send(pid, &rejoinRetry{})
		}
	}
}

// rejoinReceive handles this file's messages at a connection.
func (c *connActor) rejoinReceive(ctx actor.Context, m any) {
	waiting := c.state == Establishing && c.t == nil && c.rejoinWait
	switch m := m.(type) {
	case *rejoinDial:
		if waiting {
			c.rejoinWait, c.rejoinLead = false, true
			c.spawnPreconnection(ctx)
		}
	case *rejoinRetry:
		if waiting {
			ctx.Send(c.spec.group, &sessionRejoin{from: ctx.Self()})
		}
	case *rejoinVia:
		if waiting {
			c.rejoinVia = m.via
			dir := c.dir
			ctx.Request(m.via, &OpenStream{Dir: &dir})
		}
	case *StreamOpened:
		if !waiting {
			_ = m.T.Abort()
			return
		}
		c.rejoinWait, c.rejoinVia = false, nil
		c.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRejoined", ConnectionId: c.spec.id, GroupId: c.spec.groupID, Stack: m.Stack})
		c.t, c.stack = m.T, m.Stack
		c.local, c.remote = m.T.LocalAddr(), m.T.RemoteAddr()
		c.startTransport(ctx)
	case error: // OpenStream failed: that session is gone too, ask again
		if waiting && c.rejoinVia != nil {
			c.logger().Debug("no stream on the group's session", "error", m.Error())
			ctx.Send(c.spec.group, &sessionRejoin{from: ctx.Self(), failedVia: c.rejoinVia})
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
	ctx.Send(c.spec.group, &sessionRejoin{from: ctx.Self()})
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
