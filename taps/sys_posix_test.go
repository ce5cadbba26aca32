//go:build unix

package taps

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Test helpers over the POSIX socket and process API; sys_windows_test.go
// has Windows'.

// setRcvBuf sets SO_RCVBUF of the socket fd to n bytes.
func setRcvBuf(fd uintptr, n int) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// sockoptRcvBuf reads SO_RCVBUF of the socket fd.
func sockoptRcvBuf(fd uintptr) (int, error) {
	return unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userTime is this process's user CPU time alone (the system time also
// holds the kernel's work for packets of other processes that it happened
// to run: on loopback, the peer's).
func userTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano())
}

// deadTCPPort returns a port on 127.0.0.1 where nothing listens and
// nothing can start listening while the test runs: a socket bound to it
// without SO_REUSEADDR or SO_REUSEPORT and never listening holds it, so a
// connect to it is refused. A port found free and released (freeTCPPorts)
// may be taken meanwhile by another test process's listener, which a
// rendezvous would then connect to.
func deadTCPPort(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	return uint16(sa.(*unix.SockaddrInet4).Port)
}
