package stacks

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// tcpRetrans reads the retransmission counters of c from TCP_INFO.
func tcpRetrans(c *net.TCPConn) (RetransmitCounts, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return RetransmitCounts{}, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return RetransmitCounts{}, err
	}
	if serr != nil {
		return RetransmitCounts{}, fmt.Errorf("get TCP_INFO: %w", serr)
	}
	return RetransmitCounts{Total: info.Total_retrans, Consecutive: info.Retransmits, Backoff: info.Backoff}, nil
}
