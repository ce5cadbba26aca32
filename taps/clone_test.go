package taps

import (
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestCloneOfAcceptedConnection: a Connection a Listener accepted over TCP
// or UDP cannot be cloned (its remote endpoint is the port the peer
// connected from): Clone fails at once with a CloneError
// (ReasonNotCloneable, ErrNotAllowed) naming why, not with the bind error
// of a dial from the Listener's port (EADDRINUSE, before), and the
// connection goes on. On QUIC the accepting side's Clone opens a stream
// (tested with the QUIC groups).
func TestCloneOfAcceptedConnection(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		tp   *TransportProperties
	}{{"tcp", NewTransportProperties()}, {"udp", datagramProps(t)}} {
		ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tc.tp),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
		require.NoError(t, err, tc.name)
		ap, _ := ln.LocalEndpoints()[0].Addr()
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tc.tp), WithRemoteEndpoint(loopbackRemote(ap))).Initiate(ctx)
		require.NoError(t, err, tc.name)
		require.NoError(t, c.Send(ctx, []byte("hello"), nil), tc.name)
		a, err := ln.Accept(ctx)
		require.NoError(t, err, tc.name)
		clone, err := a.Clone(ctx)
		require.Nil(t, clone, tc.name)
		var ce *CloneError
		require.ErrorAs(t, err, &ce, tc.name)
		require.Equal(t, ReasonNotCloneable, ce.Reason, tc.name)
		require.ErrorIs(t, err, ErrNotAllowed, tc.name)
		require.ErrorContains(t, err, "the port the peer connected from", tc.name)
		m, err := a.Receive(ctx)
		require.NoError(t, err, tc.name)
		require.Equal(t, "hello", string(m.Data), "%s: the accepted connection goes on", tc.name)
		require.NoError(t, a.Send(ctx, []byte("back"), nil), tc.name)
		m, err = c.Receive(ctx)
		require.NoError(t, err, tc.name)
		require.Equal(t, "back", string(m.Data), tc.name)
		c.Abort()
		a.Abort()
		ln.Stop()
		<-ln.Done()
	}
}

// TestQUICStreamCloneCannotHaveItsOwnSessionProperties: a Clone over QUIC
// is a stream of the same session, whose idle timeout (connTimeout) and
// PING period (keepAliveTimeout) are the whole session's, fixed at its
// handshake: a CloneWithProperties giving either another value fails at
// once with a CloneError (ReasonInvalidConfiguration) wrapping a
// PropertyError unwrapping to stacks.ErrNotApplicable, as SetProperty of
// them does on QUIC, instead of a clone that reports a connTimeout its
// session does not have. The same value, or a property the stream has of
// its own (connPriority), is taken, and the session carries on.
func TestQUICStreamCloneCannotHaveItsOwnSessionProperties(t *testing.T) {
	c, _, _ := quicGroupServerPair(t, quicOnly(t))
	t.Cleanup(c.AbortGroup)
	ctx := testCtx(t)
	props := func(p Property, v any) *TransportProperties {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(p, v))
		return tp
	}
	for _, tc := range []struct {
		p Property
		v any
	}{{ConnTimeout, 3 * time.Second}, {KeepAliveTimeout, time.Second}} {
		var pe *PropertyError
		require.ErrorAs(t, c.SetProperty(tc.p, tc.v), &pe, "SetProperty(%s) on QUIC", tc.p)
		require.ErrorIs(t, pe, stacks.ErrNotApplicable)

		cl, err := c.Clone(ctx, CloneWithProperties(props(tc.p, tc.v)))
		require.Nil(t, cl, tc.p)
		var ce *CloneError
		require.ErrorAs(t, err, &ce, tc.p)
		require.Equal(t, ReasonInvalidConfiguration, ce.Reason, tc.p)
		require.ErrorAs(t, err, &pe, tc.p)
		require.Equal(t, tc.p, pe.Property)
		require.ErrorIs(t, err, stacks.ErrNotApplicable, tc.p)
	}
	same, err := c.Clone(ctx, CloneWithProperties(props(ConnTimeout, Disabled)))
	require.NoError(t, err, "the session's own connTimeout")
	roundTrip(t, same, "the same connTimeout")
	own, err := c.Clone(ctx, CloneWithProperties(props(ConnPriority, 7)))
	require.NoError(t, err, "connPriority is the stream's own")
	v, _ := own.GetProperties().Get(ConnPriority)
	require.EqualValues(t, 7, v)
	v, _ = own.GetProperties().Get(ConnTimeout)
	require.Equal(t, Disabled, v, "the session's connTimeout")
	roundTrip(t, own, "its own connPriority")
	roundTrip(t, c, "the session carries on")
}

// TestQUICStreamCloneCannotHaveItsOwnCapacityProfile: a Clone over QUIC is
// a stream of the session, whose UDP socket carries one DSCP for every
// stream: a CloneWithProperties giving connCapacityProfile another value
// than the session has fails at once with a CloneError
// (ReasonInvalidConfiguration) wrapping a PropertyError unwrapping to
// stacks.ErrNotApplicable, on either side of the session, as SetProperty
// of it on a QUIC connection does (before, the clone reported the new
// profile while its packets kept the session's DSCP). The session's own
// value is accepted.
func TestQUICStreamCloneCannotHaveItsOwnCapacityProfile(t *testing.T) {
	c, first, _ := quicGroupServerPair(t, quicOnly(t))
	t.Cleanup(c.AbortGroup)
	ctx := testCtx(t)
	profile := func(p CapacityProfile) *TransportProperties {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(ConnCapacityProfile, p))
		return tp
	}
	for _, conn := range []*Connection{c, first} {
		var pe *PropertyError
		require.ErrorAs(t, conn.SetProperty(ConnCapacityProfile, LowLatencyInteractive), &pe)
		require.ErrorIs(t, pe, stacks.ErrNotApplicable)

		cl, err := conn.Clone(ctx, CloneWithProperties(profile(LowLatencyInteractive)))
		require.Nil(t, cl)
		var ce *CloneError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, ReasonInvalidConfiguration, ce.Reason)
		require.ErrorAs(t, err, &pe)
		require.Equal(t, ConnCapacityProfile, pe.Property)
		require.ErrorIs(t, err, stacks.ErrNotApplicable)
	}
	require.Zero(t, c.GetProperties().Socket.DSCP, "the session's socket is unchanged")

	same, err := c.Clone(ctx, CloneWithProperties(profile(CapacityDefault)))
	require.NoError(t, err, "the session's own connCapacityProfile")
	v, _ := same.GetProperties().Get(ConnCapacityProfile)
	require.Equal(t, CapacityDefault, v)
	roundTrip(t, same, "the same profile")
}
