package stacks

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// TestUDPListenerSoftErrorForALinkLocalPeerInNetns: a UDP (and UDP-Lite)
// Listener's peer at an IPv6 link-local address (fe80::2, reached over a
// veth into a namespace the test made) gets the ICMPv6 port unreachable
// its datagram to a closed port brings back, on a listener bound to the
// link-local address and on one bound to the wildcard address alike, with
// Dest its own address, zone included. Before, the error's destination
// carried no zone while the peer's key (from the datagram's source) did,
// so the error was matched to no peer and lost. And a QUIC Dial to a
// closed port at a link-local address is refused at once (its ICMP error
// is matched to the server without the zone).
func TestUDPListenerSoftErrorForALinkLocalPeerInNetns(t *testing.T) {
	n := stacktest.NewNetns(t, "ll", 234) // skips unless root can create namespaces
	hostZone, nsZone := n.LinkLocal(t)
	here := netip.MustParseAddr("fe80::1").WithZone(hostZone)
	binds := []netip.Addr{here, netip.IPv6Unspecified()}
	for _, st := range []Stack{UDP(), UDPLite()} {
		for _, bind := range binds {
			t.Run(st.Name()+" bound to "+bind.WithZone("").String(), func(t *testing.T) {
				ctx := testCtx(t)
				ln, err := st.Listen(ctx, Options{Local: netip.AddrPortFrom(bind, 0), SoftErrors: true})
				require.NoError(t, err)
				defer ln.Close()
				to := netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(nsZone), addrPort(t, ln.Addr()).Port())
				var from netip.AddrPort
				n.Run(t, func() error { // a peer in the namespace sends once and goes away
					c, err := st.Dial(ctx, to, Options{Local: netip.AddrPortFrom(netip.MustParseAddr("fe80::2").WithZone(nsZone), 0)})
					if err != nil {
						return err
					}
					defer c.Close()
					from = c.LocalAddr().(*net.UDPAddr).AddrPort()
					_, err = c.Write([]byte("hello"))
					return err
				})
				p, err := ln.Accept()
				require.NoError(t, err)
				defer p.Close()
				buf := make([]byte, 16)
				m, err := p.Read(buf)
				require.NoError(t, err)
				require.Equal(t, "hello", string(buf[:m]))
				want := addrPort(t, p.RemoteAddr())
				require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("fe80::2"), from.Port()),
					netip.AddrPortFrom(want.Addr().WithZone(""), want.Port()))
				require.NotEmpty(t, want.Addr().Zone(), "a link-local peer has its zone")

				_, err = p.Write([]byte("to a closed port"))
				require.NoError(t, err)
				select {
				case got := <-p.(SoftErrorNotifier).SoftErrors():
					var se *SoftError
					require.ErrorAs(t, got, &se)
					require.ErrorIs(t, se, syscall.ECONNREFUSED)
					require.Equal(t, want, se.Dest, "the error names the peer, zone included")
				case <-time.After(5 * time.Second):
					t.Fatal("the ICMPv6 port unreachable for the link-local peer did not reach it")
				}
			})
		}
	}
	// a QUIC Dial to a closed link-local port is refused at once, the
	// error's zone (now given) notwithstanding
	t.Run("quic dial to a closed port", func(t *testing.T) {
		var port uint16
		n.Run(t, func() error {
			c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("fe80::2"), Zone: nsZone})
			if err != nil {
				return err
			}
			port = c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			return c.Close()
		})
		remote := netip.AddrPortFrom(netip.MustParseAddr("fe80::2").WithZone(hostZone), port)
		ctx := testCtx(t)
		start := time.Now()
		tr, err := QUIC().Dial(ctx, remote, Options{TLS: newTestPKI(t).clientConfig()})
		took := time.Since(start)
		if tr != nil {
			_ = tr.Abort()
			waitQUICDone(t, tr)
		}
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.Less(t, took, 2*time.Second, "the dial waited for its handshake timeout")
	})
}
