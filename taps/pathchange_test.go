package taps

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pathMonitorRunning reports whether sys runs its route monitor.
func pathMonitorRunning(sys *System) bool { return sys.s.PathMonitorRunning() }

// TestConnectionPathChangeOnSwitch: removing the remote in use of a
// connection with a re-establishment policy switches it to the other
// remote; once it is Established there, PathChange fires exactly once,
// after Reestablished, and the new remote is the one in use and in
// Endpoints. On Linux the route monitor runs for the connection before
// any handler: it guards the path of a connection with a re-establishment
// policy (TestPathLostReestablishesIdleInNetns).
func TestConnectionPathChangeOnSwitch(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Hour})}, a.remote())
	epEcho(t, ctx, c, "to a")
	require.Equal(t, runtime.GOOS == "linux", pathMonitorRunning(sys),
		"a connection with a re-establishment policy has its path guarded by the route monitor (Linux)")

	var mu sync.Mutex
	var events []string
	changed := make(chan struct{}, 4)
	c.OnReestablished(func(*Connection, int) {
		mu.Lock()
		events = append(events, "Reestablished")
		mu.Unlock()
	})
	c.OnPathChange(func(got *Connection) {
		require.Same(t, c, got)
		mu.Lock()
		events = append(events, "PathChange")
		mu.Unlock()
		changed <- struct{}{}
	})
	epRemotePort(t, ctx, c) // the actor has seen the new handler
	if runtime.GOOS == "linux" {
		require.True(t, pathMonitorRunning(sys), "a PathChange handler on Linux starts the route monitor")
	}
	require.NoError(t, c.AddRemote(ctx, b.remote()))
	epEcho(t, ctx, c, "still to a: adding is no path change")

	require.NoError(t, c.RemoveRemote(ctx, a.remote()))
	epAwait(t, ctx, changed, "PathChange")
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	require.Equal(t, []string{b.addr.String()}, epRemotes(t, ctx, c))
	epEcho(t, ctx, c, "to b")
	mu.Lock()
	require.Equal(t, []string{"Reestablished", "PathChange"}, events, "PathChange once, after Reestablished")
	mu.Unlock()
	require.Empty(t, changed)
	c.Abort()
	<-c.Done()
}

// TestConnectionNoPathChangeSamePath: a connection re-established to the
// same remote from the same address (a new socket, a new local port) has
// no PathChange; one switched to another remote has.
func TestConnectionNoPathChangeSamePath(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, MaxAttempts: 5})}, a.remote())
	_, reestablished := epReestablishEvents(c)
	changed := make(chan struct{}, 4)
	c.OnPathChange(func(*Connection) { changed <- struct{}{} })
	first := a.next(t, ctx)
	first.Abort() // the peer resets: c re-establishes to a
	epAwait(t, ctx, reestablished, "Reestablished to a")
	a.next(t, ctx)
	require.Equal(t, a.addr.Port(), epRemotePort(t, ctx, c))
	require.Empty(t, changed, "same remote, same local address: no PathChange")

	require.NoError(t, c.AddRemote(ctx, b.remote()))
	require.NoError(t, c.RemoveRemote(ctx, a.remote()))
	epAwait(t, ctx, reestablished, "Reestablished to b")
	epAwait(t, ctx, changed, "PathChange")
	c.Abort()
	<-c.Done()
}

// TestPathChangeHandlerRemoved: OnPathChange(nil) on a connection with a
// re-establishment policy keeps it on the route monitor (which guards its
// path) and a switch then reports nothing; the connection's end takes it
// off. On a connection without a policy, OnPathChange(nil) takes it off
// the route monitor, and the System's last one stops it.
func TestPathChangeHandlerRemoved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the route monitor is Linux's")
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Hour})}, a.remote(), b.remote())
	defer func() { c.Abort(); <-c.Done() }()
	changed := make(chan struct{}, 1)
	c.OnPathChange(func(*Connection) { changed <- struct{}{} })
	epRemotePort(t, ctx, c) // the actor has seen the handler
	require.True(t, pathMonitorRunning(sys))
	c.OnPathChange(nil)
	epRemotePort(t, ctx, c)
	require.True(t, pathMonitorRunning(sys), "no handler left, the re-establishment policy still guards the path")
	reestablished := make(chan struct{}, 1)
	c.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })
	inUse := a
	if epRemotePort(t, ctx, c) == b.addr.Port() {
		inUse = b
	}
	require.NoError(t, c.RemoveRemote(ctx, inUse.remote()))
	epAwait(t, ctx, reestablished, "Reestablished")
	epEcho(t, ctx, c, "switched")
	require.Empty(t, changed, "no handler: no PathChange")
	c.Abort()
	<-c.Done()
	require.False(t, pathMonitorRunning(sys), "the connection ended: the monitor stopped")

	d := epInitiate(t, sys, nil, nil, b.remote())
	d.OnPathChange(func(*Connection) {})
	epRemotePort(t, ctx, d)
	require.True(t, pathMonitorRunning(sys))
	d.OnPathChange(nil)
	epRemotePort(t, ctx, d)
	require.False(t, pathMonitorRunning(sys), "no handler and no policy left: the monitor stopped")
}
