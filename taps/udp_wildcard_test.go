//go:build linux

package taps

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// TestUDPWildcardListenerAnswersFromTheAddressSentTo (Linux, where the
// listener learns the destination of each datagram): a UDP Listener bound
// to the wildcard address answers each peer from the address that peer
// sent to, and tells apart the peers by 4-tuple (RFC 9623 §10.2: the UDP
// Connection is the local and remote address pair). It answered from the
// address the kernel picked by route: an initiated Connection to
// 127.0.0.2, whose socket is connected to 127.0.0.2, never received the
// answers (from 127.0.0.1); and one remote sending to two of the host's
// addresses was one Connection.
func TestUDPWildcardListenerAnswersFromTheAddressSentTo(t *testing.T) {
	sys := newTestSystem(t)
	ln, port := udpListenOn(t, sys, "", datagramProps(t))
	ctx := testCtx(t)
	for _, dst := range []string{"127.0.0.2", "127.0.0.1", "::1"} {
		t.Run(dst, func(t *testing.T) {
			c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
				WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(dst).WithPort(port))).Initiate(ctx)
			require.NoError(t, err)
			defer func() { c.Abort(); <-c.Done() }()
			require.NoError(t, c.Send(ctx, []byte("hi"), nil))
			s, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { s.Abort(); <-s.Done() }()
			_, err = s.Receive(ctx)
			require.NoError(t, err)
			require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr(dst), port).String(), s.GetProperties().Local.String(),
				"the accepted Connection's local endpoint is the address its peer sent to")
			require.NoError(t, s.Send(ctx, []byte("reply"), NewMessageContext().CapacityProfile(LowLatencyInteractive)))
			require.NoError(t, s.Send(ctx, []byte("reply 2"), nil))
			for _, want := range []string{"reply", "reply 2"} {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				m, err := c.Receive(rctx)
				cancel()
				require.NoError(t, err, "the answer reaches a peer connected to %s", dst)
				require.Equal(t, want, string(m.Data))
			}
		})
	}

	// one remote, two local addresses: two Connections, each answering
	// from its own; the datagrams' TOS byte is read with their
	// destination (ECT(0) here)
	pc := rawUDPOn(t, "127.0.0.1")
	rc, err := pc.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		require.NoError(t, syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS, int(stacks.ECT0)))
	}))
	var got [2]*Connection
	for i, dst := range []string{"127.0.0.1", "127.0.0.2"} {
		_, err := pc.WriteToUDPAddrPort(fmt.Appendf(nil, "to %s", dst), netip.AddrPortFrom(netip.MustParseAddr(dst), port))
		require.NoError(t, err)
		got[i], err = ln.Accept(ctx)
		require.NoError(t, err)
		defer func() { got[i].Abort(); <-got[i].Done() }()
		m, err := got[i].Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "to "+dst, string(m.Data))
		ecn, ok := m.Context.ECN()
		require.True(t, ok)
		require.Equal(t, stacks.ECT0, ecn)
	}
	for i, dst := range []string{"127.0.0.1", "127.0.0.2"} {
		require.NoError(t, got[i].Send(ctx, []byte("from "+dst), nil))
		b, from := readDatagramFrom(t, pc)
		require.Equal(t, "from "+dst, string(b))
		require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr(dst), port), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// TestUDPWildcardListenerSoftErrorReachesItsPeer: on a wildcard Listener,
// whose peers are told apart by local address too, the ICMP error a
// peer's answer causes (found by the remote address alone) still reaches
// that peer's Connection as a SoftError.
func TestUDPWildcardListenerSoftErrorReachesItsPeer(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(SoftErrorNotify, Prefer))
	ln, port := udpListenOn(t, sys, "", tp)
	pc := rawUDPOn(t, "127.0.0.1")
	ctx := testCtx(t)
	_, err := pc.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port))
	require.NoError(t, err)
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	softs := softErrors(s)
	_, err = s.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, pc.Close())
	require.NoError(t, s.Send(ctx, []byte("anyone?"), nil))
	select {
	case err := <-softs:
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
	case <-time.After(3 * time.Second):
		t.Fatal("no SoftError for the ICMP port unreachable")
	}
	require.Equal(t, StateEstablished, s.State())
}
