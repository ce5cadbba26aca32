//go:build linux

package stacks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// hasLoopback tells whether ip can be bound (IPv6 may be off).
func hasLoopback(ip netip.Addr) bool {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestQUICDialToAClosedPortIsRefusedAtOnce: the ICMP port unreachable
// answering the client's Initial ends the dial at once with
// syscall.ECONNREFUSED (IPv4, IPv6, and IPv4 from a dual-stack socket),
// where it used to wait for the handshake timeout.
func TestQUICDialToAClosedPortIsRefusedAtOnce(t *testing.T) {
	pki := newTestPKI(t)
	for i, tt := range []struct {
		name   string
		remote string
		local  netip.AddrPort
		dscp   uint8 // quic-go then reads with ReadFrom (plainPacketConn)
	}{
		{"IPv4", "127.0.0.1", netip.AddrPort{}, 0},
		{"IPv6", "::1", netip.AddrPort{}, 0},
		{"IPv4 from a dual-stack socket", "127.0.0.1", netip.MustParseAddrPort("[::]:0"), 0},
		{"IPv4 with a DSCP", "127.0.0.1", netip.AddrPort{}, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.remote)
			if !hasLoopback(ip) {
				t.Skipf("#%d: no %s on loopback", i, ip)
			}
			remote := closedUDPPort(t, ip)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			tr, err := QUIC().Dial(ctx, remote, Options{TLS: pki.clientConfig(), Local: tt.local, DSCP: tt.dscp})
			took := time.Since(start)
			if tr != nil {
				_ = tr.Abort()
				waitQUICDone(t, tr)
			}
			t.Logf("#%d: after %v: %v", i, took, err)
			require.ErrorIs(t, err, syscall.ECONNREFUSED, "#%d", i)
			require.Less(t, took, 2*time.Second, "#%d: the dial waited for its handshake timeout", i)
		})
	}
}

// recvErrOf reads IP_RECVERR (and IPV6_RECVERR on an IPv6 socket) of c.
func recvErrOf(t *testing.T, c *net.UDPConn) (v4, v6 int) {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v4, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR)
		if domain, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); gerr == nil && domain == unix.AF_INET6 {
			v6, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR)
		}
	}))
	require.NoError(t, gerr)
	return v4, v6
}

// TestQUICEstablishedConnectionIgnoresICMPErrors: once the handshake is
// done, the dialed socket no longer reports ICMP errors (RFC 9000 §14.2.1:
// an unauthenticated ICMP message must not end a connection), and the
// Listener's socket never did. A connection whose peer died while it
// still sends (every packet met by an ICMP port unreachable) ends by its
// idle timeout, as before.
func TestQUICEstablishedConnectionIgnoresICMPErrors(t *testing.T) {
	ctx := testCtx(t)
	ln, accepted, cli := quicDial(t, ctx, Options{ConnTimeout: 1500 * time.Millisecond})
	_, err := cli.Write([]byte("a"))
	require.NoError(t, err)
	srv := awaitAccepted(t, ctx, accepted, "the first stream")
	buf := make([]byte, 1)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)

	s := cli.(*quicStream)
	v4, v6 := recvErrOf(t, s.udpSocket())
	require.Zero(t, v4+v6, "the dialed socket reports ICMP errors after the handshake")
	v4, v6 = recvErrOf(t, ln.(*quicListener).udp)
	require.Zero(t, v4+v6, "the Listener's socket reports ICMP errors")

	// the peer's socket goes away without a word: what the client sends
	// next meets ICMP port unreachable
	require.NoError(t, ln.(*quicListener).udp.Close())
	start := time.Now()
	_, err = cli.Write([]byte("b"))
	require.NoError(t, err)
	select {
	case <-s.c.conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the connection did not end by its idle timeout")
	}
	cause := context.Cause(s.c.conn.Context())
	t.Logf("ended after %v: %v", time.Since(start), cause)
	var idle *quic.IdleTimeoutError
	require.True(t, errors.As(cause, &idle), "ended by %v, not by its idle timeout", cause)
	require.NotErrorIs(t, cause, syscall.ECONNREFUSED)
	_ = cli.Abort()
	_ = srv.Abort()
	waitQUICDone(t, cli)
	waitQUICDone(t, srv)
}
