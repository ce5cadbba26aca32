package actors

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// unixWaitPeerClose waits for the peer of a Unix stream socket, whose end
// of stream was read, to close its socket: the kernel then shuts down both
// directions of this one (POLLHUP), with ECONNRESET pending when the peer
// left data unread. The poller wakes the wait at every change of the
// socket's state; nothing is read. ended is false once this side closed
// the socket (or the wait cannot go on); err is the reset.
func unixWaitPeerClose(rc syscall.RawConn) (ended bool, err error) {
	werr := rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd)}} // POLLHUP is always reported
		n, perr := unix.Poll(fds, 0)
		if perr != nil {
			return !errors.Is(perr, unix.EINTR) // EINTR: the next event asks again
		}
		if n == 0 || fds[0].Revents&unix.POLLHUP == 0 {
			return false // wait for the socket's next event
		}
		ended = true
		if e, gerr := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && e != 0 {
			err = os.NewSyscallError("recv", syscall.Errno(e))
		}
		return true
	})
	if werr != nil {
		return false, nil // closed by this side
	}
	return ended, err
}
