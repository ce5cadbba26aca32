package taps

import (
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// awaitFINAcked waits until the kernel of the peer's side reports its FIN
// acknowledged (FIN_WAIT2): everything it sent before is in the gotaps
// socket's receive queue. On loopback the acknowledgement comes within the
// shutdown call; the loop only yields.
func awaitFINAcked(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	ctx := testCtx(t)
	for {
		var info *unix.TCPInfo
		var ierr error
		require.NoError(t, rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }))
		require.NoError(t, ierr)
		if info.State == unix.BPF_TCP_FIN_WAIT2 {
			return
		}
		require.NoError(t, ctx.Err(), "the peer's FIN was never acknowledged (state %d)", info.State)
		runtime.Gosched()
	}
}
