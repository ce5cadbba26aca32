//go:build unix

package stacks

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Socket options of the POSIX socket API; sockopt_windows.go has
// Windows'.

// setDSCP writes dscp<<2 to IPV6_TCLASS on IPv6 sockets (and IP_TOS too,
// for IPv4-mapped traffic on dual-stack sockets) or to IP_TOS on IPv4
// sockets.
func setDSCP(fd int, network string, dscp uint8) error {
	tos := int(dscp) << 2
	if strings.HasSuffix(network, "6") {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos); err != nil {
			return fmt.Errorf("set IPV6_TCLASS: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos) // dual stack, best effort
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos); err != nil {
		return fmt.Errorf("set IP_TOS: %w", err)
	}
	// an IPv4-mapped address on a dual-stack socket (accepted from a
	// wildcard listener) is an AF_INET6 socket: keep IPV6_TCLASS, which
	// readSockopts reads back there, in step (an AF_INET socket refuses it)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos)
	return nil
}

func readSockopts(fd int, kind sockKind, info *TransportInfo) error {
	domain, err := socketDomain(fd)
	if err != nil {
		return fmt.Errorf("get SO_DOMAIN: %w", err)
	}
	switch domain {
	case unix.AF_INET6:
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS)
		if err != nil {
			return fmt.Errorf("get IPV6_TCLASS: %w", err)
		}
		info.DSCP = uint8(v >> 2)
	case unix.AF_INET:
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS)
		if err != nil {
			return fmt.Errorf("get IP_TOS: %w", err)
		}
		info.DSCP = uint8(v >> 2)
	default:
		return nil // Unix domain: no IP options
	}
	if kind != sockTCP {
		return nil
	}
	// Some kernels do not answer TCP-level options on MPTCP sockets
	// (EOPNOTSUPP): those fields then stay zero.
	uto, err := getUserTimeout(fd)
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("get TCP_USER_TIMEOUT: %w", err)
	}
	info.UserTimeout = time.Duration(uto) * time.Millisecond
	ka, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("get SO_KEEPALIVE: %w", err)
	}
	info.KeepAlive = ka != 0
	if idle, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, tcpKeepIdle); err == nil {
		info.KeepAliveIdle = time.Duration(idle) * time.Second
	}
	if intvl, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL); err == nil {
		info.KeepAliveInterval = time.Duration(intvl) * time.Second
	}
	if rate, err := maxPacingRate(fd); err == nil {
		info.MaxPacingRate = rate
	}
	return nil
}

// setKeepAliveIdle turns keep-alive on with the idle time idle (whole
// seconds) when idle > 0, or off.
func setKeepAliveIdle(fd int, idle time.Duration) error {
	on := 0
	if idle > 0 {
		on = 1
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, tcpKeepIdle, int(idle.Seconds())); err != nil {
			return fmt.Errorf("set %s: %w", tcpKeepIdleName, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, on); err != nil {
		return fmt.Errorf("set SO_KEEPALIVE: %w", err)
	}
	return nil
}

// setReuseAddr sets SO_REUSEADDR on fd (multicast listeners share their
// group's port).
func setReuseAddr(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	return nil
}

// setReusePort sets SO_REUSEADDR and SO_REUSEPORT on fd.
func setReusePort(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", err)
	}
	return nil
}
