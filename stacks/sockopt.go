package stacks

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// sockKind tells socketControl which options apply.
type sockKind int

const (
	sockTCP sockKind = iota
	sockUDP
)

// socketControl returns the Control function of a net.Dialer or
// net.ListenConfig that applies opts before connect/bind: SO_BINDTODEVICE,
// DSCP (IP_TOS / IPV6_TCLASS) and, for TCP, TCP_USER_TIMEOUT. It returns
// nil when nothing is to be set.
func socketControl(opts Options, kind sockKind) func(network, address string, c syscall.RawConn) error {
	uto := userTimeout(opts)
	if kind != sockTCP {
		uto = 0
	}
	if opts.Interface == "" && opts.DSCP == 0 && uto == 0 {
		return nil
	}
	if opts.DSCP > 63 {
		return func(string, string, syscall.RawConn) error {
			return fmt.Errorf("DSCP %d out of range 0-63", opts.DSCP)
		}
	}
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = applySockopts(int(fd), network, opts.Interface, opts.DSCP, uto)
		})
		return errors.Join(err, serr)
	}
}

func applySockopts(fd int, network, iface string, dscp uint8, uto time.Duration) error {
	if iface != "" {
		if err := bindToDevice(fd, network, iface); err != nil {
			return fmt.Errorf("bind to interface %s: %w", iface, err)
		}
	}
	if dscp != 0 {
		if err := setDSCP(fd, network, dscp); err != nil {
			return err
		}
	}
	if uto > 0 {
		if err := setUserTimeout(fd, int(uto/time.Millisecond)); err != nil {
			return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
		}
	}
	return nil
}

// userTimeout is the TCP_USER_TIMEOUT opts ask for.
func userTimeout(opts Options) time.Duration {
	if opts.UserTimeout > 0 {
		return opts.UserTimeout
	}
	return opts.ConnTimeout
}

// keepAliveConfig maps opts to Go's keep-alive settings: off unless
// KeepAlive > 0 (RFC 9622 keepAlive default No Preference).
func keepAliveConfig(opts Options) net.KeepAliveConfig {
	if opts.KeepAlive <= 0 {
		return net.KeepAliveConfig{Enable: false, Idle: -1, Interval: -1, Count: -1}
	}
	return net.KeepAliveConfig{Enable: true, Idle: opts.KeepAlive, Interval: opts.KeepAliveInterval}
}

// readSockInfo fills the socket-level fields of info with getsockopt.
func readSockInfo(rc syscall.RawConn, kind sockKind, info *TransportInfo) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = readSockopts(int(fd), kind, info)
	})
	return errors.Join(err, serr)
}
