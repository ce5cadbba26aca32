package actors

import (
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// A group's ConnectionReceived handler: the streams the peer opens on a
// multistreaming (QUIC) session of the group become connections of the
// group (RFC 9622 §7.4). On the side that accepted the session they go to
// the Listener that accepted it, unless the group has a handler; on the
// side that dialed it there is no Listener, and they go to the handler
// alone. A peer's stream that nobody would take is refused at once
// (stacks.Refuser: the peer's connection fails with a reset rather than
// waiting for a reader that never comes), as the accepting side aborts
// one that becomes Ready after its Listener stopped.

// SetReceivedHandler sets (Fn nil: removes) the handler of the group's
// received connections: each is passed to Fn once Established, one call at
// a time, in order, on a goroutine of the group's (not a connection's).
type SetReceivedHandler struct {
	Fn func(*ConnectionStarted)
}

// receivedMember: a member the group's handler takes is Ready.
type receivedMember struct{ started ConnectionStarted }

// errNoReceivedHandler aborts a received member whose group no longer has
// a handler (it was removed while the member got ready).
var errNoReceivedHandler = errors.New("no ConnectionReceived handler for the group's new connections")

// refuseStream refuses a peer's stream that no member takes: nobody would
// take it, the group is closing, or its groupConnLimit is reached. The
// peer's connection fails with stacks.ErrStreamRefused.
func refuseStream(t stacks.Transport) {
	if r, ok := t.(stacks.Refuser); ok {
		_ = r.Refuse()
		return
	}
	_ = t.Abort()
}

// receivedReady delivers a received member that is Ready to the group's
// handler, or aborts it when there is none any more (or the group closes).
func (g *groupActor) receivedReady(ctx actor.Context, m *receivedMember) {
	fn := g.onReceived
	if fn == nil || g.closing || g.member(m.started.Conn.Id) < 0 {
		if fn == nil {
			ctx.Send(m.started.Conn, &messages.AbortConnection{Err: errNoReceivedHandler})
		}
		return
	}
	started := m.started
	g.calls.submitAs("ConnectionReceived handler", func() { fn(&started) })
}
