package actors

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// countingResolver answers every A query with addrB's address and no
// AAAA, counting the lookups.
func countingResolver(calls *atomic.Int32) stacks.Resolver {
	return stacks.Resolver{LookupNetIP: func(_ context.Context, network, _ string) ([]netip.Addr, error) {
		calls.Add(1)
		if network == "ip4" {
			return []netip.Addr{addrB.Addr()}, nil
		}
		return nil, errors.New("no AAAA")
	}}
}

// TestPreconnectionResolvesOnlyNames: endpoints given as addresses are
// planned at once, without the resolver; host names go through it.
func TestPreconnectionResolvesOnlyNames(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	var calls atomic.Int32
	fs := newFakeStack(map[netip.AddrPort]outcome{addrB: {kind: "ok"}})
	isolated := &messages.Properties{Values: map[string]*messages.PropertyValue{
		"isolateSession": {Kind: &messages.PropertyValue_BoolValue{BoolValue: true}}}}

	cfg := &messages.ConnectionConfig{Remotes: endpoints(addrB), Stacks: []stacks.Stack{fs},
		Resolver: countingResolver(&calls), Properties: isolated}
	got := runRace(t, sys, cfg)
	require.NoError(t, got.err)
	require.Zero(t, calls.Load(), "an address needs no resolver")

	named := &messages.ConnectionConfig{Remotes: []*messages.Endpoint{{HostName: "server.test", Port: uint32(addrB.Port())}},
		Stacks: []stacks.Stack{fs}, Resolver: countingResolver(&calls), Properties: isolated}
	got = runRace(t, sys, named)
	require.NoError(t, got.err)
	require.NotZero(t, calls.Load(), "a name is resolved")
	require.Equal(t, addrB.String(), got.report.Attempts[0].Endpoint)
}

// TestPreconnectionAbortWhileResolving: aborting a connection whose name
// is still being resolved ends the establishment at once and cancels the
// lookup (its goroutine ends with it).
func TestPreconnectionAbortWhileResolving(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	entered, cancelled := make(chan struct{}, 2), make(chan struct{}, 2)
	res := stacks.Resolver{LookupNetIP: func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		entered <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return nil, ctx.Err()
	}}
	fs := newFakeStack(nil)
	cfg := &messages.ConnectionConfig{Remotes: []*messages.Endpoint{{HostName: "slow.test", Port: 80}},
		Stacks: []stacks.Stack{fs}, Resolver: res}
	link := NewLink(sys.NewID(), 0, 0, true)
	r, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	<-entered
	_, err = Ask(context.Background(), sys, r.(*ConnectionStarted).Conn, &messages.AbortConnection{})
	require.NoError(t, err)
	select {
	case <-link.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the lookup was not cancelled")
	}
	require.Error(t, link.EstablishmentErr())
	fs.mu.Lock()
	defer fs.mu.Unlock()
	require.Empty(t, fs.dials, "nothing was dialed")
}
