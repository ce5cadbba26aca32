package taps

import (
	"net"
	"strconv"
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
	stacktest.IP(t, "addr", "add", "fe80::1/64", "dev", n.HostIf, "nodad")
	stacktest.IP(t, "-n", n.NS, "addr", "add", "fe80::2/64", "dev", n.NSIf, "nodad")
	stacktest.IP(t, "netns", "exec", n.NS, "sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0")
	// zones by index (the net package's cache of interface names may hold
	// an earlier run's interface of the same name)
	hostIf, err := net.InterfaceByName(n.HostIf)
	require.NoError(t, err)
	var nsIndex int
	n.Run(t, func() error {
		ifi, err := net.InterfaceByName(n.NSIf)
		if err == nil {
			nsIndex = ifi.Index
		}
		return err
	})
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(SoftErrorNotify, Require))
	for _, addr := range []string{"", "fe80::1%" + strconv.Itoa(hostIf.Index)} {
		name := "listening on the wildcard address"
		if addr != "" {
			name = "listening on fe80::1"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ln, port := udpListenOn(t, sys, addr, tp)
			n.Run(t, func() error { // a peer in the namespace sends once and goes away
				c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("fe80::2"), Zone: strconv.Itoa(nsIndex)})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: int(port), Zone: strconv.Itoa(nsIndex)})
				return err
			})
			s, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { s.Abort(); <-s.Done() }()
			softs := make(chan error, 4)
			s.OnSoftError(func(_ *Connection, err error) {
				select {
				case softs <- err:
				default:
				}
			})
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
