package taps

import (
	"strings"
	"syscall"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// liteSniffer opens a raw IPv4 socket of protocol UDP-Lite (136), which
// sees every UDP-Lite datagram of the host, loopback included; next returns
// the destination port and checksum coverage field (0: full) of the next
// one. It skips the test without CAP_NET_RAW.
func liteSniffer(t *testing.T) (next func() (dport, cscov uint16)) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, 136)
	if err != nil {
		t.Skipf("needs a raw socket (root, CAP_NET_RAW) to read the UDP-Lite headers: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20) // root: no drops
	tv := syscall.Timeval{Sec: 5}
	require.NoError(t, syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv))
	buf := make([]byte, 70000)
	return func() (uint16, uint16) {
		t.Helper()
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		require.NoError(t, err)
		h := buf[int(buf[0]&0xf)*4 : n] // past the IPv4 header
		require.GreaterOrEqual(t, len(h), 8)
		return uint16(h[2])<<8 | uint16(h[3]), uint16(h[4])<<8 | uint16(h[5])
	}
}

// TestUDPLiteAcceptedPeersKeepTheirOwnChecksumCoverage: two Connections a
// UDP-Lite Listener accepted share its socket, whose UDPLITE_SEND_CSCOV
// each of their Messages with a msgChecksumLen of its own switched and
// switched back around its datagram: when both sent at once, a datagram
// of one left with the coverage the other had just set (108 of 600 in
// one run). Each datagram now carries its own Connection's coverage,
// read in its header by a raw socket.
func TestUDPLiteAcceptedPeersKeepTheirOwnChecksumCoverage(t *testing.T) {
	next := liteSniffer(t)
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
	require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	if err != nil && strings.Contains(err.Error(), stacks.ErrUDPLiteUnsupported.Error()) {
		t.Skip("kernel without UDP-Lite")
	}
	require.NoError(t, err)
	defer ln.Stop()
	ctx := testCtx(t)
	const n, size = 400, 100
	// each accepted Connection's msgChecksumLen (-1: none, full coverage)
	// and the coverage field its datagrams must carry (full: 0 or the
	// length, header included)
	covs := []struct {
		msg  int64
		want []uint16
	}{{10, []uint16{18}}, {30, []uint16{38}}, {-1, []uint16{0, size + 8}}}
	byPort := map[uint16]int{}
	srv := make([]*Connection, len(covs))
	for i := range covs {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
		require.NoError(t, err)
		defer func() { c.Abort(); <-c.Done() }()
		require.NoError(t, c.Send(ctx, []byte("hello"), nil))
		next()
		srv[i], err = ln.Accept(ctx)
		require.NoError(t, err)
		defer func() { srv[i].Abort(); <-srv[i].Done() }()
		byPort[remoteAddrOf(t, srv[i]).Port()] = i
	}
	done := make(chan error, len(srv))
	for i, s := range srv {
		go func() {
			for range n {
				mc := NewMessageContext()
				if covs[i].msg >= 0 {
					mc.ChecksumLen(int(covs[i].msg))
				}
				if err := s.Send(ctx, make([]byte, size), mc); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range srv {
		require.NoError(t, <-done)
	}
	wrong := map[int]int{}
	for range len(srv) * n {
		dport, cscov := next()
		i, ok := byPort[dport]
		require.True(t, ok, "a datagram to port %d", dport)
		if !containsCov(covs[i].want, cscov) {
			wrong[i]++
		}
	}
	require.Empty(t, wrong, "datagrams with another Connection's coverage, per Connection")
}

func containsCov(want []uint16, c uint16) bool {
	for _, w := range want {
		if w == c {
			return true
		}
	}
	return false
}
