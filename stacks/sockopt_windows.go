package stacks

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// Socket options of Windows (Winsock); sockopt_posix.go has the POSIX
// ones. fd is a Winsock SOCKET handle here.

const (
	tcpKeepIdle     = windows.TCP_KEEPIDLE // keep-alive idle time, seconds
	tcpKeepIdleName = "TCP_KEEPIDLE"
	ipv6TClass      = 39 // IPV6_TCLASS (ws2ipdef.h); golang.org/x/sys/windows does not define it
)

// bindToDevice: Windows has no SO_BINDTODEVICE; Options.Interface fails
// with errors.ErrUnsupported.
func bindToDevice(int, string, string) error {
	return fmt.Errorf("binding a socket to an interface is not supported on windows: %w", errors.ErrUnsupported)
}

// setUserTimeout: TCP_USER_TIMEOUT is Linux only. As on the other systems
// without it the setting is ignored: the connection is made, its user
// timeout reads back as 0 (getUserTimeout), and Windows' own
// retransmission limits apply.
func setUserTimeout(int, int) error { return nil }

// getUserTimeout: TCP_USER_TIMEOUT is Linux only (TransportInfo's
// UserTimeout stays 0).
func getUserTimeout(int) (int, error) {
	return 0, fmt.Errorf("TCP_USER_TIMEOUT: %w", errors.ErrUnsupported)
}

// setDSCP writes dscp<<2 to IPV6_TCLASS on IPv6 sockets (and IP_TOS too,
// for IPv4-mapped traffic on dual-stack sockets) or to IP_TOS on IPv4
// sockets. Windows may accept the option and still send with the DSCP its
// QoS policy chooses.
func setDSCP(fd int, network string, dscp uint8) error {
	s := windows.Handle(fd)
	tos := int(dscp) << 2
	if strings.HasSuffix(network, "6") {
		if err := windows.SetsockoptInt(s, windows.IPPROTO_IPV6, ipv6TClass, tos); err != nil {
			return fmt.Errorf("set IPV6_TCLASS: %w", err)
		}
		_ = windows.SetsockoptInt(s, windows.IPPROTO_IP, windows.IP_TOS, tos) // dual stack, best effort
		return nil
	}
	if err := windows.SetsockoptInt(s, windows.IPPROTO_IP, windows.IP_TOS, tos); err != nil {
		return fmt.Errorf("set IP_TOS: %w", err)
	}
	return nil
}

// readSockopts fills the DSCP and, on TCP, the keep-alive fields of info
// with getsockopt. The user timeout and the pacing rate stay 0 (no
// TCP_USER_TIMEOUT or SO_MAX_PACING_RATE on Windows).
func readSockopts(fd int, kind sockKind, info *TransportInfo) error {
	s := windows.Handle(fd)
	sa, err := windows.Getsockname(s)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	switch sa.(type) {
	case *windows.SockaddrInet6:
		v, err := windows.GetsockoptInt(s, windows.IPPROTO_IPV6, ipv6TClass)
		if err != nil {
			return fmt.Errorf("get IPV6_TCLASS: %w", err)
		}
		info.DSCP = uint8(v >> 2)
	case *windows.SockaddrInet4:
		v, err := windows.GetsockoptInt(s, windows.IPPROTO_IP, windows.IP_TOS)
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
	ka, err := windows.GetsockoptInt(s, windows.SOL_SOCKET, windows.SO_KEEPALIVE)
	if err != nil {
		return fmt.Errorf("get SO_KEEPALIVE: %w", err)
	}
	info.KeepAlive = ka != 0
	if idle, err := windows.GetsockoptInt(s, windows.IPPROTO_TCP, tcpKeepIdle); err == nil {
		info.KeepAliveIdle = time.Duration(idle) * time.Second
	}
	if intvl, err := windows.GetsockoptInt(s, windows.IPPROTO_TCP, windows.TCP_KEEPINTVL); err == nil {
		info.KeepAliveInterval = time.Duration(intvl) * time.Second
	}
	return nil
}

// setKeepAliveIdle turns keep-alive on with the idle time idle (whole
// seconds) when idle > 0, or off.
func setKeepAliveIdle(fd int, idle time.Duration) error {
	s := windows.Handle(fd)
	on := 0
	if idle > 0 {
		on = 1
		if err := windows.SetsockoptInt(s, windows.IPPROTO_TCP, tcpKeepIdle, int(idle.Seconds())); err != nil {
			return fmt.Errorf("set %s: %w", tcpKeepIdleName, err)
		}
	}
	if err := windows.SetsockoptInt(s, windows.SOL_SOCKET, windows.SO_KEEPALIVE, on); err != nil {
		return fmt.Errorf("set SO_KEEPALIVE: %w", err)
	}
	return nil
}

// setReuseAddr sets SO_REUSEADDR on fd (multicast listeners share their
// group's port).
func setReuseAddr(fd int) error {
	if err := windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	return nil
}

// setReusePort: Windows has no SO_REUSEPORT (and its SO_REUSEADDR lets
// another socket take the port over), so Options.ReusePort fails with
// errors.ErrUnsupported.
func setReusePort(int) error {
	return fmt.Errorf("SO_REUSEPORT: %w on windows", errors.ErrUnsupported)
}
