package stacks

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Socket option names and control message levels that differ between
// systems; sockopt_unix.go, sockopt_darwin.go and
// sockopt_bsd.go have the other systems'.
const (
	tcpKeepIdle     = unix.TCP_KEEPIDLE // keep-alive idle time, seconds
	tcpKeepIdleName = "TCP_KEEPIDLE"
	solIP           = unix.SOL_IP
	solIPv6         = unix.SOL_IPV6
	recvTOSType     = unix.IP_TOS // the cmsg type of a received IPv4 TOS byte
	ipTOSCmsgLen    = 4           // IP_TOS control message data length on send (an int)
)

// socketDomain reads the socket's address family (SO_DOMAIN).
func socketDomain(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
}

// bindToDevice binds the socket to the interface named iface
// (SO_BINDTODEVICE).
func bindToDevice(fd int, _ string, iface string) error { return unix.BindToDevice(fd, iface) }

// setUserTimeout sets TCP_USER_TIMEOUT in milliseconds (0: the system
// default). MPTCP sockets refuse the option (EOPNOTSUPP): it is skipped
// there, as on the systems without it (the user timeout reads back as 0).
// Failing would make the net package dial or listen again with plain TCP,
// silently dropping multipath.
func setUserTimeout(fd, ms int) error {
	err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
	if err != nil && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)) {
		if proto, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); perr == nil && proto == unix.IPPROTO_MPTCP {
			return nil
		}
	}
	return err
}

// getUserTimeout reads TCP_USER_TIMEOUT in milliseconds.
func getUserTimeout(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
}
