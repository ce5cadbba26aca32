package stacks

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// isSoftErrno tells whether a Read or Write error is a pending ICMP error
// rather than a failure of the socket. onRead also accepts WSAEMSGSIZE,
// which on a write means the datagram itself is too large.
func isSoftErrno(err error, onRead bool) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case windows.WSAECONNREFUSED, windows.WSAEHOSTUNREACH, windows.WSAENETUNREACH,
		windows.WSAEHOSTDOWN, windows.WSAECONNRESET, windows.WSAENETRESET:
		return true
	case windows.WSAEMSGSIZE:
		return onRead
	}
	return false
}

// softErrorsDelivered is false: without an error queue no stack provides
// softErrorNotify.
const softErrorsDelivered = false

// enableRecvErr does nothing: Windows has no IP_RECVERR error queue, so
// SoftErrors channels never deliver there (and Go turns off the ICMP
// port-unreachable reports of UDP sockets, SIO_UDP_CONNRESET).
func enableRecvErr(int) error { return nil }

// drainErrQueue finds nothing: there is no error queue.
func drainErrQueue(syscall.RawConn) []*SoftError { return nil }
