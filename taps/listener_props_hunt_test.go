//go:build linux

package taps

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestListenerConnTimeoutReachesAcceptedSockets: the connTimeout of a
// Listener's Preconnection is the TCP_USER_TIMEOUT of the TCP connections
// it accepts (read with getsockopt on the accepted socket), under the
// Listener's default multipath (Passive: an MPTCP listening socket) as
// with multipath Disabled. The MPTCP listening socket refused the option
// and the plain TCP sockets it accepted ran with the system default,
// while GetProperties read connTimeout back as set.
func TestListenerConnTimeoutReachesAcceptedSockets(t *testing.T) {
	sys := newTestSystem(t)
	for _, mp := range []MultipathMode{MultipathPassive, MultipathDisabled} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(ConnTimeout, 7*time.Second))
		require.NoError(t, tp.Set(Multipath, mp))
		ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
		require.NoError(t, err)
		c := dialTCP(t, sys, ln)
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		v, _ := s.GetProperties().Get(ConnTimeout)
		require.Equal(t, 7*time.Second, v, "multipath %v", mp)
		require.Equal(t, 7*time.Second, s.GetProperties().Socket.UserTimeout, "multipath %v: read back", mp)
		require.Equal(t, 7*time.Second, tcpSockOf(t, s).userTimeout(), "multipath %v: the kernel's", mp)
		for _, x := range []*Connection{c, s} {
			x.Abort()
			<-x.Done()
		}
		ln.Stop()
		<-ln.Done()
	}
}
