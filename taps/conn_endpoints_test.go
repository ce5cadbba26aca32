package taps

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// endpointPeer is a gotaps Listener on a loopback address that echoes
// every (length-prefixed) message; the connections it accepts are kept.
type endpointPeer struct {
	ln       *Listener
	addr     netip.AddrPort
	mu       sync.Mutex
	accepted []*Connection
	arrived  chan *Connection
}

func newEndpointPeer(t *testing.T, sys *System) *endpointPeer {
	t.Helper()
	ctx := testCtx(t)
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(ctx)
	require.NoError(t, err)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	p := &endpointPeer{ln: ln, addr: ap, arrived: make(chan *Connection, 16)}
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.accepted = append(p.accepted, s)
			p.mu.Unlock()
			p.arrived <- s
			go func() {
				for {
					m, err := s.Receive(ctx)
					if err != nil || s.Send(ctx, m.Data, nil) != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(p.goAway)
	return p
}

// remote is the peer as a RemoteEndpoint.
func (p *endpointPeer) remote() *RemoteEndpoint {
	return NewRemoteEndpoint().WithIPAddress(p.addr.Addr().String()).WithPort(p.addr.Port())
}

// next waits for the peer's next accepted connection.
func (p *endpointPeer) next(t *testing.T, ctx context.Context) *Connection {
	t.Helper()
	select {
	case s := <-p.arrived:
		return s
	case <-ctx.Done():
		t.Fatalf("no connection reached %v", p.addr)
		return nil
	}
}

// goAway stops the listener and aborts what it accepted.
func (p *endpointPeer) goAway() {
	p.ln.Stop()
	<-p.ln.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.accepted {
		s.Abort()
		<-s.Done()
	}
}

// epInitiate initiates a framed connection to remotes (from local, when
// set) with the given options.
func epInitiate(t *testing.T, sys *System, local *LocalEndpoint, opts []PreconnectionOption, remotes ...*RemoteEndpoint) *Connection {
	t.Helper()
	all := []PreconnectionOption{WithSystem(sys)}
	for _, r := range remotes {
		all = append(all, WithRemoteEndpoint(r))
	}
	if local != nil {
		all = append(all, WithLocalEndpoint(local))
	}
	return initiateFramed(t, append(all, opts...)...)
}

// initiateFramed initiates a length-prefix framed connection with opts,
// aborted (and awaited) when t ends.
func initiateFramed(t *testing.T, opts ...PreconnectionOption) *Connection {
	t.Helper()
	pre := NewPreconnection(opts...)
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() {
		c.Abort()
		<-c.Done()
	})
	return c
}

func epEcho(t *testing.T, ctx context.Context, c *Connection, text string) {
	t.Helper()
	require.NoError(t, c.Send(ctx, []byte(text), nil))
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, text, string(m.Data))
}

func epRemotePort(t *testing.T, ctx context.Context, c *Connection) uint16 {
	t.Helper()
	p, err := c.GetPropertiesContext(ctx)
	require.NoError(t, err)
	ap, err := netip.ParseAddrPort(p.Remote.String())
	require.NoError(t, err)
	return ap.Port()
}

func epRemotes(t *testing.T, ctx context.Context, c *Connection) []string {
	t.Helper()
	rs, _, err := c.Endpoints(ctx)
	require.NoError(t, err)
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// epReestablishEvents records a connection's re-establishment events.
func epReestablishEvents(c *Connection) (reestablishing chan error, reestablished chan int) {
	reestablishing, reestablished = make(chan error, 16), make(chan int, 16)
	c.OnReestablishing(func(_ *Connection, err error, _ int) { reestablishing <- err })
	c.OnReestablished(func(_ *Connection, n int) { reestablished <- n })
	return reestablishing, reestablished
}

func epAwait[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

func TestConnectionEndpointsKnownIgnoredInvalidRejected(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a := newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, nil, a.remote())
	require.Equal(t, []string{a.addr.String()}, epRemotes(t, ctx, c))

	require.NoError(t, c.AddRemote(ctx, a.remote()))
	mapped := NewRemoteEndpoint().WithIPAddress("::ffff:127.0.0.1").WithPort(a.addr.Port())
	require.NoError(t, c.AddRemote(ctx, mapped))
	require.Equal(t, []string{a.addr.String()}, epRemotes(t, ctx, c), "known endpoints are ignored")

	other := NewRemoteEndpoint().WithHostName("example.invalid").WithPort(443)
	for _, bad := range [][]*RemoteEndpoint{
		{NewRemoteEndpoint().WithIPAddress("127.0.0.1")},                    // no port
		{other, NewRemoteEndpoint().WithIPAddress("not-an-ip").WithPort(1)}, // one bad: nothing added
		{nil},
		{NewRemoteEndpoint().WithHostName("a.example").WithIPAddress("127.0.0.1").WithPort(1)},
	} {
		err := c.AddRemote(ctx, bad...)
		var ee *EndpointError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, ErrInvalidEndpoint)
		require.ErrorIs(t, c.RemoveRemote(ctx, bad...), ErrInvalidEndpoint)
	}
	require.Equal(t, []string{a.addr.String()}, epRemotes(t, ctx, c), "an invalid endpoint changes nothing")
	require.ErrorIs(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.300")), ErrInvalidEndpoint)
	_, locals, err := c.Endpoints(ctx)
	require.NoError(t, err)
	require.Empty(t, locals)

	require.NoError(t, c.AddRemote(ctx, other))
	require.Equal(t, []string{a.addr.String(), "example.invalid:443"}, epRemotes(t, ctx, c))
	require.NoError(t, c.RemoveRemote(ctx, NewRemoteEndpoint().WithHostName("nowhere.invalid").WithPort(443)))
	require.NoError(t, c.RemoveRemote(ctx, other))
	require.Equal(t, []string{a.addr.String()}, epRemotes(t, ctx, c))
	require.Equal(t, StateEstablished, c.State(), "removing endpoints not in use leaves the connection alone")
	epEcho(t, ctx, c, "still here")

	c.Close()
	<-c.Done()
	err = c.AddRemote(ctx, other)
	var se interface{ Unwrap() []error }
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrNotAllowed)
	require.ErrorIs(t, err, ErrClosed)
}

// TestConnectionAddRemoteUsedByReestablishment: a remote added to a
// connection is where its re-establishment goes once the first peer has
// gone away.
func TestConnectionAddRemoteUsedByReestablishment(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: 10 * time.Millisecond, MaxAttempts: 5})}, a.remote())
	_, reestablished := epReestablishEvents(c)
	epEcho(t, ctx, c, "to a")
	require.NoError(t, c.AddRemote(ctx, b.remote()))
	require.Equal(t, a.addr.Port(), epRemotePort(t, ctx, c), "adding opens no new path")

	a.goAway()
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	b.next(t, ctx)
	epEcho(t, ctx, c, "to b")
}

// TestConnectionAddRemoteWhileReestablishing: a remote added while the
// connection keeps failing to re-establish is tried by the next attempt.
func TestConnectionAddRemoteWhileReestablishing(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond, MaxAttempts: 1000})}, a.remote())
	reestablishing, reestablished := epReestablishEvents(c)
	a.next(t, ctx) // accepted: goAway aborts it
	a.goAway()
	epAwait(t, ctx, reestablishing, "Reestablishing")
	epAwait(t, ctx, reestablishing, "a second Reestablishing: a is gone for good")
	require.Equal(t, StateEstablishing, c.State())
	require.NoError(t, c.AddRemote(ctx, b.remote()))
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	epEcho(t, ctx, c, "to b")
}

// TestConnectionCloneUsesAddedRemote: Clone goes to the remote in use
// first and falls back to the connection's other remotes.
func TestConnectionCloneUsesAddedRemote(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, nil, a.remote())
	require.NoError(t, c.AddRemote(ctx, b.remote()))

	first, err := c.Clone(ctx)
	require.NoError(t, err)
	require.Equal(t, a.addr.Port(), epRemotePort(t, ctx, first), "a clone goes where the original is while it answers")

	a.next(t, ctx) // c's and first's connections are accepted: Stop leaves them open
	a.next(t, ctx)
	a.ln.Stop() // no new connections to a
	<-a.ln.Done()
	second, err := c.Clone(ctx)
	require.NoError(t, err)
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, second))
	epEcho(t, ctx, second, "clone to b")
	epEcho(t, ctx, c, "original still to a")
	require.Equal(t, []string{a.addr.String(), b.addr.String()}, epRemotes(t, ctx, second), "the clone has the sets too")
	second.Abort()
	first.Abort()
	<-second.Done()
	<-first.Done()
}

// TestConnectionRemoveRemoteInUseSwitches: with a re-establishment policy
// and another remote, removing the remote in use switches to the other.
func TestConnectionRemoveRemoteInUseSwitches(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Hour})}, a.remote())
	reestablishing, reestablished := epReestablishEvents(c)
	epEcho(t, ctx, c, "to a")
	require.NoError(t, c.AddRemote(ctx, b.remote()))

	require.NoError(t, c.RemoveRemote(ctx, a.remote()))
	err := epAwait(t, ctx, reestablishing, "Reestablishing")
	var er *EndpointRemovedError
	require.ErrorAs(t, err, &er)
	require.ErrorIs(t, err, ErrEndpointRemoved)
	require.Equal(t, a.addr.String(), er.Endpoint)
	require.Equal(t, 1, epAwait(t, ctx, reestablished, "Reestablished (the switch must not wait for the backoff)"))
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	require.Equal(t, []string{b.addr.String()}, epRemotes(t, ctx, c))
	epEcho(t, ctx, c, "to b")
	require.Equal(t, StateEstablished, c.State())
}

// TestConnectionRemoveRemoteInUseSwitchesAfterAReestablishment: the switch
// is made whatever the policy's row of attempts: a connection whose
// transport was re-established by the last attempt MaxAttempts allows, and
// has not stayed up StableAfter since, still switches to the other remote
// (RemoveRemote's doc aborts only without a policy or another remote). It
// was aborted ("re-establishment not possible"): since StableAfter the row
// went on into the switch, which the policy then refused.
func TestConnectionRemoveRemoteInUseSwitchesAfterAReestablishment(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a, b := newEndpointPeer(t, sys), newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, []PreconnectionOption{WithReestablishment(
		ReestablishPolicy{Initial: time.Millisecond, MaxAttempts: 1, StableAfter: time.Hour})}, a.remote())
	reestablishing, reestablished := epReestablishEvents(c)
	connErr := make(chan error, 1)
	c.OnConnectionError(func(_ *Connection, err error) { connErr <- err })
	epEcho(t, ctx, c, "to a")
	a.next(t, ctx).Abort() // a loss: the one attempt of the row
	epAwait(t, ctx, reestablishing, "Reestablishing")
	require.Equal(t, 1, epAwait(t, ctx, reestablished, "Reestablished"))
	epEcho(t, ctx, c, "to a again")
	require.NoError(t, c.AddRemote(ctx, b.remote()))

	require.NoError(t, c.RemoveRemote(ctx, a.remote()))
	select {
	case err := <-reestablishing:
		require.ErrorIs(t, err, ErrEndpointRemoved)
	case err := <-connErr:
		t.Fatalf("the switch was refused: %v", err)
	case <-ctx.Done():
		t.Fatal("no Reestablishing")
	}
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, b.addr.Port(), epRemotePort(t, ctx, c))
	epEcho(t, ctx, c, "to b")
}

// TestConnectionRemoveRemoteInUseAborts: without a re-establishment
// policy, or with no remote left, removing the remote in use aborts the
// connection with an *EndpointRemovedError.
func TestConnectionRemoveRemoteInUseAborts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []PreconnectionOption
		reason string
	}{
		{"no policy", nil, "no re-establishment policy"}, // another remote is left
		{"no remote left", []PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Millisecond})}, "no remote endpoint left"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx := testCtx(t)
			a := newEndpointPeer(t, sys)
			c := epInitiate(t, sys, nil, tc.opts, a.remote())
			connErr := make(chan error, 1)
			c.OnConnectionError(func(_ *Connection, err error) { connErr <- err })
			reestablishing, _ := epReestablishEvents(c)
			epEcho(t, ctx, c, "to a")
			if tc.opts == nil {
				require.NoError(t, c.AddRemote(ctx, NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(1)))
			}

			require.NoError(t, c.RemoveRemote(ctx, a.remote()))
			err := epAwait(t, ctx, connErr, "ConnectionError")
			var ce *ConnectionError
			require.ErrorAs(t, err, &ce)
			var er *EndpointRemovedError
			require.ErrorAs(t, err, &er)
			require.Equal(t, tc.reason, er.Reason)
			require.False(t, er.Local)
			require.ErrorIs(t, err, ErrAborted)
			<-c.Done()
			require.Equal(t, StateClosed, c.State())
			require.ErrorIs(t, c.Err(), ErrEndpointRemoved)
			require.Empty(t, reestablishing, "no switch")
			_, err = c.Receive(ctx)
			require.ErrorIs(t, err, ErrEndpointRemoved, "a Receive after it says why")
		})
	}
}

// TestConnectionReceivedEndpoints: a received connection's sets are its
// peer and the address its listener accepted it on; removing its local endpoint in
// use aborts it (a received connection is never re-established).
func TestConnectionReceivedEndpoints(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	a := newEndpointPeer(t, sys)
	c := epInitiate(t, sys, nil, nil, a.remote())
	s := a.next(t, ctx)
	cp, err := c.GetPropertiesContext(ctx)
	require.NoError(t, err)
	cl, ok := cp.Local.Addr()
	require.True(t, ok)

	remotes, locals, err := s.Endpoints(ctx)
	require.NoError(t, err)
	require.Len(t, remotes, 1)
	require.Equal(t, cl.String(), remotes[0].String(), "the peer")
	require.Len(t, locals, 1)
	require.Equal(t, a.addr.String(), locals[0].String(), "the listener's address")

	require.NoError(t, s.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	require.NoError(t, s.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
	require.Equal(t, StateEstablished, s.State())

	connErr := make(chan error, 1)
	s.OnConnectionError(func(_ *Connection, err error) { connErr <- err })
	require.NoError(t, s.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(a.addr.Port())))
	err = epAwait(t, ctx, connErr, "ConnectionError")
	var er *EndpointRemovedError
	require.ErrorAs(t, err, &er)
	require.True(t, er.Local)
	require.Equal(t, "a received connection is not re-established", er.Reason)
	<-s.Done()
	<-c.Done() // the abort reached the peer
}

// TestConnectionRemoveLocalInUse: on loopback, a connection bound to
// 127.0.0.1 given 127.0.0.2 switches to it when 127.0.0.1 is removed (the
// peer sees the new address); without a policy it is aborted.
func TestConnectionRemoveLocalInUse(t *testing.T) {
	t.Run("switch", func(t *testing.T) {
		sys := newTestSystem(t)
		ctx := testCtx(t)
		a := newEndpointPeer(t, sys)
		c := epInitiate(t, sys, NewLocalEndpoint().WithIPAddress("127.0.0.1"),
			[]PreconnectionOption{WithReestablishment(ReestablishPolicy{Initial: time.Hour})}, a.remote())
		reestablishing, reestablished := epReestablishEvents(c)
		epEcho(t, ctx, c, "from 127.0.0.1")
		s := a.next(t, ctx)
		require.Equal(t, "127.0.0.1", epAddr(t, ctx, s, false).Addr().String())

		require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
		require.Equal(t, "127.0.0.1", epAddr(t, ctx, c, true).Addr().String(), "adding opens no new path")
		require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
		err := epAwait(t, ctx, reestablishing, "Reestablishing")
		var er *EndpointRemovedError
		require.ErrorAs(t, err, &er)
		require.True(t, er.Local)
		epAwait(t, ctx, reestablished, "Reestablished")
		require.Equal(t, "127.0.0.2", epAddr(t, ctx, c, true).Addr().String())
		s2 := a.next(t, ctx)
		require.Equal(t, "127.0.0.2", epAddr(t, ctx, s2, false).Addr().String(), "the peer sees the new local address")
		epEcho(t, ctx, c, "from 127.0.0.2")
		_, locals, err := c.Endpoints(ctx)
		require.NoError(t, err)
		require.Len(t, locals, 1)
		require.Equal(t, "127.0.0.2:0", locals[0].String())
	})
	t.Run("abort", func(t *testing.T) {
		sys := newTestSystem(t)
		ctx := testCtx(t)
		a := newEndpointPeer(t, sys)
		c := epInitiate(t, sys, NewLocalEndpoint().WithIPAddress("127.0.0.1"), nil, a.remote())
		require.NoError(t, c.AddLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
		require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.2")))
		require.Equal(t, StateEstablished, c.State(), "127.0.0.2 was not in use")
		epEcho(t, ctx, c, "still here")
		require.NoError(t, c.RemoveLocal(ctx, NewLocalEndpoint().WithIPAddress("127.0.0.1")))
		<-c.Done()
		var er *EndpointRemovedError
		require.ErrorAs(t, c.Err(), &er)
		require.True(t, er.Local)
		require.Equal(t, "127.0.0.1:0", er.Endpoint)
		require.True(t, errors.Is(c.Err(), ErrAborted))
	})
}

// epAddr is a connection's local (or remote) address.
func epAddr(t *testing.T, ctx context.Context, c *Connection, local bool) netip.AddrPort {
	t.Helper()
	p, err := c.GetPropertiesContext(ctx)
	require.NoError(t, err)
	s := p.Remote.String()
	if local {
		s = p.Local.String()
	}
	ap, err := netip.ParseAddrPort(s)
	require.NoError(t, err)
	return ap
}
