package taps

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// listeningFD finds this process's listening TCP socket on port (Linux:
// /proc/self/fd).
func listeningFD(t *testing.T, port uint16) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on == 0 {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*unix.SockaddrInet4); ok && in4.Port == int(port) {
			return fd
		}
	}
	t.Fatalf("no listening socket on port %d", port)
	return -1
}

// TestListenerOnStoppedAfterAFailure: a Listener whose accept fails for
// good (its socket shut down under it: accept returns EINVAL) stops with
// an *EstablishmentError that unwraps to the accept's error, given to
// OnStopped and kept by Err; Accept then returns it too.
func TestListenerOnStoppedAfterAFailure(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	stopped := make(chan error, 1)
	ln.OnStopped(func(_ *Listener, err error) { stopped <- err })
	fd := listeningFD(t, listenerAddr(t, ln).Port())
	require.NoError(t, unix.Shutdown(fd, unix.SHUT_RD)) // the listener's accept fails with EINVAL

	err := <-stopped
	var ee *EstablishmentError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.ErrorIs(t, err, syscall.EINVAL)
	require.ErrorIs(t, ln.Err(), syscall.EINVAL)
	<-ln.Done()
	_, err = ln.Accept(testCtx(t))
	require.ErrorIs(t, err, syscall.EINVAL)
}
