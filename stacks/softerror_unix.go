//go:build unix && !linux

package stacks

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// isSoftErrno tells whether a Read or Write error is a pending ICMP error
// (so_error) rather than a failure of the socket. onRead also accepts
// EMSGSIZE, which on a write means the datagram itself is too large.
func isSoftErrno(err error, onRead bool) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN,
		unix.EPROTO, unix.ECONNRESET:
		return true
	case unix.EMSGSIZE:
		return onRead
	}
	return false
}

// softErrorsDelivered is false: without an error queue no stack provides
// softErrorNotify.
const softErrorsDelivered = false

// enableRecvErr does nothing: there is no IP_RECVERR error queue outside
// Linux. ICMP errors still surface on connected sockets as errors of a
// Read or Write, which isSoftErrno swallows, but SoftErrors channels never
// deliver.
func enableRecvErr(int) error { return nil }

// drainErrQueue finds nothing: there is no error queue.
func drainErrQueue(syscall.RawConn) []*SoftError { return nil }
