package stacks

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// with2 is a copy of a overridden by b.
func with2(a, b map[string]int8) map[string]int8 {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

func skipWithoutUDPLite(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrUDPLiteUnsupported) {
		t.Skip("no UDP-Lite here (a kernel without it, or not Linux): ", err)
	}
}

func TestUDPLiteCapabilities(t *testing.T) {
	s := UDPLite()
	require.Equal(t, "udplite", s.Name())
	c := s.Capabilities()
	require.True(t, c.PreserveMsgBoundaries)
	require.False(t, c.FullChecksumSend || c.FullChecksumRecv || c.Reliability || c.PreserveOrder || c.CongestionControl)
	// chosen only when full coverage is not required
	all := []Stack{UDP(), UDPLite()}
	got, err := Select(all, with(unreliableDatagram))
	require.NoError(t, err)
	require.Equal(t, []Stack{UDP()}, got, "RFC defaults require full checksums")
	got, err = Select(all, with(with2(unreliableDatagram, map[string]int8{"fullChecksumSend": Avoid, "fullChecksumRecv": NoPreference})))
	require.NoError(t, err)
	require.Equal(t, []Stack{UDPLite(), UDP()}, got, "avoiding full coverage ranks UDP-Lite first")
	got, err = Select(all, with(with2(unreliableDatagram, map[string]int8{"fullChecksumSend": Prohibit, "fullChecksumRecv": Prohibit})))
	require.NoError(t, err)
	require.Equal(t, []Stack{UDPLite()}, got)
}

// TestUDPLiteCoverage sets checksum coverage on both ends, reads it back
// with getsockopt, and checks the kernel applies it: a datagram covered
// less than the receiver's minimum is dropped, fully or sufficiently
// covered ones arrive, and the reply comes back.
func TestUDPLiteCoverage(t *testing.T) {
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		t.Run(ip.String(), func(t *testing.T) {
			ctx := testCtx(t)
			ln, err := UDPLite().Listen(ctx, Options{Local: netip.AddrPortFrom(ip, 0), RecvChecksumLen: 20})
			skipWithoutUDPLite(t, err)
			require.NoError(t, err)
			defer ln.Close()
			c, err := UDPLite().Dial(ctx, addrPort(t, ln.Addr()), Options{SendChecksumLen: 4})
			require.NoError(t, err)
			defer c.Close()

			info, err := c.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, "udplite", info.Stack)
			require.Equal(t, 12, info.SendChecksumCoverage, "4 payload bytes + 8 header bytes")
			require.Zero(t, info.RecvChecksumCoverage)

			payload := func(tag byte) []byte { return append([]byte{tag}, bytes.Repeat([]byte{'.'}, 99)...) }
			_, err = c.Write(payload('a')) // covers 12 < 28 bytes: dropped by the receiver
			require.NoError(t, err)
			cov := c.(ChecksumCoverage)
			require.NoError(t, cov.SetSendChecksumLen(0))
			_, err = c.Write(payload('b')) // full coverage
			require.NoError(t, err)
			require.NoError(t, cov.SetSendChecksumLen(30))
			info, err = c.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, 38, info.SendChecksumCoverage)
			_, err = c.Write(payload('c')) // covers 38 >= 28
			require.NoError(t, err)

			p, err := ln.Accept()
			require.NoError(t, err)
			defer p.Close()
			pinfo, err := p.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, "udplite", pinfo.Stack)
			require.Equal(t, 28, pinfo.RecvChecksumCoverage, "20 payload bytes + 8 header bytes")
			buf := make([]byte, 200)
			n, tos, err := p.(TOSDatagrams).ReadMsg(buf)
			require.NoError(t, err)
			require.Equal(t, payload('b'), buf[:n], "the under-covered datagram must be dropped")
			require.Zero(t, tos)
			n, err = p.Read(buf)
			require.NoError(t, err)
			require.Equal(t, payload('c'), buf[:n])

			// reply, with ECN set per datagram
			_, err = p.(TOSDatagrams).WriteMsg([]byte("reply"), TOS(0, ECT0))
			require.NoError(t, err)
			n, tos, err = c.(TOSDatagrams).ReadMsg(buf)
			require.NoError(t, err)
			require.Equal(t, "reply", string(buf[:n]))
			require.Equal(t, ECT0, ECNOf(tos))

			// the receive coverage is the shared socket's: a peer cannot
			// change it, but may ask for what it is
			require.ErrorIs(t, p.(ChecksumCoverage).SetRecvChecksumLen(-1), ErrNotApplicable)
			require.NoError(t, p.(ChecksumCoverage).SetRecvChecksumLen(20))
			pinfo, err = p.(SocketInfo).Info()
			require.NoError(t, err)
			require.Equal(t, 28, pinfo.RecvChecksumCoverage)
		})
	}
}

func TestUDPLiteDualStackListener(t *testing.T) {
	ctx := testCtx(t)
	ln, err := UDPLite().Listen(ctx, Options{})
	skipWithoutUDPLite(t, err)
	require.NoError(t, err)
	defer ln.Close()
	port := addrPort(t, ln.Addr()).Port()
	require.NotZero(t, port)
	c, err := UDPLite().Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Options{})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	p, err := ln.Accept()
	require.NoError(t, err)
	defer p.Close()
	require.Equal(t, c.LocalAddr().String(), p.RemoteAddr().String())
	buf := make([]byte, 10)
	n, err := p.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
}
