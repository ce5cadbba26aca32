package taps

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// TestUDPListenerSoftErrorForALinkLocalPeerInNetns: a UDP Listener's
// Connection with a peer at an IPv6 link-local address (over a veth into
// a namespace the test made) gets the SoftError of the ICMPv6 port
// unreachable its message to the peer's closed port brings back, on a
// Listener on the wildcard address and on one on the link-local address.
// Before, the error was lost (its destination had no zone, the peer's
// address had one, so the Listener's socket matched it to no peer).
func TestUDPListenerSoftErrorForALinkLocalPeerInNetns(t *testing.T) {
	n := stacktest.NewNetns(t, "sl", 235) // skips unless root can create namespaces
	hostZone, nsZone := n.LinkLocal(t)
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(SoftErrorNotify, Require))
	for _, addr := range []string{"", "fe80::1%" + hostZone} {
		name := "listening on the wildcard address"
		if addr != "" {
			name = "listening on fe80::1"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ln, port := udpListenOn(t, sys, addr, tp)
			n.Run(t, func() error { // a peer in the namespace sends once and goes away
				c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("fe80::2"), Zone: nsZone})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: int(port), Zone: nsZone})
				return err
			})
			s, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { s.Abort(); <-s.Done() }()
			softs := softErrors(s)
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, "hello", string(m.Data))
			require.Equal(t, "fe80::2", remoteAddrOf(t, s).Addr().WithZone("").String())
			require.NoError(t, s.Send(ctx, []byte("anyone?"), nil))
			select {
			case err := <-softs:
				require.ErrorIs(t, err, syscall.ECONNREFUSED)
			case <-time.After(5 * time.Second):
				t.Fatal("no SoftError for the ICMPv6 port unreachable from the link-local peer")
			}
			require.Equal(t, StateEstablished, s.State())
		})
	}
}
