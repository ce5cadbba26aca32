package actors

import (
	"context"
	"errors"
	"net/netip"
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

// reestEvent is one re-establishment event: Reestablishing (up false) or
// Reestablished (up true) with its attempt count, at fake time at.
type reestEvent struct {
	up bool
	n  int
	at time.Time
}

// flapping is a connection under pol over the fake stack, whose transports
// the test loses at will (lose).
type flapping struct {
	t      *testing.T
	fs     *fakeStack
	addr   netip.AddrPort
	sys    *System
	pol    supervision.Backoff
	conn   *actor.PID
	link   *Link
	events chan reestEvent
}

// noRouteMonitor makes the connections of the test run without the route
// monitor (its netlink reads would keep fake time from advancing).
func noRouteMonitor(t *testing.T) {
	prev := newRouteMonitor
	newRouteMonitor = func() (*stacks.RouteMonitor, error) { return nil, errors.ErrUnsupported }
	t.Cleanup(func() { newRouteMonitor = prev })
}

func newFlapping(t *testing.T, sys *System, pol supervision.Backoff) *flapping {
	f := &flapping{t: t, sys: sys, pol: pol, addr: netip.MustParseAddrPort("127.0.0.1:9"), events: make(chan reestEvent, 64)}
	f.fs = newFakeStack(map[netip.AddrPort]outcome{f.addr: {kind: "ok"}})
	cfg := &messages.ConnectionConfig{Remotes: endpoints(f.addr), Stacks: []stacks.Stack{f.fs},
		Framers: []framers.Framer{framers.NewLengthPrefix()}, Reestablish: &pol}
	f.link = NewLink(sys.NewID(), 0, 0, false)
	f.link.SetHandlers(Handlers{
		Reestablishing: func(_ error, n int) { f.events <- reestEvent{n: n, at: time.Now()} },
		Reestablished:  func(n int) { f.events <- reestEvent{up: true, n: n, at: time.Now()} },
	})
	res, err := Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: f.link})
	require.NoError(t, err)
	f.conn = res.(*ConnectionStarted).Conn
	<-f.link.Ready()
	require.NoError(t, f.link.EstablishmentErr())
	return f
}

// abort aborts the connection and waits for its end.
func (f *flapping) abort() {
	f.sys.AS.Root.Send(f.conn, &messages.AbortConnection{})
	<-f.link.Done()
}

// lose loses the current transport (its peer closes) and returns the
// Reestablishing event that follows.
func (f *flapping) lose() reestEvent {
	f.t.Helper()
	_ = f.fs.transport(f.addr).peer.Close()
	e := <-f.events
	require.False(f.t, e.up, "Reestablishing first")
	return e
}

// flap loses the current transport and waits for the next one: it returns
// the attempt numbers of Reestablishing and Reestablished and the wait
// between them.
func (f *flapping) flap() (lost, up int, wait time.Duration) {
	f.t.Helper()
	e := f.lose()
	r := <-f.events
	require.True(f.t, r.up, "Reestablished after Reestablishing")
	return e.n, r.n, r.at.Sub(e.at)
}

// A transport lost at once after each successful re-establishment does not
// start the row of attempts again: the waits grow, and after MaxAttempts
// the connection ends (it cycled at the Initial wait for ever before).
func TestReestablishmentFlappingContinuesTheRow(t *testing.T) {
	noRouteMonitor(t)
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		f := newFlapping(t, sys, supervision.Backoff{Initial: time.Second, Max: 8 * time.Second, MaxAttempts: 3})
		for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			lost, up, wait := f.flap()
			require.Equal(t, [2]int{n + 1, n + 1}, [2]int{lost, up}, "the row goes on")
			require.Equal(t, want, wait, "Delay(%d)", n+1)
		}
		f.exhausted()
	})
}

// exhausted loses the current transport once the policy has made its
// MaxAttempts: no attempt follows (the peer's end of stream half-closes
// the connection, as without a policy), however long one waits.
func (f *flapping) exhausted() {
	f.t.Helper()
	_ = f.fs.transport(f.addr).peer.Close()
	time.Sleep(time.Hour) // fake time: past any wait of the policy's
	synctest.Wait()
	require.Len(f.t, f.events, 0, "no Reestablishing beyond MaxAttempts")
	f.fs.mu.Lock()
	dials := len(f.fs.dials)
	f.fs.mu.Unlock()
	require.Equal(f.t, 1+int(f.pol.MaxAttempts), dials, "the first dial and MaxAttempts more")
	f.abort()
}

// A transport that stayed up StableAfter ends the row: its loss starts at
// attempt 1 again, with the Initial wait, even when the row before had
// used up MaxAttempts.
func TestReestablishmentStableTransportEndsTheRow(t *testing.T) {
	noRouteMonitor(t)
	for _, tt := range []struct {
		name string
		up   time.Duration // how long the last transport is up before it is lost
	}{
		{"just short of StableAfter: the row of 2 goes on, past MaxAttempts", time.Minute - time.Nanosecond},
		{"StableAfter: a new row, from the Initial wait", time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sys := NewSystem(Config{})
				defer shutdown(t, sys)
				f := newFlapping(t, sys, supervision.Backoff{Initial: time.Second, Max: 8 * time.Second, MaxAttempts: 2,
					StableAfter: time.Minute})
				for n := 1; n <= 2; n++ {
					lost, up, _ := f.flap()
					require.Equal(t, [2]int{n, n}, [2]int{lost, up})
				}
				time.Sleep(tt.up) // fake time
				synctest.Wait()
				if tt.up < time.Minute {
					f.exhausted()
					return
				}
				lost, up, wait := f.flap()
				require.Equal(t, [2]int{1, 1}, [2]int{lost, up}, "a new row")
				require.Equal(t, time.Second, wait, "the Initial wait")
				f.abort()
			})
		})
	}
}

// A negative StableAfter ends the row at each successful attempt.
func TestReestablishmentNegativeStableAfter(t *testing.T) {
	noRouteMonitor(t)
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		f := newFlapping(t, sys, supervision.Backoff{Initial: time.Second, MaxAttempts: 2, StableAfter: -1})
		for range 4 {
			lost, up, wait := f.flap()
			require.Equal(t, [2]int{1, 1}, [2]int{lost, up})
			require.Equal(t, time.Second, wait)
		}
		f.abort()
	})
}
