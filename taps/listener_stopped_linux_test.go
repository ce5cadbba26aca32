package taps

import (
	"errors"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestListenerOnStoppedAfterAFailure: a Listener whose accept fails for
// good (its socket shut down under it: accept returns EINVAL) stops with
// an *EstablishmentError that unwraps to the accept's error, given to
// OnStopped and kept by Err; Accept then returns it too.
func TestListenerOnStoppedAfterAFailure(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	stopped := make(chan error, 1)
	ln.OnStopped(func(_ *Listener, err error) { stopped <- err })
	fd := findSocket(t, unix.SOCK_STREAM, listenerAddr(t, ln), func(fd int) bool {
		on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		return err == nil && on == 1
	})
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
