package taps

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bug hunt on RemoteEndpoint.WithProtocol (RFC 9622 §6.1: a
// protocol-specific endpoint, "QUIC on 8443, TCP on 443").

// closedTCPPort is a loopback TCP port nothing listens on.
func closedTCPPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	return port
}

// TestRemoteEndpointWithProtocolIsAttemptedOverItsStackOnly: with one
// remote endpoint for UDP (where a TCP Listener listens) and one for TCP
// (a closed port), the connection must be UDP to the first: the TCP
// endpoint is refused, and TCP may not be used to reach the UDP one. Every
// remote was attempted over every stack any endpoint named, so TCP
// connected to the endpoint given for UDP.
func TestRemoteEndpointWithProtocolIsAttemptedOverItsStackOnly(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	defer func() { ln.Stop(); <-ln.Done() }()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	closed := closedTCPPort(t)

	tp := NewTransportProperties() // TCP and UDP both selectable
	require.NoError(t, tp.NoPreference(Reliability))
	require.NoError(t, tp.NoPreference(PreserveOrder))
	require.NoError(t, tp.NoPreference(CongestionControl))
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()).WithProtocol("udp"),
			NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(closed).WithProtocol("tcp")))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	p := c.GetProperties()
	require.Equal(t, "udp", p.Stack, "the endpoint given for UDP, over UDP")
	require.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ap.Port()))), p.Remote.String())
}

// TestRemoteEndpointWithProtocolOutsideWithProtocols: WithProtocols
// restricts the stacks that may be selected; a remote endpoint for
// another stack does not widen it. Every remote endpoint being for UDP
// under WithProtocols("tcp") leaves nothing to attempt: ErrUnfulfilled
// before any packet (the names were merged, and TCP connected to the
// endpoint given for UDP).
func TestRemoteEndpointWithProtocolOutsideWithProtocols(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	defer func() { ln.Stop(); <-ln.Done() }()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	unfulfilled := 0
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithUnfulfilledHandler(func(error) { unfulfilled++ }),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()).WithProtocol("udp")))
	c, err := pre.Initiate(testCtx(t))
	if c != nil {
		c.Abort()
		<-c.Done()
	}
	require.ErrorIs(t, err, ErrUnfulfilled)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonNoCandidates, ee.Reason)
	require.Equal(t, 1, unfulfilled, "the unfulfilled handler is called")
}
