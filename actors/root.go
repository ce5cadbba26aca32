package actors

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// rootActor is the one top-level actor of a System. Its children are the
// connection groups and the listeners; it creates them, and it closes them
// all at Shutdown. Its guardian stops it on failure (never restarts).
type rootActor struct {
	sys        *System
	live       int // children (groups and listeners) not terminated yet
	down       bool
	shutdownW  []*actor.PID // who waits for the last child to end
	groupProps *actor.Props // shared by every group (a group's id is its first member's)
}

func newRootActor(s *System) actor.Actor {
	return &rootActor{sys: s, groupProps: controlProps(func() actor.Actor { return newGroupActor(s) },
		actor.WithSupervisor(supervision.Strategy(supervision.Connection)))}
}

// ConnectionStarted is the reply to InitiateConnection and what a
// listener's ConnectionReceived carries.
type ConnectionStarted struct {
	Link  *Link
	Conn  *actor.PID
	Group *actor.PID
}

// InitiateConnection asks the root to create a connection (in a new group)
// and establish it. The facade creates the Link (with its handlers) first,
// so that no event can happen before the handlers are in place.
type InitiateConnection struct {
	Config *messages.ConnectionConfig
	Link   *Link
	// FirstMessage is sent as soon as possible (InitiateWithSend).
	FirstMessage *messages.SendMessage
	// Deadline is Initiate's ctx deadline (zero: none); racing gives a
	// plain fallback its chance before it (racerActor.fallbackHold).
	Deadline time.Time
}

// adoptConnection asks the root to make a connection of an accepted
// transport (from a listener).
type adoptConnection struct {
	cfg      *messages.ConnectionConfig
	t        stacks.Transport
	stack    string
	listener *actor.PID
	listenID uint64
	// rendezvous: made by a rendezvous (RendezvousDone), not a listener
	rendezvous bool
	spec       connSpec // the new connection's, one object with the message
	// the root's message to the new group and the connection's to its
	// listener, one object with this one
	member   spawnMember
	received connectionReceived
}

// makeSpec makes the spec of the accepted connection in m.spec (and
// points m.member at it), with a new id, which it returns.
func (m *adoptConnection) makeSpec(sys *System) uint64 {
	id := sys.NewID()
	spec := &m.spec
	*spec = connSpec{
		id:       id,
		cfg:      m.cfg,
		link:     NewLink(id, m.cfg.RecvBufferLimit, m.cfg.SendBufferLimit, len(m.cfg.Framers) == 0),
		passive:  m.t,
		stack:    m.stack,
		listener: m.listener,
		// set by the listener with the message (listener.go)
		listenGate: spec.listenGate,
		acceptSlot: spec.acceptSlot,
		// the first stream of a multistreaming session: later streams
		// the peer opens join this connection's group
		acceptStreams: true,
		received:      &m.received,
		rendezvous:    m.rendezvous,
	}
	spec.link.SetPassive()
	m.member.spec = spec
	return id
}

// spawnMember asks a new group to spawn its first connection; the group
// answers ConnectionStarted to the original requester.
type spawnMember struct {
	spec *connSpec
}

func (r *rootActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped:
	case *InitiateConnection:
		if r.down {
			ctx.Respond(ErrShutdown)
			return
		}
		id := m.Link.ID()
		spec := &connSpec{id: id, cfg: m.Config, link: m.Link, first: m.FirstMessage}
		if !m.Deadline.IsZero() {
			spec.deadline = m.Deadline.UnixNano()
		}
		g := r.spawnGroup(ctx, idName("group", id))
		ctx.RequestWithCustomSender(g, &spawnMember{spec: spec}, ctx.Sender())
	case *adoptConnection:
		if r.down {
			_ = m.t.Abort()
			m.spec.releaseSlot()
			return
		}
		id := m.makeSpec(r.sys)
		group, conn := groupConnNames(id)
		m.spec.name = conn
		g := r.spawnGroup(ctx, group)
		if m.rendezvous {
			// the group answers the rendezvous ConnectionStarted: it
			// watches the connection until Ready (rendezvous.go)
			ctx.RequestWithCustomSender(g, &m.member, m.listener)
		} else {
			ctx.Send(g, &m.member)
		}
	case *messages.StartListening:
		if r.down {
			ctx.Respond(ErrShutdown)
			return
		}
		id := r.sys.NewID()
		var group *actor.PID
		if multicastListen(m.Config) {
			// the group of every sender's connection (listener.go): made
			// first, and held for the listener until it stops
			gid := r.sys.NewID()
			group = r.spawnGroup(ctx, idName("group", gid))
			ctx.Send(group, &holdGroup{id: gid})
		}
		props := controlProps(func() actor.Actor {
			l := newListenerActor(r.sys, id, m.Config)
			l.(*listenerActor).group = group
			return l
		}, actor.WithSupervisor(supervision.Strategy(supervision.Listener)))
		pid, err := ctx.SpawnNamed(props, fmt.Sprintf("listener%d", id))
		if err != nil {
			ctx.Respond(err)
			return
		}
		r.live++
		ctx.Forward(pid)
	case *strayStream:
		r.adoptStray(ctx, m)
	case *StartRendezvous:
		r.spawnForward(ctx, newRendezvousProps(r.sys, m), "rendezvous")
	case *ResolveEndpoints:
		r.spawnForward(ctx, newResolveProps(m), "resolve")
	case *messages.ShutdownSystem:
		r.down = true
		for _, c := range ctx.Children() {
			switch {
			case m.Abort:
				ctx.Stop(c)
			default:
				ctx.Send(c, &messages.ShutdownSystem{}) // groups close their connections; listeners stop
			}
		}
		if r.live == 0 {
			ctx.Respond(true)
			return
		}
		if s := ctx.Sender(); s != nil {
			r.shutdownW = append(r.shutdownW, s)
		}
	case *actor.Terminated:
		r.live--
		if r.live == 0 && len(r.shutdownW) > 0 {
			for _, w := range r.shutdownW {
				ctx.Send(w, true)
			}
			r.shutdownW = nil
		}
	default:
		r.sys.Logger.Warn("root: unhandled message", slog.String("type", fmt.Sprintf("%T", m)))
	}
}

// spawnForward spawns a child (rendezvous.go) and forwards the request to
// it, which answers the requester.
func (r *rootActor) spawnForward(ctx actor.Context, props *actor.Props, prefix string) {
	if r.down {
		ctx.Respond(ErrShutdown)
		return
	}
	ctx.Forward(ctx.SpawnPrefix(props, prefix))
	r.live++
}

// spawnGroup starts a group named name (idName("group", id) for the
// connection id: its first member, whose id the group takes). Connection
// ids are unique in a System, and so is the name; should it be taken all
// the same, a suffix makes it unique.
func (r *rootActor) spawnGroup(ctx actor.Context, name string) *actor.PID {
	pid, err := ctx.SpawnNamed(r.groupProps, name)
	if err != nil {
		pid = ctx.SpawnPrefix(r.groupProps, name+"-")
	}
	r.live++
	return pid
}

// groupConnNames are idName("group", id) and idName("conn", id), made in
// one allocation.
func groupConnNames(id uint64) (group, conn string) {
	var b [64]byte
	s := append(b[:0], "group"...)
	s = strconv.AppendUint(s, id, 10)
	k := len(s)
	s = append(s, "conn"...)
	s = strconv.AppendUint(s, id, 10)
	all := string(s)
	return all[:k], all[k:]
}

// idName is prefix followed by id in decimal, made in one allocation.
func idName(prefix string, id uint64) string {
	var b [32]byte
	return string(strconv.AppendUint(append(b[:0], prefix...), id, 10))
}
