//go:build !linux

package stacks

import (
	"errors"
	"fmt"
	"net"
)

// tcpRetrans: TCP_INFO with Linux's retransmission counters is Linux only;
// this fails like a kernel that refuses TCP_INFO (the counters are
// unknown, no retransmission event is raised).
func tcpRetrans(*net.TCPConn) (RetransmitCounts, error) {
	return RetransmitCounts{}, fmt.Errorf("get TCP_INFO: %w", errors.ErrUnsupported)
}
