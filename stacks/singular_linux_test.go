package stacks

import (
	"crypto/tls"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSingularMsgMaxLenUDP: on loopback (MTU 65536; an IPv4 packet is at
// most 65535 bytes) one UDP datagram carries the MTU less the IP and UDP
// headers, on the dialled side and on a listener's peer (read with a probe
// socket).
func TestSingularMsgMaxLenUDP(t *testing.T) {
	for _, tc := range []struct {
		ip  netip.Addr
		max int
	}{{netip.MustParseAddr("127.0.0.1"), 65535 - 20 - 8}, {netip.IPv6Loopback(), 65536 - 40 - 8}} {
		t.Run(tc.ip.String(), func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := UDP().Listen(ctx, Options{Local: netip.AddrPortFrom(tc.ip, 0)})
			require.NoError(t, err)
			defer ln.Close()
			c, err := UDP().Dial(ctx, addrPort(t, ln.Addr()), Options{})
			require.NoError(t, err)
			defer c.Close()
			info, err := c.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, tc.max, info.SingularMsgMaxLen)
			// a new DSCP drops the socket's cached route (IP_MTU: ENOTCONN
			// until the next send): still readable
			dscp := uint8(10)
			require.NoError(t, ApplyLive(c, LiveOptions{DSCP: &dscp}))
			info, err = c.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, tc.max, info.SingularMsgMaxLen, "after a DSCP change")
			_, err = c.Write([]byte("hello"))
			require.NoError(t, err)
			p, err := ln.Accept()
			require.NoError(t, err)
			defer p.Close()
			info, err = p.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, tc.max, info.SingularMsgMaxLen, "the listener's peer")
		})
	}
}

// TestSingularMsgMaxLenTLS: a TLS 1.3 connection's is its TCP socket's MSS
// less one record's overhead.
func TestSingularMsgMaxLenTLS(t *testing.T) {
	ctx := testCtx(t)
	pki := newTestPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverConfig())
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
		done <- err
	}()
	c, err := TLS().Dial(ctx, addrPort(t, ln.Addr()), Options{TLS: pki.clientConfig()})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, <-done)
	info, err := c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS13), info.TLSVersion)
	tcp, err := tcpInfo(c.(*tlsTransport).tcp, "tcp")
	require.NoError(t, err)
	require.Positive(t, tcp.SingularMsgMaxLen, "TCP: the MSS")
	require.Equal(t, tcp.SingularMsgMaxLen-22, info.SingularMsgMaxLen)
}
