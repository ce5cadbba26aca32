package actors

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestLinkAbandon: a caller whose start request got no answer abandons the
// Link. Before the connection actor starts, the actor then aborts as it
// starts, dialling nothing and never Ready; after, Abandon names the actor,
// for the caller to abort it.
func TestLinkAbandon(t *testing.T) {
	s := NewSystem(Config{})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone := errors.New("the caller gave up")

	fs := newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "ok"}})
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addrB), Stacks: []stacks.Stack{fs}}
	link := NewLink(s.NewID(), 0, 0, true)
	require.Nil(t, link.Abandon(gone), "no actor yet")
	_, err := Ask(ctx, s, s.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	select {
	case <-link.Done():
	case <-ctx.Done():
		t.Fatal("the abandoned connection did not end")
	}
	require.False(t, link.WasReady())
	fs.mu.Lock()
	dials := len(fs.dials)
	fs.mu.Unlock()
	require.Zero(t, dials, "an abandoned connection dials nothing")

	link = NewLink(s.NewID(), 0, 0, true)
	res, err := Ask(ctx, s, s.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	pid := link.Abandon(gone)
	require.NotNil(t, pid, "started: the caller is told the actor")
	require.True(t, pid.Equal(res.(*ConnectionStarted).Conn))
	s.AS.Root.Send(pid, &messages.AbortConnection{Err: gone})
	select {
	case <-link.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end after its abort")
	}
}
