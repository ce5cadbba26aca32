package stacks

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPathDiff: two readings differ in what changed on the path, and in
// nothing else.
func TestPathDiff(t *testing.T) {
	base := PathReading{
		Local:     netip.MustParseAddr("198.18.0.1"),
		Remote:    netip.MustParseAddrPort("198.18.0.2:443"),
		Interface: "eth0",
		Source:    netip.MustParseAddr("198.18.0.1"),
		RouteMTU:  1500,
		PMTU:      1500,
		Subflows:  1,
	}
	with := func(f func(*PathReading)) PathReading { r := base; f(&r); return r }
	for _, tt := range []struct {
		name string
		cur  PathReading
		want []string
	}{
		{"same path", base, nil},
		{"other local address", with(func(r *PathReading) { r.Local = netip.MustParseAddr("198.18.1.1") }), []string{"local"}},
		{"other remote port", with(func(r *PathReading) { r.Remote = netip.MustParseAddrPort("198.18.0.2:444") }), []string{"remote"}},
		{"other interface and source", with(func(r *PathReading) { r.Interface, r.Source = "eth1", netip.MustParseAddr("198.18.1.1") }), []string{"interface", "source"}},
		{"lower link MTU", with(func(r *PathReading) { r.RouteMTU = 1280 }), []string{"route MTU"}},
		{"PMTU discovered", with(func(r *PathReading) { r.PMTU = 1400 }), []string{"PMTU"}},
		{"subflow added (handover)", with(func(r *PathReading) { r.Subflows = 2 }), []string{"subflows"}},
		{"route lost", with(func(r *PathReading) { r.Interface, r.Source, r.RouteMTU = "", netip.Addr{}, 0 }), []string{"interface", "source", "route MTU"}},
	} {
		require.Equal(t, tt.want, PathDiff(base, tt.cur), tt.name)
		require.Equal(t, tt.want, PathDiff(tt.cur, base), tt.name+" (back)")
	}
}

// TestAddrReading: the local port does not count (a new socket from the
// same address is the same path); IPv4-mapped addresses are their IPv4
// address.
func TestAddrReading(t *testing.T) {
	a := AddrReading(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1000}, &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.2"), Port: 80})
	b := AddrReading(&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 2000}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 80})
	require.Empty(t, PathDiff(a, b))
	require.Equal(t, netip.MustParseAddrPort("127.0.0.2:80"), a.Remote)
	c := AddrReading(&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1000}, &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: 81})
	require.Equal(t, []string{"remote"}, PathDiff(a, c))
	require.Empty(t, PathDiff(AddrReading(nil, nil), PathReading{}))
}

// TestPathReadingLoopback: a TCP connection's reading has its addresses,
// and on Linux the route's interface and MTU and the socket's PMTU; the
// MPTCP subflow count reads where the connection runs MPTCP and the kernel
// has MPTCP_INFO, and is unsupported on plain TCP.
func TestPathReadingLoopback(t *testing.T) {
	for _, mp := range []bool{false, true} {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(mp)
		ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		d := net.Dialer{}
		d.SetMultipathTCP(mp)
		c, err := d.Dial("tcp4", ln.Addr().String())
		require.NoError(t, err)
		peer, err := ln.Accept()
		require.NoError(t, err)
		tr := &tcpTransport{TCPConn: c.(*net.TCPConn), stack: "tcp"}
		r := ReadPath(tr, c.LocalAddr(), c.RemoteAddr())
		require.Equal(t, ln.Addr().(*net.TCPAddr).AddrPort(), r.Remote)
		require.Equal(t, netip.MustParseAddr("127.0.0.1"), r.Local)
		if runtime.GOOS == "linux" {
			require.Equal(t, "lo", r.Interface)
			require.Positive(t, r.RouteMTU)
			require.Positive(t, r.PMTU)
			n, err := tr.MPTCPSubflows()
			if running, _ := tr.MultipathTCP(); !running {
				require.ErrorIs(t, err, errors.ErrUnsupported, "plain TCP has no subflows")
			} else if !errors.Is(err, errors.ErrUnsupported) {
				require.NoError(t, err)
				require.Equal(t, n, r.Subflows)
			}
		}
		require.Empty(t, PathDiff(r, ReadPath(tr, c.LocalAddr(), c.RemoteAddr())), "nothing changed")
		peer.Close()
		c.Close()
		ln.Close()
	}
}

// TestPathLost: a path is lost when its local address is not among the
// usable ones, or when its bound interface has no route to the peer; an
// unknown usable set, an unspecified or unknown local address and an
// unbound socket without a route are not lost.
func TestPathLost(t *testing.T) {
	l1, l2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.1.1")
	ll := netip.MustParseAddr("fe80::1")
	usable := map[netip.Addr]bool{l2: true, ll: true}
	routed := PathReading{Local: l1, Remote: netip.MustParseAddrPort("198.18.9.9:443"), Interface: "if1"}
	unrouted := PathReading{Local: l2, Remote: routed.Remote}
	for _, tt := range []struct {
		name   string
		r      PathReading
		bound  string
		usable map[netip.Addr]bool
		lost   bool
		why    string
	}{
		{"local address gone", routed, "", usable, true, "local address 198.18.0.1 is gone"},
		{"local address usable", PathReading{Local: l2, Remote: routed.Remote, Interface: "if2"}, "if2", usable, false, ""},
		{"usable unknown", routed, "", nil, false, ""},
		{"unspecified local", PathReading{Local: netip.IPv4Unspecified(), Remote: routed.Remote}, "", usable, false, ""},
		{"no local", PathReading{Remote: routed.Remote}, "", usable, false, ""},
		{"mapped local", PathReading{Local: netip.AddrFrom16(l2.As16()), Remote: routed.Remote}, "", usable, false, ""},
		{"zoned local", PathReading{Local: ll.WithZone("if2"), Remote: routed.Remote}, "", usable, false, ""},
		{"bound, no route", unrouted, "if2", usable, true, "no route to 198.18.9.9 out of if2"},
		{"unbound, no route", unrouted, "", usable, false, ""},
		{"bound, no remote", PathReading{Local: l2}, "if2", usable, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			why, lost := PathLost(tt.r, tt.bound, tt.usable)
			require.Equal(t, tt.lost, lost)
			if tt.lost {
				require.Contains(t, why, tt.why)
			} else {
				require.Empty(t, why)
			}
		})
	}
}

// TestUsableAddrs: loopback is up, and its address is usable.
func TestUsableAddrs(t *testing.T) {
	usable, err := UsableAddrs()
	require.NoError(t, err)
	require.True(t, usable[netip.MustParseAddr("127.0.0.1")], "127.0.0.1 on lo: %v", usable)
}
