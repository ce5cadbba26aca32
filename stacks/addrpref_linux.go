//go:build linux

package stacks

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Source address preference flags of IPV6_ADDR_PREFERENCES (RFC 5014,
// linux/in6.h); golang.org/x/sys/unix does not define them.
const (
	IPv6PreferSrcTmp    = 0x0001
	IPv6PreferSrcPublic = 0x0002
)

// addrPrefFlags maps a useTemporaryLocalAddress preference to the
// IPV6_ADDR_PREFERENCES flag: Require and Prefer ask for a temporary
// source address, Avoid and Prohibit for a public one; NoPreference
// leaves the system default (0).
func addrPrefFlags(pref int8) int {
	switch {
	case pref >= Prefer:
		return IPv6PreferSrcTmp
	case pref <= Avoid:
		return IPv6PreferSrcPublic
	}
	return 0
}

// setAddrPreferences sets IPV6_ADDR_PREFERENCES on an IPv6 socket for a
// useTemporaryLocalAddress preference. MPTCP sockets refuse the option
// (ENOPROTOOPT): it is skipped there, the candidate planner pins the
// source address itself when the preference is Require or Prohibit.
func setAddrPreferences(fd int, pref int8) error {
	flags := addrPrefFlags(pref)
	if flags == 0 {
		return nil
	}
	err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_ADDR_PREFERENCES, flags)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("set IPV6_ADDR_PREFERENCES: %w", err)
	}
	return nil
}

// withPathControl returns ctrl followed by the path options of opts that
// socketControl does not apply: IPV6_ADDR_PREFERENCES on IPv6 sockets
// (Options.TemporaryAddress). It returns ctrl itself when there is nothing
// to add.
func withPathControl(ctrl func(network, address string, c syscall.RawConn) error, opts Options) func(network, address string, c syscall.RawConn) error {
	if addrPrefFlags(opts.TemporaryAddress) == 0 {
		return ctrl
	}
	return func(network, address string, c syscall.RawConn) error {
		if ctrl != nil {
			if err := ctrl(network, address, c); err != nil {
				return err
			}
		}
		if !strings.HasSuffix(network, "6") { // "tcp4", "udp4": no IPv6 source to choose
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) { serr = setAddrPreferences(int(fd), opts.TemporaryAddress) })
		return errors.Join(err, serr)
	}
}

// AddrPreferences reads IPV6_ADDR_PREFERENCES of an IPv6 socket (the
// kernel adds its defaults, such as IPV6_PREFER_SRC_HOME 0x0400).
func AddrPreferences(rc syscall.RawConn) (int, error) {
	var v int
	var serr error
	err := rc.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_ADDR_PREFERENCES)
	})
	return v, errors.Join(err, serr)
}

// BoundInterface reads SO_BINDTODEVICE of a socket: the interface it is
// bound to, "" for none.
func BoundInterface(rc syscall.RawConn) (string, error) {
	var v string
	var serr error
	err := rc.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	})
	return v, errors.Join(err, serr)
}
