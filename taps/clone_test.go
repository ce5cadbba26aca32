package taps

import (
	"testing"

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
