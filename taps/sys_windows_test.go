package taps

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows"
)

// Test helpers over Winsock and the Windows process API; sys_posix_test.go
// has the POSIX ones.

// setRcvBuf sets SO_RCVBUF of the socket fd to n bytes.
func setRcvBuf(fd uintptr, n int) error {
	return windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_RCVBUF, n)
}

// sockoptRcvBuf reads SO_RCVBUF of the socket fd.
func sockoptRcvBuf(fd uintptr) (int, error) {
	return windows.GetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_RCVBUF)
}

// cpuTime is this process's user and kernel CPU time.
func cpuTime() time.Duration {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) } // 100 ns
	return time.Duration(ticks(kernel)+ticks(user)) * 100
}

// userTime is this process's user CPU time alone.
func userTime() time.Duration {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	return time.Duration(int64(user.HighDateTime)<<32|int64(user.LowDateTime)) * 100
}

// deadTCPPort returns a port on 127.0.0.1 where nothing listens and
// nothing can start listening while the test runs: a socket bound to it
// and never listening holds it, so a connect to it is refused.
func deadTCPPort(t *testing.T) uint16 {
	t.Helper()
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	require.NoError(t, err)
	t.Cleanup(func() { _ = windows.Closesocket(s) })
	require.NoError(t, windows.Bind(s, &windows.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := windows.Getsockname(s)
	require.NoError(t, err)
	return uint16(sa.(*windows.SockaddrInet4).Port)
}
