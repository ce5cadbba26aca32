package actors

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestSystemRegistry: a System's process registry has registryBuckets
// maps, and what protoactor registered before the swap (the dead-letter
// and event-stream processes) is still found: a request to a stopped
// actor is answered as gone, not lost.
func TestSystemRegistry(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	require.Len(t, sys.AS.ProcessRegistry.LocalPIDs.LocalPIDs, registryBuckets)
	for _, id := range []string{"deadletter", "eventstream"} {
		_, ok := sys.AS.ProcessRegistry.GetLocal(id)
		require.True(t, ok, id)
	}
	pid := sys.AS.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	require.NoError(t, StopAndWait(context.Background(), sys, pid))
	_, err := Ask(context.Background(), sys, pid, &messages.GetConnectionInfo{})
	require.ErrorIs(t, err, ErrActorGone)
}

// TestSystemChurnLeavesNothing: establishing and closing connections over
// and over leaves no actor registered (groups, connections, preconnections,
// racers and candidates all end with their connection).
func TestSystemChurnLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		fs := newFakeStack(map[netip.AddrPort]outcome{addrA: {kind: "refused"}, addrB: {kind: "ok"}})
		cfg := &messages.ConnectionConfig{Remotes: endpoints(addrA, addrB), Stacks: []stacks.Stack{fs},
			Properties: &messages.Properties{Values: map[string]*messages.PropertyValue{
				"isolateSession": {Kind: &messages.PropertyValue_BoolValue{BoolValue: true}}}}}
		base := sys.ActorCount()
		for range 50 {
			got := runRace(t, sys, cfg)
			require.NoError(t, got.err)
			require.Len(t, got.report.Attempts, 2)
			synctest.Wait()
			require.Equal(t, base, sys.ActorCount())
		}
	})
}
