package actors

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// groupActor is a Connection Group (RFC 9622 §7.4). Every connection starts
// in a group of its own; the group supervises its connections (a failed
// connection is stopped, never restarted, and reports ConnectionError
// itself) and ends when its last member has ended.
type groupActor struct {
	sys        *System
	id         uint64
	members    map[string]GroupMember
	order      []string
	peerOpened int // members the peer opened (streams), for groupConnLimit
}

// groupConnLimit reads the groupConnLimit property (0: unlimited).
func groupConnLimit(cfg *messages.ConnectionConfig) int {
	v := cfg.Properties.GetValues()["groupConnLimit"]
	if v == nil {
		return 0
	}
	return int(v.GetIntValue())
}

// CloneConnection asks a group for a new member made from Config (Clone);
// the reply is ConnectionStarted. Stream, when set, is a stream the
// original opened on its multistreaming session: the clone uses it.
type CloneConnection struct {
	Config *messages.ConnectionConfig
	Link   *Link
	Stream *StreamOpened
}

// peerStream is a stream the peer opened on a member's session.
type peerStream struct{ spec *connSpec }

// entangle carries a connection property change to every other member of
// the group (RFC 9622 §7.4: all connection properties but connPriority).
type entangle struct {
	from *actor.PID
	set  *messages.SetConnectionProperty
}

// GroupMember is one connection of a group.
type GroupMember struct {
	PID  *actor.PID
	Link *Link
}

// GroupMembers is the reply to ListGroupMembers.
type GroupMembers struct{ Members []GroupMember }

func newGroupActor(s *System, id uint64) actor.Actor {
	return &groupActor{sys: s, id: id, members: map[string]GroupMember{}}
}

func (g *groupActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped:
	case *spawnMember:
		g.spawn(ctx, m.spec)
	case *CloneConnection:
		spec := &connSpec{id: m.Link.ID(), cfg: m.Config, link: m.Link}
		if m.Stream != nil {
			spec.ready, spec.stack = m.Stream.T, m.Stream.Stack
		}
		g.spawn(ctx, spec)
	case *peerStream:
		if lim := groupConnLimit(m.spec.cfg); lim > 0 && g.peerOpened >= lim {
			_ = m.spec.passive.Abort() // groupConnLimit: no more peer-opened members
			g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRefused", GroupId: g.id, Error: "groupConnLimit"})
			return
		}
		g.peerOpened++
		m.spec.link = NewLink(m.spec.id, m.spec.cfg.RecvBufferLimit, m.spec.cfg.SendBufferLimit, len(m.spec.cfg.Framers) == 0)
		m.spec.link.SetPassive()
		g.spawn(ctx, m.spec)
	case *entangle:
		for _, id := range g.order {
			if mb := g.members[id]; !mb.PID.Equal(m.from) {
				ctx.Send(mb.PID, &applyEntangled{set: m.set, group: ctx.Self()})
			}
		}
	case *messages.CloseGroup:
		for _, id := range g.order {
			mb := g.members[id]
			if m.Abort {
				ctx.Send(mb.PID, &messages.AbortConnection{})
			} else {
				ctx.Send(mb.PID, &messages.CloseConnection{})
			}
		}
		if len(g.members) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *messages.ListGroupMembers:
		out := make([]GroupMember, 0, len(g.order))
		for _, id := range g.order {
			out = append(out, g.members[id])
		}
		ctx.Respond(&GroupMembers{Members: out})
	case *actor.Terminated:
		if mb, ok := g.members[m.Who.Id]; ok {
			delete(g.members, m.Who.Id)
			for i, id := range g.order {
				if id == m.Who.Id {
					g.order = append(g.order[:i], g.order[i+1:]...)
					break
				}
			}
			// a member that ended without its terminal event (it was
			// stopped by supervision) reports ConnectionError now
			mb.Link.emitTerminal(EvConnectionError, fmt.Errorf("connection actor stopped: %w", ErrClosed))
			g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberLeft", ConnectionId: mb.Link.ID(), GroupId: g.id})
		}
		if len(g.members) == 0 {
			ctx.Stop(ctx.Self())
		}
	default:
		g.sys.Logger.Warn("group: unhandled message", slog.String("type", fmt.Sprintf("%T", m)))
	}
}

// spawn starts a member connection and answers ConnectionStarted to the
// requester, if any.
func (g *groupActor) spawn(ctx actor.Context, spec *connSpec) {
	spec.group = ctx.Self()
	spec.groupID = g.id
	pid, err := ctx.SpawnNamed(connProps(g.sys, spec), fmt.Sprintf("conn%d", spec.id))
	if err != nil {
		if ctx.Sender() != nil {
			ctx.Respond(err)
		}
		return
	}
	g.members[pid.Id] = GroupMember{PID: pid, Link: spec.link}
	g.order = append(g.order, pid.Id)
	g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberJoined", ConnectionId: spec.id, GroupId: g.id})
	if ctx.Sender() != nil {
		ctx.Respond(&ConnectionStarted{Link: spec.link, Conn: pid, Group: ctx.Self()})
	}
}

// HandleFailure makes the group its members' supervisor: a connection that
// panics is stopped (never restarted) and ends with a ConnectionError
// carrying the panic.
func (g *groupActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	if mb, ok := g.members[child.Id]; ok {
		mb.Link.setState(Closed)
		mb.Link.emitTerminal(EvConnectionError, supervision.FromFailure("connection actor", reason))
	}
	sup.StopChildren(child)
}
