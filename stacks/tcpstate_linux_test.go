package stacks

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tcpState reads the state GetsockoptTCPInfo reads, without its
// allocation: ESTABLISHED, then CLOSE_WAIT once the peer's FIN came.
func TestTCPState(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := l.Accept()
	require.NoError(t, err)
	defer s.Close()
	state := func() uint8 {
		rc, err := s.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		var st uint8
		require.NoError(t, rc.Control(func(fd uintptr) {
			var err error
			st, err = tcpState(int(fd))
			require.NoError(t, err)
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			require.NoError(t, err)
			require.Equal(t, info.State, st)
		}))
		return st
	}
	require.Equal(t, uint8(unix.BPF_TCP_ESTABLISHED), state())
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	_, err = s.Read(make([]byte, 1)) // the FIN is in once the read sees it
	require.Error(t, err)
	require.Equal(t, uint8(unix.BPF_TCP_CLOSE_WAIT), state())
}

// tcpEndedUnder, at the end of the stream s read: a peer's FIN leaves a
// socket whose sending side is open in CLOSE_WAIT (not ended); once this
// side's FIN went first, the graceful exchange leaves it TCP_CLOSE without
// an error (its TIME_WAIT is a socket of its own), which the caller tells
// apart; a reset nobody took leaves it TCP_CLOSE with the error pending,
// which it takes.
func TestTCPEndedUnder(t *testing.T) {
	pair := func(t *testing.T) (c, s *net.TCPConn, rc func() (bool, unix.Errno)) {
		c, s = tcpLoopbackPair(t)
		raw, err := s.SyscallConn()
		require.NoError(t, err)
		return c, s, func() (bool, unix.Errno) { return tcpEndedUnder(raw) }
	}
	readEOF := func(t *testing.T, s *net.TCPConn) {
		n, err := s.Read(make([]byte, 1))
		require.Zero(t, n)
		require.Error(t, err)
	}
	t.Run("PeerFIN", func(t *testing.T) {
		c, s, ended := pair(t)
		require.NoError(t, c.CloseWrite())
		readEOF(t, s)
		e, pending := ended()
		require.False(t, e)
		require.Zero(t, pending)
	})
	t.Run("BothFINsThisSideFirst", func(t *testing.T) {
		c, s, ended := pair(t)
		require.NoError(t, s.CloseWrite())
		n, err := c.Read(make([]byte, 1)) // this side's FIN reached the peer
		require.Zero(t, n)
		require.Error(t, err)
		require.NoError(t, c.CloseWrite())
		readEOF(t, s)
		e, pending := ended()
		require.True(t, e, "TCP_CLOSE after a graceful exchange this side began")
		require.Zero(t, pending)
	})
	t.Run("ResetAfterFINUntaken", func(t *testing.T) {
		c, s, ended := pair(t)
		require.NoError(t, c.CloseWrite())
		require.NoError(t, c.SetLinger(0))
		require.NoError(t, c.Close()) // RST behind the FIN
		readEOF(t, s)                 // the FIN comes first
		raw, err := s.SyscallConn()
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			var st uint8
			require.NoError(t, raw.Control(func(fd uintptr) { st, _ = tcpState(int(fd)) }))
			return st == unix.BPF_TCP_CLOSE
		}, 5*time.Second, time.Millisecond, "the reset never came")
		e, pending := ended()
		require.True(t, e)
		require.Equal(t, unix.EPIPE, pending, "the kernel's error for a reset in CLOSE_WAIT")
		_, pending = ended()
		require.Zero(t, pending, "taken")
	})
	t.Run("TCPEndOfStream", func(t *testing.T) {
		c, s, _ := pair(t)
		raw, err := s.SyscallConn()
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		readEOF(t, s)
		require.Equal(t, io.EOF, TCPEndOfStream(raw), "the peer's FIN: CLOSE_WAIT")
		require.NoError(t, c.SetLinger(0))
		require.NoError(t, c.Close())
		require.Eventually(t, func() bool {
			var st uint8
			require.NoError(t, raw.Control(func(fd uintptr) { st, _ = tcpState(int(fd)) }))
			return st == unix.BPF_TCP_CLOSE
		}, 5*time.Second, time.Millisecond, "the reset never came")
		require.ErrorIs(t, TCPEndOfStream(raw), unix.ECONNRESET, "the reset pending (EPIPE in CLOSE_WAIT) is a reset")
		require.ErrorIs(t, TCPEndOfStream(raw), ErrEndedWithoutFIN, "once its error was taken")
	})
}

// tcpLoopbackPair returns both ends of a loopback TCP connection (the
// dialed one, the accepted one), closed at the test's end.
func tcpLoopbackPair(t *testing.T) (c, s *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	cc, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	ss, err := l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ss.Close() })
	return cc.(*net.TCPConn), ss.(*net.TCPConn)
}

// TestTLSEndOfStreamRacingCloseWriteIsThePeers: the peer's FIN comes in
// under a TLS connection as this side's CloseWrite goes (its Close, a
// Final message): the read of the TCP end sees shut unset, then CloseWrite
// marks it and sends the FIN, which the peer answers, all before the read
// looks at the socket's state: TCP_CLOSE after a graceful exchange. The
// end is the peer's FIN (io.EOF; crypto/tls makes it ErrTLSTruncated or,
// with truncation allowed, a clean end). It was ErrEndedWithoutFIN, the
// end of a socket a reset left: the connection failed.
func TestTLSEndOfStreamRacingCloseWriteIsThePeers(t *testing.T) {
	c, peer := tcpLoopbackPair(t)
	in := &tcpUnderTLS{TCPConn: c, checkEnd: true}
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	ran := false
	hook := func() {
		ran = true
		// tlsTransport.CloseWrite, between the read's two looks
		in.shut.Store(true)
		require.NoError(t, c.CloseWrite())
		n, err := peer.Read(make([]byte, 1)) // this side's FIN is in
		require.Zero(t, n)
		require.ErrorIs(t, err, io.EOF)
		require.Eventually(t, func() bool {
			var st uint8
			require.NoError(t, raw.Control(func(fd uintptr) { st, _ = tcpState(int(fd)) }))
			return st == unix.BPF_TCP_CLOSE
		}, 5*time.Second, time.Millisecond, "the peer never acknowledged the FIN")
	}
	testHookTLSEndOfStream.Store(&hook)
	t.Cleanup(func() { testHookTLSEndOfStream.Store(nil) })

	require.NoError(t, peer.CloseWrite())
	n, err := in.Read(make([]byte, 1))
	require.True(t, ran, "the end of stream was not checked")
	require.Zero(t, n)
	require.Equal(t, io.EOF, err, "the peer's FIN, not an end without it")
	require.True(t, in.eof.Load())
}
