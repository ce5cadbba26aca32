package stacks

import (
	"net"
	"os"
	"syscall"
	"unsafe"

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

// BytesAcked reports how many bytes of t's stream the peer has
// acknowledged (TCP_INFO tcpi_bytes_acked), for TCP and TLS transports;
// ok is false for other transports or when the socket does not tell.
func BytesAcked(t Transport) (n uint64, ok bool) {
	var c *net.TCPConn
	switch t := t.(type) {
	case *tcpTransport:
		c = t.TCPConn
	case *tlsTransport:
		c = t.tcp
	}
	if c == nil {
		return 0, false
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	_ = rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			n, ok = info.Bytes_acked, true
		}
	})
	return n, ok
}

// tcpWaitPeerReset waits for the peer's RST on c, whose peer's FIN was
// read (CLOSE_WAIT): the socket turns TCP_CLOSE with an error pending
// (the kernel gives EPIPE for a reset in CLOSE_WAIT, ECONNRESET
// otherwise), reported as ECONNRESET. The poller wakes the wait at every
// change of the socket's state; nothing is read. It returns nil once c
// is closed, or when the socket closes without an error (this side's FIN
// was acknowledged, or a write took the error first and reports it).
func tcpWaitPeerReset(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var reset error
	err = rc.Read(func(fd uintptr) bool {
		state, err := tcpState(int(fd))
		if err != nil {
			return true
		}
		if state != unix.BPF_TCP_CLOSE {
			return false // wait for the socket's next event
		}
		if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			reset = os.NewSyscallError("recv", unix.ECONNRESET)
		}
		return true
	})
	if err != nil {
		return nil // closed by this side
	}
	return reset
}

// TCPEndedUnder tells, for a TCP socket (rc) whose read has just returned
// the end of the stream, whether the socket itself has ended (TCP_INFO's
// tcpi_state is TCP_CLOSE), and the socket's error still pending, taken
// (SO_ERROR; 0 when a call took it first). A peer's FIN leaves a socket
// whose sending side is open in CLOSE_WAIT; the kernel also shuts down the
// receiving side of a socket that a reset, TCP_USER_TIMEOUT or the
// retransmission timeout ends (TCP_CLOSE), and a read then returns the end
// of the stream once a write took the error. A socket whose sending side
// this side shut down is TCP_CLOSE after a graceful exchange too (its
// TIME_WAIT is a separate socket): the caller tells that case apart. It
// answers false for a socket that is not TCP or when it cannot tell. Only
// an end of stream calls it (a system call or two).
func TCPEndedUnder(rc syscall.RawConn) (ended bool, pending syscall.Errno) {
	_ = rc.Control(func(fd uintptr) {
		state, err := tcpState(int(fd))
		if err != nil || state != unix.BPF_TCP_CLOSE {
			return
		}
		ended = true
		if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			pending = syscall.Errno(e)
		}
	})
	return ended, pending
}

// tcpState reads the TCP state of the socket fd: TCP_INFO's first byte
// (tcpi_state), read alone, where GetsockoptTCPInfo allocates and copies
// the whole structure (the peer-reset watch reads it at every event of
// the socket).
func tcpState(fd int) (uint8, error) {
	var b [8]byte
	n := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	if n < 1 {
		return 0, unix.EINVAL
	}
	return b[0], nil
}
