package actors

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
	"github.com/stretchr/testify/require"
)

// BUG (reest hunt): the backoff timer of a re-establishment was not stopped
// when the connection ended during the backoff (Close): it fired later, at
// an actor long gone, as a dead letter (logged; with the System shut down
// meanwhile, it restarts protoactor's dead-letter throttle goroutine).
// Fake time: the hour of backoff passes at once.
func TestReestHuntCloseDuringBackoffStopsItsTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		var stale atomic.Int32
		sub := sys.AS.EventStream.Subscribe(func(evt any) {
			if dl, ok := evt.(*actor.DeadLetterEvent); ok {
				if _, ok := dl.Message.(*reestablishNow); ok {
					stale.Add(1)
				}
			}
		})
		defer sys.AS.EventStream.Unsubscribe(sub)
		addr := netip.MustParseAddrPort("127.0.0.1:9")
		fs := newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{fs},
			Framers:     []framers.Framer{framers.NewLengthPrefix()},
			Reestablish: &supervision.Backoff{Initial: time.Hour, Max: time.Hour}}
		link := NewLink(sys.NewID(), 0, 0, false)
		reest := make(chan int, 4)
		link.SetHandlers(Handlers{Reestablishing: func(_ error, n int) { reest <- n }})
		res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
		require.NoError(t, err)
		conn := res.(*ConnectionStarted).Conn
		<-link.Ready()
		require.NoError(t, link.EstablishmentErr())

		_ = fs.transport(addr).peer.Close() // the transport is lost
		require.Equal(t, 1, <-reest)
		sys.AS.Root.Send(conn, &messages.CloseConnection{})
		<-link.Done()
		require.NoError(t, link.Err())
		time.Sleep(2 * time.Hour) // fake time: past the backoff
		synctest.Wait()
		require.Zero(t, stale.Load(), "the backoff timer fired after the connection ended")
	})
}
