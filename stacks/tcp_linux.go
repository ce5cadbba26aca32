package stacks

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpQuiescent reports whether c has no received byte unread (SIOCINQ) and
// every byte it sent acknowledged by the peer (SIOCOUTQ counts the unsent
// and the unacknowledged ones). Any error answers false.
func tcpQuiescent(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	_ = rc.Control(func(fd uintptr) {
		in, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil || in != 0 {
			return
		}
		out, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		quiet = err == nil && out == 0
	})
	return quiet
}
