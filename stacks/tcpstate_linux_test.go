package stacks

import (
	"net"
	"testing"

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
