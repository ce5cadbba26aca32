package stacks

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closedUDPPort returns a loopback address on which nothing listens (a
// port that was just bound and closed again).
func closedUDPPort(t *testing.T, ip netip.Addr) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	require.NoError(t, err)
	ap := addrPort(t, c.LocalAddr())
	require.NoError(t, c.Close())
	return ap
}

type readResult struct {
	data string
	err  error
}

// readAll reads datagrams from tr until it fails and hands them out; the
// returned channel is closed when the reader ended.
func readAll(tr Transport) <-chan readResult {
	out := make(chan readResult, 16)
	go func() {
		defer close(out)
		buf := make([]byte, 1500)
		for {
			n, err := tr.Read(buf)
			out <- readResult{string(buf[:max(n, 0)]), err}
			if err != nil {
				return
			}
		}
	}()
	return out
}

func nextResult(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no datagram")
		return readResult{}
	}
}

// TestUDPSoftErrorFromClosedPort sends to a closed loopback port with
// SoftErrors on: a *SoftError (ECONNREFUSED, ICMP port unreachable from
// 127.0.0.1 / ::1) arrives, the Transport's reads and writes never fail,
// and once the peer is back its reply is received and our next datagram
// reaches it.
func TestUDPSoftErrorFromClosedPort(t *testing.T) {
	skipUnlessLinux(t, "the IP_RECVERR error queue")
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		t.Run(ip.String(), func(t *testing.T) {
			ctx := testCtx(t)
			dst := closedUDPPort(t, ip)
			tr, err := UDP().Dial(ctx, dst, Options{SoftErrors: true})
			require.NoError(t, err)
			reads := readAll(tr)
			defer func() {
				require.NoError(t, tr.Close())
				for range reads { // the reader ends with net.ErrClosed
				}
			}()
			info, err := tr.(SocketInfo).Info()
			require.NoError(t, err)
			require.True(t, info.SoftErrors)
			soft := tr.(SoftErrorNotifier).SoftErrors()
			require.NotNil(t, soft)

			_, err = tr.Write([]byte("anyone?"))
			require.NoError(t, err)
			var got error
			select {
			case got = <-soft:
			case r := <-reads:
				t.Fatalf("read returned %q, %v instead of a soft error", r.data, r.err)
			case <-time.After(5 * time.Second):
				t.Fatal("no SoftError")
			}
			var se *SoftError
			require.ErrorAs(t, got, &se)
			require.ErrorIs(t, se, syscall.ECONNREFUSED)
			require.Equal(t, ip, se.Offender)
			require.Equal(t, dst, se.Dest)
			if ip.Is4() { // port unreachable: ICMP 3/3, ICMPv6 1/4
				require.Equal(t, [3]uint8{2, 3, 3}, [3]uint8{se.Origin, se.Type, se.Code})
			} else {
				require.Equal(t, [3]uint8{3, 1, 4}, [3]uint8{se.Origin, se.Type, se.Code})
			}

			// more sends to the closed port do not fail
			for range 3 {
				_, err = tr.Write([]byte("still there?"))
				require.NoError(t, err)
			}
			// the peer comes back on the same port and answers
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
			require.NoError(t, err)
			defer peer.Close()
			_, err = peer.WriteToUDPAddrPort([]byte("pong"), addrPort(t, tr.LocalAddr()))
			require.NoError(t, err)
			r := nextResult(t, reads)
			require.NoError(t, r.err)
			require.Equal(t, "pong", r.data)
			_, err = tr.Write([]byte("after"))
			require.NoError(t, err)
			buf := make([]byte, 100)
			require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
			n, err := peer.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "after", string(buf[:n]))
		})
	}
}

// TestUDPICMPErrorsIgnoredByDefault: without SoftErrors a connected UDP
// socket would fail its next Read with ECONNREFUSED (checked on a bare
// socket first); the Transport swallows it, keeps sending, and still
// receives the peer's reply.
func TestUDPICMPErrorsIgnoredByDefault(t *testing.T) {
	ctx := testCtx(t)
	dst := closedUDPPort(t, netip.MustParseAddr("127.0.0.1"))

	bare, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	require.NoError(t, err)
	_, err = bare.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, bare.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = bare.Read(make([]byte, 10))
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "the kernel reports ICMP errors on connected sockets")
	require.NoError(t, bare.Close())

	tr, err := UDP().Dial(ctx, dst, Options{})
	require.NoError(t, err)
	reads := readAll(tr)
	defer func() {
		require.NoError(t, tr.Close())
		for range reads {
		}
	}()
	require.Nil(t, tr.(SoftErrorNotifier).SoftErrors())
	info, err := tr.(SocketInfo).Info()
	require.NoError(t, err)
	require.False(t, info.SoftErrors)
	for range 4 {
		_, err = tr.Write([]byte("x"))
		require.NoError(t, err)
	}
	peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
	require.NoError(t, err)
	defer peer.Close()
	_, err = peer.WriteToUDPAddrPort([]byte("pong"), addrPort(t, tr.LocalAddr()))
	require.NoError(t, err)
	r := nextResult(t, reads)
	require.NoError(t, r.err, "the ICMP error must not surface as a read error")
	require.Equal(t, "pong", r.data)
}

// TestUDPListenerSoftErrorGoesToItsPeer: on a listener with SoftErrors, an
// ICMP error for one peer's address reaches that peer's channel, and other
// peers keep working.
func TestUDPListenerSoftErrorGoesToItsPeer(t *testing.T) {
	skipUnlessLinux(t, "the IP_RECVERR error queue")
	ctx := testCtx(t)
	ln, err := UDP().Listen(ctx, Options{Local: loopback4, SoftErrors: true})
	require.NoError(t, err)
	defer ln.Close()
	remote := addrPort(t, ln.Addr())
	gone, err := UDP().Dial(ctx, remote, Options{})
	require.NoError(t, err)
	stays, err := UDP().Dial(ctx, remote, Options{})
	require.NoError(t, err)
	defer stays.Close()
	_, err = gone.Write([]byte("a"))
	require.NoError(t, err)
	pGone, err := ln.Accept()
	require.NoError(t, err)
	defer pGone.Close()
	_, err = stays.Write([]byte("b"))
	require.NoError(t, err)
	pStays, err := ln.Accept()
	require.NoError(t, err)
	defer pStays.Close()
	buf := make([]byte, 10)
	n, err := pStays.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "b", string(buf[:n]))
	goneAddr := addrPort(t, gone.LocalAddr())
	require.NoError(t, gone.Close())

	_, err = pGone.Write([]byte("to a closed port"))
	require.NoError(t, err)
	select {
	case got := <-pGone.(SoftErrorNotifier).SoftErrors():
		var se *SoftError
		require.ErrorAs(t, got, &se)
		require.ErrorIs(t, se, syscall.ECONNREFUSED)
		require.Equal(t, goneAddr, se.Dest)
	case <-time.After(5 * time.Second):
		t.Fatal("no SoftError on the peer")
	}
	select {
	case got := <-pStays.(SoftErrorNotifier).SoftErrors():
		t.Fatalf("soft error for the other peer: %v", got)
	default:
	}
	// the other peer still talks both ways
	_, err = pStays.Write([]byte("hi"))
	require.NoError(t, err)
	require.NoError(t, stays.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err = stays.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hi", string(buf[:n]))
	_, err = stays.Write([]byte("c"))
	require.NoError(t, err)
	n, err = pStays.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "c", string(buf[:n]))
}

// TestUDPListenerPeersAtZones: the peers an ICMP error reaches by its
// destination (udpListener.peersAt). A link-local destination's zone is
// the interface's name as the net package names the peers' (from the
// datagrams' sources); when the names differ (its cache of interface names
// lags behind an interface made again), the peers at the address on any
// interface get it, unless one has the very zone.
func TestUDPListenerPeersAtZones(t *testing.T) {
	ll := func(zone string, port uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("fe80::2").WithZone(zone), port)
	}
	// told apart by their remote addresses (the test compares them deeply)
	a, b, c := &udpPeer{remote: ll("eth0", 7)}, &udpPeer{remote: ll("eth1", 7)}, &udpPeer{remote: netip.MustParseAddrPort("192.0.2.1:7")}
	for i, tt := range []struct {
		dst  bool
		dest netip.AddrPort
		want []*udpPeer
	}{
		{false, ll("eth0", 7), []*udpPeer{a}},
		{false, ll("eth1", 7), []*udpPeer{b}},
		{false, ll("9", 7), []*udpPeer{a, b}}, // a name the peers' keys do not use
		{false, ll("9", 8), nil},              // another port
		{false, netip.MustParseAddrPort("[fe80::2]:7"), nil},
		{false, netip.MustParseAddrPort("192.0.2.1:7"), []*udpPeer{c}},
		{true, ll("eth0", 7), []*udpPeer{a}},
		{true, ll("9", 7), []*udpPeer{a, b}},
	} {
		l := &udpListener{dst: tt.dst, peers: map[udpPeerKey]*udpPeer{}}
		for _, p := range []*udpPeer{a, b, c} {
			k := udpPeerKey{remote: p.remote}
			if tt.dst { // keyed by the local address too
				k.local = netip.MustParseAddr("fe80::1").WithZone(p.remote.Addr().Zone())
			}
			l.peers[k] = p
		}
		got := l.peersAt(tt.dest)
		require.ElementsMatch(t, tt.want, got, "#%d: %v (wildcard socket: %v)", i, tt.dest, tt.dst)
	}
}
