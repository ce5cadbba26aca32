package taps

import (
	"net"
	"syscall"
)

// corkTCP holds c's output until it is shut down (TCP_CORK), so that the
// bytes written next and the FIN go out in one segment.
func corkTCP(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
	}); err != nil {
		return err
	}
	return serr
}
