//go:build unix && !linux

package stacks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Control message levels of the BSD socket API (Linux's SOL_IP and
// SOL_IPV6 have the same values); a received IPv4 TOS byte arrives as
// IP_RECVTOS.
const (
	solIP       = unix.IPPROTO_IP
	solIPv6     = unix.IPPROTO_IPV6
	recvTOSType = unix.IP_RECVTOS
)

// socketDomain finds the socket's address family from its local address
// (there is no SO_DOMAIN here).
func socketDomain(fd int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch sa.(type) {
	case *unix.SockaddrInet4:
		return unix.AF_INET, nil
	case *unix.SockaddrInet6:
		return unix.AF_INET6, nil
	case *unix.SockaddrUnix:
		return unix.AF_UNIX, nil
	}
	return 0, fmt.Errorf("socket address %T: %w", sa, unix.EAFNOSUPPORT)
}

// setUserTimeout: TCP_USER_TIMEOUT is Linux only. Elsewhere the setting
// is ignored, as on a Linux kernel that does not answer it: the connection
// is made, its user timeout reads back as 0 (getUserTimeout), and the
// system's own retransmission limits apply.
func setUserTimeout(int, int) error { return nil }

// getUserTimeout: TCP_USER_TIMEOUT is Linux only; EOPNOTSUPP leaves
// TransportInfo.UserTimeout zero, as on kernels that do not answer.
func getUserTimeout(int) (int, error) { return 0, unix.EOPNOTSUPP }
