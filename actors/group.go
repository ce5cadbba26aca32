package actors

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// groupActor is a Connection Group (RFC 9622 §7.4). Every connection starts
// in a group of its own; the group supervises its connections (a failed
// connection is stopped, never restarted, and reports ConnectionError
// itself) and ends when its last member has ended.
//
// Most groups only ever have their first member, so a group is small: its
// members are a slice in join order (found by scanning it), and its id is
// its first member's (see rootActor.spawnGroup), so that every group can
// share one Props.
type groupActor struct {
	sys         *System
	id          uint64
	members     []GroupMember  // in join order
	first       [1]GroupMember // members' first array: most groups have one member
	peerOpened  int            // members the peer opened (streams), for groupConnLimit
	alive       int            // connection actors still running, members or not
	sched       *groupScheduler
	granted     string       // the member holding the turn to write
	schedPolicy string       // connScheduler
	rj          *rejoinState // re-establishing a multistreaming session (rejoin.go); nil until then
	// entangled holds the connection properties set on a member since the
	// group began (RFC 9622 §7.4): a stream the peer opens later joins with
	// them, not with the values its session was accepted with; nil until
	// the first change
	entangled map[string]*messages.PropertyValue
	// closing: CloseGroup (or the system's shutdown) ran; no new member
	// joins (a Clone or a peer's stream arriving after it is refused)
	closing bool
	// onReceived is the ConnectionReceived handler of the peer's streams
	// (SetReceivedHandler; nil: none), called through calls
	// (group_received.go)
	onReceived func(*ConnectionStarted)
	calls      serialExec
	// departed are the members that left the group (leaveGroup) while
	// their actors, still the group's children, run on: the group stays
	// their supervisor (HandleFailure) until they end
	departed []GroupMember
	// held: the group of a multicast listener, which makes its senders'
	// connections members (multicast.go); it does not end while held
	held bool
	// down: the system shuts down (no new member joins)
	down bool
}

// member returns the index of the member whose actor id is id, or -1.
func (g *groupActor) member(id string) int {
	for i, mb := range g.members {
		if mb.PID.Id == id {
			return i
		}
	}
	return -1
}

// dropMember takes the member whose actor id is id out of the list; ok is
// false when it was not in it.
func (g *groupActor) dropMember(id string) (mb GroupMember, ok bool) {
	i := g.member(id)
	if i < 0 {
		return GroupMember{}, false
	}
	mb = g.members[i]
	g.members = slices.Delete(g.members, i, i+1)
	return mb, true
}

// removeMember takes a member out of the group's list (it may still run).
func (g *groupActor) removeMember(id string) {
	if mb, ok := g.dropMember(id); ok {
		g.departed = append(g.departed, mb)
	}
	if g.sched != nil {
		g.sched.leave(id)
	}
}

// grant gives member id the turn to write.
func (g *groupActor) grant(ctx actor.Context, id string) {
	if i := g.member(id); i >= 0 {
		g.granted = id
		q, split := g.sched.quantum()
		ctx.Send(g.members[i].PID, &writeGrant{quantum: q, split: split})
		return
	}
	if next, ok := g.sched.release(); ok { // it left meanwhile
		g.grant(ctx, next)
	}
}

// groupConnLimit reads the groupConnLimit property (0: unlimited).
func groupConnLimit(cfg *messages.ConnectionConfig) int {
	v := cfg.Properties.GetValues()["groupConnLimit"]
	if v == nil {
		return 0
	}
	return int(v.GetIntValue())
}

// withEntangled is cfg with the connection properties changed in the group
// since it began (g.entangled), and the stack options derived from them.
func (g *groupActor) withEntangled(cfg *messages.ConnectionConfig) *messages.ConnectionConfig {
	if len(g.entangled) == 0 {
		return cfg
	}
	values := make(map[string]*messages.PropertyValue, len(cfg.Properties.GetValues())+len(g.entangled))
	maps.Copy(values, cfg.Properties.GetValues())
	maps.Copy(values, g.entangled)
	out := *cfg // copy on write: the snapshot is shared
	out.Properties = &messages.Properties{Values: values}
	if out.DeriveStackOptions != nil {
		out.StackOptions = out.DeriveStackOptions(out.Properties, out.StackOptions)
	}
	return &out
}

// CloneConnection asks a group for a new member made from Config (Clone);
// the reply is ConnectionStarted. Stream, when set, is a stream the
// original opened on its multistreaming session: the clone uses it.
type CloneConnection struct {
	Config *messages.ConnectionConfig
	Link   *Link
	Stream *StreamOpened
}

// leaveGroup: a member could not apply an entangled change and leaves the
// group (it stays this actor's child until it ends).
type leaveGroup struct{ who *actor.PID }

// peerStream is a stream the peer opened on a member's session; owner is
// the member whose acceptStreams took it.
type peerStream struct {
	spec  *connSpec
	owner *actor.PID
}

// The group transmission scheduler's messages: a member asks for the turn
// to write a batch, the group grants it, the member releases it.
type (
	writeRequest struct {
		from     *actor.PID
		bytes    int
		priority int64
	}
	// writeGrant is the turn: at most quantum bytes, messages cut at it
	// when split (splitTurn)
	writeGrant struct {
		quantum int
		split   bool
	}
	// writePriority: a member waiting for its turn has a new
	// connPriority, which counts for that turn
	writePriority struct {
		from     *actor.PID
		priority int64
	}
	writeRelease struct {
		from  *actor.PID
		wrote int // the bytes the turn wrote
		// more > 0: the member has more to write; its next request joins
		// the choice of who goes next
		more     int
		priority int64
	}
)

// entangle carries a connection property change to every member of the
// group (RFC 9622 §7.4: all connection properties but connPriority).
type entangle struct {
	from *actor.PID
	set  *messages.SetConnectionProperty
}

// errMemberStopped is the ConnectionError of a member whose actor ended
// without reporting its terminal event.
var errMemberStopped = fmt.Errorf("connection actor stopped: %w", ErrClosed)

// GroupMember is one connection of a group.
type GroupMember struct {
	PID  *actor.PID
	Link *Link
}

// GroupMembers is the reply to ListGroupMembers.
type GroupMembers struct{ Members []GroupMember }

func newGroupActor(s *System) actor.Actor { return &groupActor{sys: s} }

func (g *groupActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped:
	case *spawnMember:
		if g.id == 0 {
			g.id = m.spec.id // the first member's id is the group's
		}
		g.spawn(ctx, m.spec)
	case *holdGroup: // multicast.go
		g.id, g.held = m.id, true
	case *adoptConnection: // a sender to the holding listener's group
		if g.down {
			_ = m.t.Abort()
			m.spec.releaseSlot()
			return
		}
		m.makeSpec(g.sys)
		g.spawn(ctx, &m.spec)
	case *releaseGroup:
		g.held = false
		g.maybeStop(ctx)
	case *CloneConnection:
		if g.closing {
			// the facade checked the original before the group closed it
			if m.Stream != nil {
				_ = m.Stream.T.Abort()
			}
			ctx.Respond(&StateError{Op: OpClone, State: Closing})
			return
		}
		spec := &connSpec{id: m.Link.ID(), cfg: m.Config, link: m.Link}
		if m.Stream != nil {
			spec.ready, spec.stack = m.Stream.T, m.Stream.Stack
		}
		g.spawn(ctx, spec)
	case *peerStream:
		if g.closing {
			refuseStream(m.spec.passive) // the group is closing: no new member
			if g.sys.Tracing() {
				g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRefused", GroupId: g.id, Error: "group closing"})
			}
			return
		}
		if g.onReceived == nil && m.spec.listener == nil {
			// a session this side dialed, and no handler: nobody would
			// take it (group_received.go)
			refuseStream(m.spec.passive)
			if g.sys.Tracing() {
				g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRefused", GroupId: g.id, Error: "no ConnectionReceived handler"})
			}
			return
		}
		m.spec.cfg = g.withEntangled(m.spec.cfg)
		if lim := groupConnLimit(m.spec.cfg); lim > 0 && g.peerOpened >= lim {
			refuseStream(m.spec.passive) // groupConnLimit: no more peer-opened members
			if g.sys.Tracing() {
				g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberRefused", GroupId: g.id, Error: "groupConnLimit"})
			}
			return
		}
		g.peerOpened++
		if g.onReceived != nil { // the group's handler takes it, not the listener
			m.spec.listener, m.spec.listenGate, m.spec.groupReceived = nil, nil, true
		}
		m.spec.link = NewLink(m.spec.id, m.spec.cfg.RecvBufferLimit, m.spec.cfg.SendBufferLimit, len(m.spec.cfg.Framers) == 0)
		m.spec.link.SetPassive()
		g.spawn(ctx, m.spec)
		if m.owner != nil {
			ctx.Send(m.owner, &streamAccepted{}) // its session is shared now
		}
	case *SetReceivedHandler:
		g.onReceived = m.Fn
	case *receivedMember:
		g.receivedReady(ctx, m)
	case *entangle:
		if g.entangled == nil {
			g.entangled = map[string]*messages.PropertyValue{}
		}
		g.entangled[m.set.Name] = m.set.Value
		if m.set.Name == "connScheduler" { // the group's own property
			g.schedPolicy = m.set.Value.GetEnumValue()
			if g.sched != nil {
				g.sched.policy = g.schedPolicy
			}
		}
		// to the member that made the change too: every member applies the
		// changes in the group's order, so two members setting one
		// property at once end with the same value (the setter skips its
		// own change when nothing came in between, connActor)
		for _, mb := range g.members {
			ctx.Send(mb.PID, &applyEntangled{set: m.set, group: ctx.Self()})
		}
	case *leaveGroup:
		g.removeMember(m.who.Id)
		g.rejoinEnded(ctx, m.who, false)
		g.rejoinLeft(ctx, m.who)
	case *sessionRejoin:
		g.rejoin(ctx, m)
	case *rejoinSession:
		g.rejoinEnded(ctx, m.from, !m.declined)
	case *writeRequest:
		if g.sched == nil {
			g.sched = newGroupScheduler(g.schedPolicy)
		}
		g.sched.join(m.from.Id)
		if id, ok := g.sched.request(m.from.Id, m.bytes, m.priority); ok {
			g.grant(ctx, id)
		}
	case *writePriority:
		if g.sched != nil {
			g.sched.reprioritize(m.from.Id, m.priority)
		}
	case *writeRelease:
		if g.sched != nil && g.granted == m.from.Id {
			g.granted = ""
			g.sched.wrote(m.from.Id, m.wrote)
			var id string
			var ok bool
			if m.more > 0 {
				id, ok = g.sched.releaseAndRequest(m.from.Id, m.more, m.priority)
			} else {
				id, ok = g.sched.release()
			}
			if ok {
				g.grant(ctx, id)
			}
		}
	case *messages.CloseGroup:
		g.closing = true
		// every member is Closing before the one CloseGroup or
		// AbortGroup was called on returns (it asks), as that one is:
		// its commands below may wait for a member's current turn
		for _, mb := range g.members {
			mb.Link.MarkCloseCalled()
		}
		if ctx.Sender() != nil {
			ctx.Respond(&GroupClosing{})
		}
		for _, mb := range g.members {
			if m.Abort {
				ctx.Send(mb.PID, &messages.AbortConnection{})
			} else {
				ctx.Send(mb.PID, &messages.CloseConnection{})
			}
		}
		g.maybeStop(ctx)
	case *messages.ShutdownSystem:
		// the system shuts down: every connection this actor runs closes,
		// members and those that left the group alike
		g.closing, g.down = true, true
		for _, pid := range ctx.Children() {
			if m.Abort {
				ctx.Send(pid, &messages.AbortConnection{})
			} else {
				ctx.Send(pid, &messages.CloseConnection{})
			}
		}
		if g.alive <= 0 && !g.held {
			ctx.Stop(ctx.Self())
		}
	case *messages.ListGroupMembers:
		ctx.Respond(&GroupMembers{Members: slices.Clone(g.members)})
	case *actor.Terminated:
		g.alive--
		g.rejoinEnded(ctx, m.Who, false)
		if g.sched != nil {
			g.sched.leave(m.Who.Id)
			if g.granted == m.Who.Id { // it ended holding the turn
				g.granted = ""
				if id, ok := g.sched.release(); ok {
					g.grant(ctx, id)
				}
			}
		}
		g.departed = slices.DeleteFunc(g.departed, func(d GroupMember) bool { return d.PID.Id == m.Who.Id })
		if mb, ok := g.dropMember(m.Who.Id); ok {
			// a member that ended without its terminal event (it was
			// stopped by supervision) reports ConnectionError now
			mb.Link.emitTerminal(EvConnectionError, errMemberStopped)
			if g.sys.Tracing() {
				g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberLeft", ConnectionId: mb.Link.ID(), GroupId: g.id})
			}
		}
		g.maybeStop(ctx)
	default:
		g.sys.Logger.Warn("group: unhandled message", slog.String("type", fmt.Sprintf("%T", m)))
	}
}

// maybeStop ends the group once it has no member and no connection actor
// left, unless a multicast listener holds it.
func (g *groupActor) maybeStop(ctx actor.Context) {
	if len(g.members) == 0 && g.alive <= 0 && !g.held {
		ctx.Stop(ctx.Self())
	}
}

// GroupClosing answers a CloseGroup asked of a group: its members are
// Closing (Link.State), their close or abort is on its way.
type GroupClosing struct{}

// spawn starts a member connection and answers ConnectionStarted to the
// requester, if any.
func (g *groupActor) spawn(ctx actor.Context, spec *connSpec) {
	spec.sys = g.sys
	spec.group = ctx.Self()
	spec.groupID = g.id
	name := spec.name
	if name == "" {
		name = idName("conn", spec.id)
	}
	pid, err := ctx.SpawnNamed(connProps, name)
	if err != nil {
		spec.releaseSlot()
		if ctx.Sender() != nil {
			ctx.Respond(err)
		}
		return
	}
	// its first message: the actor starts from it (its Started did
	// nothing); it runs now, on this goroutine, as the actor is idle
	ctx.Send(pid, spec)
	g.alive++
	if g.members == nil {
		g.members = g.first[:0]
	}
	g.members = append(g.members, GroupMember{PID: pid, Link: spec.link})
	if v := spec.cfg.Properties.GetValues()["connScheduler"]; v != nil && g.schedPolicy == "" {
		g.schedPolicy = v.GetEnumValue()
	}
	if g.sys.Tracing() {
		g.sys.trace(&messages.TraceRecord{Kind: "group", Event: "MemberJoined", ConnectionId: spec.id, GroupId: g.id})
	}
	if ctx.Sender() != nil {
		ctx.Respond(&ConnectionStarted{Link: spec.link, Conn: pid, Group: ctx.Self()})
	}
}

// HandleFailure makes the group its members' supervisor: a connection that
// panics is stopped (never restarted) and ends with a ConnectionError
// carrying the panic, or an EstablishmentError when it was never Ready
// (Initiate and Clone return it; a connection that was Ready once and is
// re-establishing has a ConnectionError, as connActor.apply gives).
func (g *groupActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	mb, ok := GroupMember{}, false
	if i := g.member(child.Id); i >= 0 {
		mb, ok = g.members[i], true
	} else if i := slices.IndexFunc(g.departed, func(d GroupMember) bool { return d.PID.Id == child.Id }); i >= 0 {
		mb, ok = g.departed[i], true // it left the group: still its supervisor
	}
	if ok {
		ev := EvConnectionError
		if !mb.Link.WasReady() { // the failed actor runs no more: Ready cannot come meanwhile
			ev = EvEstablishmentError
		}
		mb.Link.setState(Closed)
		mb.Link.emitTerminal(ev, supervision.FromFailure("connection actor", reason))
	}
	sup.StopChildren(child)
}
