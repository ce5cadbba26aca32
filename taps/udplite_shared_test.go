//go:build linux

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
// one to a port for which to returns true (others, such as other tests',
// are skipped). It skips the test without CAP_NET_RAW.
func liteSniffer(t *testing.T, to func(port uint16) bool) (next func() (dport, cscov uint16)) {
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
		for {
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			require.NoError(t, err)
			h := buf[int(buf[0]&0xf)*4 : n] // past the IPv4 header
			if len(h) < 8 {
				continue
			}
			if dport := uint16(h[2])<<8 | uint16(h[3]); to(dport) {
				return dport, uint16(h[4])<<8 | uint16(h[5])
			}
		}
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
	byPort := map[uint16]int{} // the accepted Connections' peers' ports
	next := liteSniffer(t, func(port uint16) bool { _, ok := byPort[port]; return ok })
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
	srv := make([]*Connection, len(covs))
	for i := range covs {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
		require.NoError(t, err)
		defer func() { c.Abort(); <-c.Done() }()
		require.NoError(t, c.Send(ctx, []byte("hello"), nil))
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
		if i := byPort[dport]; !containsCov(covs[i].want, cscov) {
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

// TestUDPLiteAcceptedRecvChecksumLenNotApplicable: recvChecksumLen set on
// a Connection a UDP-Lite Listener accepted changed UDPLITE_RECV_CSCOV on
// the Listener's socket, shared with every other peer: a sibling
// Connection, whose recvChecksumLen still read its own value, then
// silently lost its peer's partly covered datagrams. It now fails with
// stacks.ErrNotApplicable and changes nothing; the value the socket has
// is accepted.
func TestUDPLiteAcceptedRecvChecksumLenNotApplicable(t *testing.T) {
	sys := newTestSystem(t)
	tp := datagramProps(t)
	require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
	require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
	require.NoError(t, tp.Set(RecvChecksumLen, int64(4)))
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	if err != nil && strings.Contains(err.Error(), stacks.ErrUDPLiteUnsupported.Error()) {
		t.Skip("kernel without UDP-Lite")
	}
	require.NoError(t, err)
	defer ln.Stop()
	ctx := testCtx(t)
	var cli, srv [2]*Connection
	for i := range 2 {
		cli[i], err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
		require.NoError(t, err)
		defer func() { cli[i].Abort(); <-cli[i].Done() }()
		require.NoError(t, cli[i].Send(ctx, []byte("hello"), nil))
		srv[i], err = ln.Accept(ctx)
		require.NoError(t, err)
		defer func() { srv[i].Abort(); <-srv[i].Done() }()
		_, err = srv[i].Receive(ctx)
		require.NoError(t, err)
	}
	err = srv[0].SetProperty(RecvChecksumLen, int64(50))
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, stacks.ErrNotApplicable)
	v, _ := srv[0].GetProperties().Get(RecvChecksumLen)
	require.Equal(t, int64(4), v, "refused: nothing changed")
	require.NoError(t, srv[0].SetProperty(RecvChecksumLen, int64(4)), "the socket's own value")
	for _, s := range srv {
		require.Equal(t, 12, s.GetProperties().Socket.RecvChecksumCoverage, "4 + header, the Listener's")
	}
	// the sibling still gets its peer's datagram covering 4 + 8 bytes
	require.NoError(t, cli[1].Send(ctx, make([]byte, 100), NewMessageContext().ChecksumLen(4)))
	m, err := srv[1].Receive(ctx)
	require.NoError(t, err)
	require.Len(t, m.Data, 100)
	require.Equal(t, StateEstablished, srv[0].State())
}

// TestUDPLiteRecvChecksumLenFullCoverageByDefault: recvChecksumLen's
// default, FullCoverage (RFC 9622 §8.1.1), is a minimum the kernel checks:
// a datagram whose checksum covers only part of it is dropped. The socket
// was left without UDPLITE_RECV_CSCOV, which takes any coverage, so a
// Connection that asked for nothing less than full coverage received
// partly covered datagrams. A recvChecksumLen that allows it still does.
func TestUDPLiteRecvChecksumLenFullCoverageByDefault(t *testing.T) {
	sys := newTestSystem(t)
	props := func(recv any) *TransportProperties {
		tp := datagramProps(t)
		require.NoError(t, tp.Set(FullChecksumSend, Prohibit))
		require.NoError(t, tp.Set(FullChecksumRecv, Prohibit))
		if recv != nil {
			require.NoError(t, tp.Set(RecvChecksumLen, recv))
		}
		return tp
	}
	ctx := testCtx(t)
	for _, tc := range []struct {
		name        string
		recv        any
		partialSeen bool
	}{{"default", nil, false}, {"FullCoverage", FullCoverage, false}, {"4", int64(4), true}, {"0", int64(0), true}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props(tc.recv)),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
			if err != nil && strings.Contains(err.Error(), stacks.ErrUDPLiteUnsupported.Error()) {
				t.Skip("kernel without UDP-Lite")
			}
			require.NoError(t, err)
			defer ln.Stop()
			c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(props(nil)),
				WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(ctx)
			require.NoError(t, err)
			defer func() { c.Abort(); <-c.Done() }()
			require.NoError(t, c.Send(ctx, []byte("partly covered, 4 bytes"), NewMessageContext().ChecksumLen(4)))
			require.NoError(t, c.Send(ctx, []byte("fully covered"), nil))
			s, err := ln.Accept(ctx)
			require.NoError(t, err)
			defer func() { s.Abort(); <-s.Done() }()
			m, err := s.Receive(ctx)
			require.NoError(t, err)
			if tc.partialSeen {
				require.Equal(t, "partly covered, 4 bytes", string(m.Data))
				m, err = s.Receive(ctx)
				require.NoError(t, err)
			}
			require.Equal(t, "fully covered", string(m.Data))
		})
	}
}
