package actors

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestGroupsHuntCloneAfterCloseGroupIsRefused: a Clone request that reaches
// the group after CloseGroup (the facade checked the original's state just
// before the group closed it) is refused and its stream aborted; before,
// the group spawned it as a new member that nothing closed.
func TestGroupsHuntCloneAfterCloseGroupIsRefused(t *testing.T) {
	sys := NewSystem(Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer func() { require.NoError(t, sys.Shutdown(context.Background())) }()
	st := newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "ok"}})
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{st}, Remotes: endpoints(addrB)}
	link := NewLink(sys.NewID(), 0, 0, true)
	res, err := Ask(ctx, sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	started := res.(*ConnectionStarted)
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())

	sys.AS.Root.Send(started.Group, &messages.CloseGroup{})
	a, b := net.Pipe()
	stream := &pipeTransport{Conn: a, peer: b, remote: addrB}
	cl := NewLink(sys.NewID(), 0, 0, true)
	_, err = Ask(ctx, sys, started.Group, &CloneConnection{Config: cfg, Link: cl, Stream: &StreamOpened{T: stream, Stack: "fake"}})
	<-link.Done()
	if err != nil {
		t.Logf("refused: %v", err)
		// the group, or when it has ended the dead letter, aborts the
		// stream: its peer end sees it closed
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second)) // fails once the pipe is closed already
		_, rerr := b.Read(make([]byte, 1))
		require.NotErrorIs(t, rerr, os.ErrDeadlineExceeded, "a refused clone's stream is aborted")
		require.True(t, stream.closed.Load(), "a refused clone's stream is aborted")
		return
	}
	select {
	case <-cl.Done():
	case <-ctx.Done():
		t.Fatalf("a clone started after CloseGroup is still %v", cl.State())
	}
}
