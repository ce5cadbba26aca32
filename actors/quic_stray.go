package actors

import "github.com/asynkron/protoactor-go/actor"

// strayStream is a stream the peer opened on a multistreaming (QUIC)
// session after every member of the group that accepted the session had
// ended: acceptStreams sent it to the group as a peerStream, a dead letter.
// The accepting side keeps its session open after its last stream closed
// gracefully (stacks.QUIC: the peer may hold streams it has not announced
// yet, a Clone that has not sent), so such a stream is a new connection in
// a group of its own, which the listener delivers as ConnectionReceived
// (System.deadLetter routes it to the root, and aborts it if the root has
// ended).
type strayStream struct{ spec *connSpec }

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
