package actors

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/stretchr/testify/require"
)

// turnHarness runs a connActor that shares its transport with the other
// members of its group (a stream of a QUIC session: shared) as an actor,
// with wq queued; group is a probe that records the writeRelease messages
// it gets.
func turnHarness(t *testing.T, sys *System, wq []writeItem) (conn *actor.PID, released chan *writeRelease) {
	t.Helper()
	released = make(chan *writeRelease, 4)
	group := sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*writeRelease); ok {
			released <- m
		}
	}))
	a, b := net.Pipe()
	c := &connActor{sys: sys, state: Established, shared: true, grantAsked: true, dir: Bidirectional,
		spec: &connSpec{id: 1, group: group}, link: NewLink(sys.NewID(), 0, 0, false),
		t: &pipeTransport{Conn: a, peer: b}, wq: wq}
	conn = sys.AS.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			c.spec.self = ctx.Self()
		case *actor.Stopping, *actor.Stopped, *actor.Restarting:
			// the harness has nothing to release but its pipe
			_ = c.t.Close()
		default:
			c.Receive(ctx)
		}
	}))
	t.Cleanup(func() {
		sys.AS.Root.Stop(conn)
		sys.AS.Root.Stop(group)
	})
	return conn, released
}

// TestGroupTurnReturnedWhenItsMessagesExpired: a member of a group that
// shares one transport asked for the turn to write (connScheduler) and,
// while it waited, its messages expired (msgLifetime): the queue is
// empty when the turn comes (the lifetime timer dropped them), or
// everything in it is Expired then (dropExpired). It gives the turn back
// at once, else the other members never write again.
func TestGroupTurnReturnedWhenItsMessagesExpired(t *testing.T) {
	expired := func() []writeItem {
		m := &messages.SendMessage{SendID: 1, MessageID: 1, EndOfMessage: true, Data: []byte("late"),
			Props:  &messages.MessageProps{Lifetime: time.Millisecond, Ordered: true, Reliable: true, ChecksumLen: -1},
			Queued: time.Now().Add(-time.Second)}
		return []writeItem{{send: &outSend{msg: m, bytes: len(m.Data), framed: true}, bufs: [][]byte{m.Data}}}
	}
	for _, tt := range []struct {
		name string
		wq   []writeItem
	}{
		{"queue emptied while waiting", nil},
		{"everything expired at the turn", expired()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sys := NewSystem(Config{})
			t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
			conn, released := turnHarness(t, sys, tt.wq)
			sys.AS.Root.Send(conn, &writeGrant{})
			select {
			case r := <-released:
				require.True(t, r.from.Equal(conn))
				require.Zero(t, r.wrote, "the turn wrote nothing")
				require.Zero(t, r.more, "nothing left to ask a turn for")
			case <-time.After(5 * time.Second):
				t.Fatal("the turn was never given back: the group's other members stall")
			}
		})
	}
}
