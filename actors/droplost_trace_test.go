package actors

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
	"github.com/stretchr/testify/require"
)

// TestDropLostSendErrorIsTraced: a send whose waiter was registered only
// after its connection lost its transport (another send, with a higher
// id, was registered before: concurrent senders), and which reaches the
// actor after the loss, gets its SendError there (dropLost); that
// SendError is traced too, before the application sees it, as the
// SendErrors of the loss are.
func TestDropLostSendErrorIsTraced(t *testing.T) {
	var mu sync.Mutex
	traced := map[uint64]int{}
	sys := NewSystem(Config{Tracer: func(r *messages.TraceRecord) {
		if r.Kind == "send_error" {
			mu.Lock()
			traced[r.MessageId]++
			mu.Unlock()
		}
	}})
	defer shutdown(t, sys)
	tracedOf := func(id uint64) int {
		mu.Lock()
		defer mu.Unlock()
		return traced[id]
	}
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

	early, late := sys.NewID(), sys.NewID()
	// the later send is registered before the loss, the earlier after it
	lateErr := make(chan error, 1)
	require.True(t, link.ExpectSend(late, func(err error) { lateErr <- err }))
	_ = fs.transport(addr).peer.Close() // the transport is lost
	require.Equal(t, 1, <-reest)
	require.Error(t, <-lateErr)
	require.Equal(t, 1, tracedOf(late))

	earlyErr := make(chan error, 1)
	earlyTraced := make(chan int, 1)
	require.True(t, link.ExpectSend(early, func(err error) { earlyTraced <- tracedOf(early); earlyErr <- err }))
	sys.AS.Root.Send(conn, &messages.SendMessage{SendID: early, MessageID: early, Data: []byte("early"), EndOfMessage: true,
		Props: &messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}})
	require.Error(t, <-earlyErr, "dropped: lost with the transport")
	require.Equal(t, 1, <-earlyTraced, "its SendError traced before it was reported")

	sys.AS.Root.Send(conn, &messages.CloseConnection{})
	<-link.Done()
	require.Equal(t, 1, tracedOf(early))
	require.Equal(t, 1, tracedOf(late))
}
