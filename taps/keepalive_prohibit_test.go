package taps

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProhibitKeepAliveSelectsStacksThatCanDoWithout: keepAlive is whether
// the Connection sends keep-alives (RFC 9622 §6.2.10), which TCP, TLS and
// QUIC do only when asked (gotaps reads it back from the socket,
// TestSelectedKeepAliveReadsTheSocket): Prohibit keepAlive selects them
// with keep-alives off, as Avoid does, rather than leaving no reliable
// stack to select; a keepAliveTimeout set later contradicts Prohibit
// (ErrConflictingProperties) as it does before Initiate, and changes
// nothing.
func TestProhibitKeepAliveSelectsStacksThatCanDoWithout(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, level := range []Preference{Prohibit, Avoid} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(KeepAlive, level))
		ln := listenLoopback(t, sys)
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
		require.NoError(t, err, "%v keepAlive", level)
		props := c.GetProperties()
		require.Equal(t, "tcp", props.Stack)
		require.False(t, props.Selected[KeepAlive], "%v keepAlive: no keep-alives", level)
		require.False(t, props.Socket.KeepAlive, "%v keepAlive: no SO_KEEPALIVE", level)
		if level == Prohibit {
			// the Selection Property is the connection's for good: a
			// keepAliveTimeout contradicts it, as it does before Initiate
			require.ErrorIs(t, c.SetProperty(KeepAliveTimeout, 5*time.Second), ErrConflictingProperties)
			require.False(t, c.GetProperties().Socket.KeepAlive)
			v, _ := c.GetProperties().Get(KeepAliveTimeout)
			require.Equal(t, Disabled, v, "nothing changed")
		}
		c.Abort()
		<-c.Done()
		ln.Stop()
	}

	pki := newTestPKI(t)
	qln, _ := quicEchoServer(t, sys, pki, quicOnly(t))
	tp := quicOnly(t)
	require.NoError(t, tp.Prohibit(KeepAlive))
	c, err := securePre(sys, qln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err, "QUIC, Prohibit keepAlive")
	require.Equal(t, "quic", c.GetProperties().Stack)
	require.False(t, c.GetProperties().Selected[KeepAlive], "QUIC: no PINGs")
	roundTrip(t, c, "no keep-alives")
	c.Abort()
	<-c.Done()
}

// TestProhibitRetransmitNotifyRefusesAThreshold: Prohibit
// _gotaps.retransmitNotify with a _gotaps.retransmitNotifyThreshold is a
// conflict (ErrConflictingProperties), as keepAliveTimeout with Prohibit
// keepAlive is: on the Preconnection, before any packet, and in a later
// SetProperty, which changes nothing; Disabled is still accepted.
func TestProhibitRetransmitNotifyRefusesAThreshold(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln := listenLoopback(t, sys)
	defer ln.Stop()
	pre := func(tp *TransportProperties) *Preconnection {
		return NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	}

	tp := NewTransportProperties()
	require.NoError(t, tp.Prohibit(RetransmitNotify))
	require.NoError(t, tp.Set(RetransmitNotifyThreshold, 3))
	_, err := pre(tp).Initiate(ctx)
	require.ErrorIs(t, err, ErrConflictingProperties, "on the Preconnection")

	tp = NewTransportProperties()
	require.NoError(t, tp.Prohibit(RetransmitNotify))
	c, err := pre(tp).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.Equal(t, "tcp", c.GetProperties().Stack)
	err = c.SetProperty(RetransmitNotifyThreshold, 3)
	require.ErrorIs(t, err, ErrConflictingProperties, "in SetProperty")
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, RetransmitNotifyThreshold, pe.Property)
	v, _ := c.GetProperties().Get(RetransmitNotifyThreshold)
	require.Equal(t, Disabled, v, "nothing changed")
	require.NoError(t, c.SetProperty(RetransmitNotifyThreshold, Disabled))
}
