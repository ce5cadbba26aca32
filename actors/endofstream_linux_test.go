package actors

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestEndOfStreamRacingThisSidesFINIsThePeers: the peer's FIN comes in as
// the connection shuts its own sending side down (its Close, a Final
// message written): the reader reads the end of stream and sees its check
// still wanted (endCheckTCP), then the connection marks it (endSendShut)
// and sends its FIN, which the peer answers, all before the reader reads
// the socket's state: TCP_CLOSE after a graceful exchange, no error
// pending. The end is the peer's FIN (io.EOF). The reader took it for an
// end the socket's reset left (stacks.ErrEndedWithoutFIN), and the
// connection, Established after its Final message, failed.
func TestEndOfStreamRacingThisSidesFINIsThePeers(t *testing.T) {
	c, peer := tcpPair(t)
	var s rawStream
	s.init(rawTCP{c}, new(ioCount), nil)
	require.True(t, s.direct)
	s.endCheck.Store(endCheckTCP)
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	state := func() uint8 {
		var st uint8
		require.NoError(t, raw.Control(func(fd uintptr) {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			require.NoError(t, err)
			st = info.State
		}))
		return st
	}
	ran := false
	hook := func() {
		ran = true
		// the connection's closeWrite, between the reader's two looks
		require.True(t, s.endCheck.CompareAndSwap(endCheckTCP, endSendShut))
		require.NoError(t, c.CloseWrite())
		n, err := peer.Read(make([]byte, 1)) // this side's FIN is in
		require.Zero(t, n)
		require.ErrorIs(t, err, io.EOF)
		require.Eventually(t, func() bool { return state() == unix.BPF_TCP_CLOSE },
			5*time.Second, time.Millisecond, "the peer never acknowledged the FIN")
	}
	testHookEndOfStream.Store(&hook)
	t.Cleanup(func() { testHookEndOfStream.Store(nil) })

	require.NoError(t, peer.CloseWrite())
	_, err = s.read()
	require.True(t, ran, "the end of stream was not checked")
	require.Equal(t, io.EOF, err, "the peer's FIN, not an end without it")
}
