package taps

import (
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestReceivedMessageEndpoints: a received Message's context tells the
// Remote and Local Endpoint it came over (RFC 9622 §9.1.1): on a UDP
// Listener, each peer's datagrams name that peer; on TCP, the
// connection's ends. A context the application made tells nothing, nor
// one whose Connection has ended.
func TestReceivedMessageEndpoints(t *testing.T) {
	sys := newTestSystem(t)
	ctx := testCtx(t)
	ln, port := udpListenOn(t, sys, "127.0.0.1", datagramProps(t))
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	for i := range 2 {
		pc := rawUDPOn(t, "127.0.0.1")
		_, err := pc.WriteToUDPAddrPort([]byte{byte(i)}, local)
		require.NoError(t, err)
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		re, ok := m.Context.RemoteEndpoint()
		require.True(t, ok)
		require.Equal(t, pc.LocalAddr().(*net.UDPAddr).AddrPort().String(), re.String(), "peer %d", i)
		le, ok := m.Context.LocalEndpoint()
		require.True(t, ok)
		la, _ := le.Addr()
		require.Equal(t, local, la)
		s.Abort()
		<-s.Done()
		_, ok = m.Context.RemoteEndpoint()
		require.False(t, ok, "its Connection has ended")
	}

	tl := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, tl, framers.NewLengthPrefix())
	defer s.Abort()
	defer c.Abort()
	require.NoError(t, c.Send(ctx, []byte("x"), nil))
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	re, ok := m.Context.RemoteEndpoint()
	require.True(t, ok)
	cl, _ := c.GetProperties().Local.Addr()
	require.Equal(t, cl.String(), re.String())
	le, ok := m.Context.LocalEndpoint()
	require.True(t, ok)
	la, _ := le.Addr()
	require.Equal(t, listenerAddr(t, tl), la)

	_, ok = NewMessageContext().RemoteEndpoint()
	require.False(t, ok, "a context the application made")
}

// TestReceivedMessageFitsItsSizeClass: a received Message and its context
// are one allocation (per message when the application does not Release
// it): a field that pushes it past 144 bytes costs every message 16 more.
func TestReceivedMessageFitsItsSizeClass(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(receivedMessage{}), uintptr(144))
	require.LessOrEqual(t, unsafe.Sizeof(Connection{}), uintptr(144), "one per connection (W9)")
}
