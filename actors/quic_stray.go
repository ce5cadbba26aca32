package actors

import "github.com/asynkron/protoactor-go/actor"

// strayStream is a stream the peer opened on a multistreaming (QUIC)
// session after every member of the group that accepted the session had
// ended: acceptStreams sent it to the group as a peerStream, a dead letter.
// The accepting side keeps its session open after its last stream closed
// gracefully (stacks.QUIC: the peer may hold streams it has not announced
// yet, a Clone that has not sent), so such a stream is a new connection in
// a group of its own, which the listener delivers as ConnectionReceived.
type strayStream struct{ spec *connSpec }

// rehomeStrayStreams routes the peer's streams whose group has ended to
// the root (strayStream), and aborts those the root did not take (it has
// ended).
func (s *System) rehomeStrayStreams() {
	s.AS.EventStream.Subscribe(func(evt any) {
		dl, ok := evt.(*actor.DeadLetterEvent)
		if !ok {
			return
		}
		switch m := dl.Message.(type) {
		case *peerStream:
			if m.spec.passive != nil {
				s.AS.Root.Send(s.Root, &strayStream{spec: m.spec})
			}
		case *strayStream:
			_ = m.spec.passive.Abort()
		}
	})
}

// adoptStray makes a stray stream the first member of a new group, as an
// accepted connection whose session's later streams are accepted by the
// session's first connection (acceptStreams runs as long as the session).
func (r *rootActor) adoptStray(ctx actor.Context, m *strayStream) {
	spec := m.spec
	if r.down {
		_ = spec.passive.Abort()
		return
	}
	spec.link = NewLink(spec.id, spec.cfg.RecvBufferLimit, spec.cfg.SendBufferLimit, len(spec.cfg.Framers) == 0)
	spec.link.SetPassive()
	group, conn := groupConnNames(spec.id)
	spec.name = conn
	ctx.Send(r.spawnGroup(ctx, group), &spawnMember{spec: spec})
}
