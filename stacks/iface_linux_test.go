package stacks

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLookupRouteLoopback(t *testing.T) {
	for _, dst := range []string{"127.0.0.1", "::1"} {
		r, err := LookupRoute(netip.MustParseAddr(dst), netip.Addr{}, "")
		if err != nil && dst == "::1" {
			t.Skipf("no IPv6 loopback route: %v", err)
		}
		require.NoError(t, err, dst)
		require.Equal(t, "lo", r.Interface, dst)
		require.True(t, r.Local, "%s is an address of this host", dst)
		require.Positive(t, r.Index)
		lo, err := net.InterfaceByName("lo")
		require.NoError(t, err)
		require.Equal(t, lo.MTU, r.MTU, "%s: no MTU metric on the route: the interface's", dst)
	}
	r, err := LookupRoute(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), "lo")
	require.NoError(t, err)
	require.Equal(t, "lo", r.Interface)
	_, err = LookupRoute(netip.MustParseAddr("127.0.0.1"), netip.Addr{}, "nope0")
	require.Error(t, err)
}

func TestSourceAddressLoopback(t *testing.T) {
	src, err := SourceAddress(netip.MustParseAddrPort("127.0.0.1:80"), netip.Addr{}, "lo", NoPreference)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", src.String())
	src, err = SourceAddress(netip.MustParseAddrPort("[::1]:80"), netip.Addr{}, "", Prefer)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	require.Equal(t, "::1", src.String())
	tmp, err := IsTemporaryAddress(src)
	require.NoError(t, err)
	require.False(t, tmp, "::1 is not a temporary address")
	_, err = SourceAddress(netip.MustParseAddrPort("127.0.0.1:80"), netip.Addr{}, "nope0", NoPreference)
	require.ErrorContains(t, err, "nope0")
}

func TestTemporaryIn(t *testing.T) {
	const ifInet6 = `fd000000000000000000000000000002 02 40 00 80     eth0
20010db8000000001c2d3e4f5a6b7c8d 02 40 00 01     eth0
00000000000000000000000000000001 01 80 10 80       lo
`
	tests := []struct {
		addr string
		want bool
	}{
		{"fd00::2", false},
		{"2001:db8::1c2d:3e4f:5a6b:7c8d", true},
		{"::1", false},
		{"2001:db8::99", false},
	}
	for _, tt := range tests {
		got, err := temporaryIn(bufio.NewScanner(strings.NewReader(ifInet6)), netip.MustParseAddr(tt.addr))
		require.NoError(t, err)
		require.Equal(t, tt.want, got, tt.addr)
	}
	v4, err := IsTemporaryAddress(netip.MustParseAddr("127.0.0.1"))
	require.NoError(t, err)
	require.False(t, v4)
}

func TestAddrPrefFlags(t *testing.T) {
	tests := []struct {
		pref int8
		want int
	}{
		{Require, IPv6PreferSrcTmp},
		{Prefer, IPv6PreferSrcTmp},
		{NoPreference, 0},
		{Avoid, IPv6PreferSrcPublic},
		{Prohibit, IPv6PreferSrcPublic},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, addrPrefFlags(tt.pref), "pref %d", tt.pref)
	}
}

// TestTemporaryAddressSockopt reads IPV6_ADDR_PREFERENCES back from the
// sockets of a TCP connection over ::1 (getsockopt): the dialing socket
// has what Options.TemporaryAddress asked for, also through MPTCP (which
// refuses the option: the dial still works).
func TestTemporaryAddressSockopt(t *testing.T) {
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: netip.MustParseAddrPort("[::1]:0"), TemporaryAddress: Avoid})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	lrc, err := ln.(*tcpListener).ln.SyscallConn()
	require.NoError(t, err)
	v, err := AddrPreferences(lrc)
	require.NoError(t, err)
	require.NotZero(t, v&IPv6PreferSrcPublic, "listener: Avoid is IPV6_PREFER_SRC_PUBLIC (got %#x)", v)
	require.Zero(t, v&IPv6PreferSrcTmp)
	tests := []struct {
		pref          int8
		mptcp         bool
		set, notSet   int
		wantReadError bool
	}{
		{pref: Prefer, set: IPv6PreferSrcTmp, notSet: IPv6PreferSrcPublic},
		{pref: Require, set: IPv6PreferSrcTmp, notSet: IPv6PreferSrcPublic},
		{pref: Avoid, set: IPv6PreferSrcPublic, notSet: IPv6PreferSrcTmp},
		{pref: Prohibit, set: IPv6PreferSrcPublic, notSet: IPv6PreferSrcTmp},
		{pref: NoPreference, notSet: IPv6PreferSrcTmp | IPv6PreferSrcPublic},
		{pref: Prefer, mptcp: true, wantReadError: true},
	}
	lnMP, err := TCP().Listen(ctx, Options{Local: netip.MustParseAddrPort("[::1]:0"), MPTCP: true})
	require.NoError(t, err)
	defer lnMP.Close()
	for i, tt := range tests {
		to := ln
		if tt.mptcp {
			to = lnMP
		}
		accepted := acceptAsync(to)
		c, err := TCP().Dial(ctx, addrPort(t, to.Addr()), Options{TemporaryAddress: tt.pref, MPTCP: tt.mptcp})
		require.NoError(t, err, "#%d", i)
		r := <-accepted
		require.NoError(t, r.err)
		rc, err := c.(*tcpTransport).SyscallConn()
		require.NoError(t, err)
		v, err := AddrPreferences(rc)
		mp, _ := c.(*tcpTransport).MultipathTCP()
		switch {
		case tt.wantReadError && mp:
			require.Error(t, err, "#%d: MPTCP sockets do not answer IPV6_ADDR_PREFERENCES", i)
		case tt.wantReadError:
			t.Logf("#%d: MPTCP not in use: plain TCP", i)
		default:
			require.NoError(t, err, "#%d", i)
			require.Equal(t, tt.set, v&tt.set, "#%d: got %#x", i, v)
			require.Zero(t, v&tt.notSet, "#%d: got %#x", i, v)
		}
		require.NoError(t, c.Close())
		require.NoError(t, r.t.Close())
	}
	// IPv4 sockets ignore it
	ln4, err := TCP().Listen(ctx, Options{Local: loopback4, TemporaryAddress: Require})
	require.NoError(t, err)
	defer ln4.Close()
	accepted := acceptAsync(ln4)
	c, err := TCP().Dial(ctx, addrPort(t, ln4.Addr()), Options{TemporaryAddress: Require})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	require.NoError(t, c.Close())
	require.NoError(t, r.t.Close())
}

// TestBoundInterfaceReadBack dials with Options.Interface "lo" and reads
// SO_BINDTODEVICE back from the socket.
func TestBoundInterfaceReadBack(t *testing.T) {
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: loopback4, Interface: "lo"})
	require.NoError(t, err)
	defer ln.Close()
	lrc, err := ln.(*tcpListener).ln.SyscallConn()
	require.NoError(t, err)
	dev, err := BoundInterface(lrc)
	require.NoError(t, err)
	require.Equal(t, "lo", dev)
	accepted := acceptAsync(ln)
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{Interface: "lo"})
	require.NoError(t, err)
	r := <-accepted
	require.NoError(t, r.err)
	rc, err := c.(*tcpTransport).SyscallConn()
	require.NoError(t, err)
	dev, err = BoundInterface(rc)
	require.NoError(t, err)
	require.Equal(t, "lo", dev)
	require.NoError(t, c.Close())
	require.NoError(t, r.t.Close())
	// without the option nothing is bound
	accepted = acceptAsync(ln)
	c, err = TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
	require.NoError(t, err)
	r = <-accepted
	require.NoError(t, r.err)
	rc, _ = c.(*tcpTransport).SyscallConn()
	dev, err = BoundInterface(rc)
	require.NoError(t, err)
	require.Empty(t, dev)
	require.NoError(t, c.Close())
	require.NoError(t, r.t.Close())
	// a missing interface fails the dial
	_, err = TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{Interface: "nope0"})
	require.ErrorIs(t, err, syscall.ENODEV)
}

// TestTemporaryAddressSockoptUDP: UDP and UDP-Lite sockets (dialled and
// listening) get useTemporaryLocalAddress's IPV6_ADDR_PREFERENCES too.
func TestTemporaryAddressSockoptUDP(t *testing.T) {
	ctx := testCtx(t)
	for _, st := range []Stack{UDP(), UDPLite()} {
		t.Run(st.Name(), func(t *testing.T) {
			ln, err := st.Listen(ctx, Options{Local: netip.MustParseAddrPort("[::1]:0"), TemporaryAddress: Avoid})
			skipWithoutUDPLite(t, err)
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			defer ln.Close()
			c, err := st.Dial(ctx, addrPort(t, ln.Addr()), Options{TemporaryAddress: Prefer})
			require.NoError(t, err)
			defer c.Close()
			read := func(uc *net.UDPConn) int {
				rc, err := uc.SyscallConn()
				require.NoError(t, err)
				v, err := AddrPreferences(rc)
				require.NoError(t, err)
				return v
			}
			var dialled, listening *net.UDPConn
			switch tr := c.(type) {
			case *udpTransport:
				dialled = tr.UDPConn
			case *udpLiteTransport:
				dialled = tr.UDPConn
			}
			switch l := ln.(type) {
			case *udpListener:
				listening = l.conn
			case *udpLiteListener:
				listening = l.conn
			}
			require.NotNil(t, dialled)
			require.NotNil(t, listening)
			v := read(dialled)
			require.NotZero(t, v&IPv6PreferSrcTmp, "dialled: Prefer is IPV6_PREFER_SRC_TMP (got %#x)", v)
			v = read(listening)
			require.NotZero(t, v&IPv6PreferSrcPublic, "listening: Avoid is IPV6_PREFER_SRC_PUBLIC (got %#x)", v)
		})
	}
}
