package stacks

import (
	"io"
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

// TCPEndOfStream is the error of a read of the TCP socket rc that
// returned the end of the stream (0 bytes), when this side has not shut
// its sending side down: io.EOF for the peer's FIN (the socket is then in
// CLOSE_WAIT), else the socket has ended under the stream (TCP_CLOSE) and
// this is its error still pending, taken (a reset in CLOSE_WAIT, the peer
// having sent its FIN first, pends as EPIPE: reported as ECONNRESET), or
// ErrEndedWithoutFIN when a call took it first. The kernel shuts down the
// receiving side of a socket that a reset, TCP_USER_TIMEOUT or the
// retransmission timeout ends, and hands its error to one call only: when
// a write took it, a read returns an end of stream though no FIN came.
// Once this side's FIN went out the socket is TCP_CLOSE after a graceful
// exchange too (its TIME_WAIT is a socket of its own), which is why the
// caller must not ask then, nor trust an answer other than io.EOF when
// its sending side may have been shut down while it asked (it marks that
// before the shutdown, and looks at the mark again after the call). A
// socket that is not TCP, or whose state cannot be read, gives io.EOF.
// It costs a system call or two: call it only at an end of stream.
func TCPEndOfStream(rc syscall.RawConn) error {
	ended, pending := tcpEndedUnder(rc)
	switch {
	case !ended:
		return io.EOF
	case pending == syscall.EPIPE:
		pending = syscall.ECONNRESET
	case pending == 0:
		return ErrEndedWithoutFIN
	}
	return os.NewSyscallError("read", pending)
}

// tcpEndedUnder tells whether the TCP socket of rc has ended (TCP_INFO's
// tcpi_state is TCP_CLOSE), and its error still pending, taken (SO_ERROR;
// 0 when a call took it first). False for a socket that is not TCP or
// when it cannot tell.
func tcpEndedUnder(rc syscall.RawConn) (ended bool, pending syscall.Errno) {
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
