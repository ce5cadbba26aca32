package stacks

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/windows"
)

// Per-datagram TOS / ECN on Windows: neither received nor sent. Winsock
// has no IP_TOS / IPV6_TCLASS control messages of the POSIX kind, so
// ReadMsg reports TOS 0 ("the kernel did not say") and WriteMsg fails
// with errors.ErrUnsupported; the socket's own DSCP (Options.DSCP) is
// still set (setDSCP).

// msgTrunc is the WSARecvMsg flag of a datagram longer than the buffer.
const msgTrunc = windows.MSG_TRUNC

// enableRecvTOS does nothing on Windows: see above.
func enableRecvTOS(int) error { return nil }

// tosOOBSpace: no TOS control message is received on Windows.
const tosOOBSpace = 0

// parseTOS finds nothing on Windows: 0.
func parseTOS([]byte) uint8 { return 0 }

// tosOOB fails with errors.ErrUnsupported: a datagram cannot carry its own
// TOS byte on Windows.
func tosOOB(netip.Addr, uint8) ([]byte, error) {
	return nil, fmt.Errorf("per-datagram TOS / ECN (IP_TOS / IPV6_TCLASS control message): %w on windows", errors.ErrUnsupported)
}
