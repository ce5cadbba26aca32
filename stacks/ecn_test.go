package stacks

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTOSHelpers(t *testing.T) {
	require.Equal(t, uint8(0xba), TOS(46, ECT0)) // EF + ECT(0)
	require.Equal(t, uint8(46), DSCPOf(0xba))
	require.Equal(t, ECT0, ECNOf(0xba))
	require.Equal(t, uint8(0x07), TOS(1, 7)) // ECN is masked to two bits
}

// TestUDPPerDatagramTOS sends datagrams with their own ECN bits and DSCPs
// in both directions over one socket pair and checks the receiver sees
// each datagram's own value (IP_RECVTOS / IPV6_RECVTCLASS), over IPv4,
// IPv6, and a dual-stack listener with an IPv4 peer.
func TestUDPPerDatagramTOS(t *testing.T) {
	cases := []struct {
		name   string
		listen netip.AddrPort
		dialTo netip.Addr
	}{
		{"ipv4", loopback4, netip.MustParseAddr("127.0.0.1")},
		{"ipv6", netip.AddrPortFrom(netip.IPv6Loopback(), 0), netip.IPv6Loopback()},
		{"dual-stack listener, ipv4 peer", netip.AddrPort{}, netip.MustParseAddr("127.0.0.1")},
	}
	// UDP-Lite's dialled socket is adopted with net.FileConn, which the
	// runtime does not know to be connected: its WriteMsg must still work
	for _, st := range []Stack{UDP(), UDPLite()} {
		for _, tc := range cases {
			t.Run(st.Name()+"/"+tc.name, func(t *testing.T) { testPerDatagramTOS(t, st, tc.listen, tc.dialTo) })
		}
	}
}

func testPerDatagramTOS(t *testing.T, st Stack, listen netip.AddrPort, dialTo netip.Addr) {
	ctx := testCtx(t)
	ln, err := st.Listen(ctx, Options{Local: listen})
	skipWithoutUDPLite(t, err)
	require.NoError(t, err)
	defer ln.Close()
	remote := netip.AddrPortFrom(dialTo, addrPort(t, ln.Addr()).Port())
	const sockDSCP = 8 // CS1 on the socket; WriteMsg overrides per datagram
	c, err := st.Dial(ctx, remote, Options{DSCP: sockDSCP})
	require.NoError(t, err)
	defer c.Close()
	ct, ok := c.(TOSDatagrams)
	require.True(t, ok, "dialled UDP transports implement TOSDatagrams")

	sent := []uint8{TOS(0, ECT0), TOS(0, ECT1), TOS(0, ECNCE), TOS(46, ECT0), TOS(10, NotECT), TOS(18, ECNCE)}
	for i, tos := range sent {
		_, err := ct.WriteMsg([]byte{byte(i)}, tos)
		require.NoError(t, err)
	}
	_, err = c.Write([]byte{99}) // plain Write: the socket's DSCP
	require.NoError(t, err)

	p, err := ln.Accept()
	require.NoError(t, err)
	defer p.Close()
	pt, ok := p.(TOSDatagrams)
	require.True(t, ok, "accepted UDP transports implement TOSDatagrams")
	buf := make([]byte, 16)
	for i, want := range sent {
		n, tos, err := pt.ReadMsg(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, buf[:n])
		require.Equal(t, want, tos, "datagram %d: ECN %d DSCP %d", i, ECNOf(tos), DSCPOf(tos))
	}
	n, tos, err := pt.ReadMsg(buf)
	require.NoError(t, err)
	require.Equal(t, []byte{99}, buf[:n])
	require.Equal(t, TOS(sockDSCP, NotECT), tos)

	// and back: the accepted side sets TOS per datagram too
	for i, tos := range sent[:3] {
		_, err := pt.WriteMsg([]byte{byte(i)}, tos)
		require.NoError(t, err)
	}
	for i, want := range sent[:3] {
		n, tos, err := ct.ReadMsg(buf)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i)}, buf[:n])
		require.Equal(t, want, tos)
	}
	// plain Read still works and drops the TOS
	_, err = pt.WriteMsg([]byte("x"), TOS(46, ECT1))
	require.NoError(t, err)
	n, err = c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "x", string(buf[:n]))
}

// TestUDPReadMsgTruncated: a datagram larger than the buffer still reports
// its TOS and ErrMessageTruncated.
func TestUDPReadMsgTruncated(t *testing.T) {
	ctx := testCtx(t)
	a, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4))
	require.NoError(t, err)
	defer a.Close()
	c, err := UDP().Dial(ctx, addrPort(t, a.LocalAddr()), Options{})
	require.NoError(t, err)
	defer c.Close()
	_, err = a.WriteToUDPAddrPort([]byte("0123456789"), addrPort(t, c.LocalAddr()))
	require.NoError(t, err)
	buf := make([]byte, 4)
	n, _, err := c.(TOSDatagrams).ReadMsg(buf)
	require.ErrorIs(t, err, ErrMessageTruncated)
	require.Equal(t, "0123", string(buf[:n]))
}
