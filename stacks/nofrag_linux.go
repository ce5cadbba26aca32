package stacks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dfOption is the socket option that controls source fragmentation of
// one address family: IP_MTU_DISCOVER, or IPV6_MTU_DISCOVER.
func dfOption(v4 bool) (level, name int, optName string) {
	if v4 {
		return unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, "IP_MTU_DISCOVER"
	}
	return unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER"
}

// setDF sets IP_PMTUDISC_DO / IPV6_PMTUDISC_DO (on), or orig.
func setDF(fd int, v4, on bool, orig int) error {
	level, name, optName := dfOption(v4)
	v := orig
	if on {
		v = unix.IP_PMTUDISC_DO // IPV6_PMTUDISC_DO has the same value
	}
	if err := unix.SetsockoptInt(fd, level, name, v); err != nil {
		return fmt.Errorf("set %s: %w", optName, err)
	}
	return nil
}

// pathMTU reads the path MTU of a connected socket (IP_MTU / IPV6_MTU).
func pathMTU(fd int, v4 bool) (int, error) {
	if v4 {
		return unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
	}
	return unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU)
}

// keepStreamDF switches a TCP socket in IP_PMTUDISC_DONT to
// IP_PMTUDISC_WANT (path MTU discovery, DF set); see KeepStreamDF.
func keepStreamDF(fd int, v4 bool) error {
	level, name, optName := dfOption(v4)
	v, err := unix.GetsockoptInt(fd, level, name)
	if err != nil {
		return fmt.Errorf("get %s: %w", optName, err)
	}
	if v != unix.IP_PMTUDISC_DONT { // IPV6_PMTUDISC_DONT has the same value
		return nil
	}
	if err := unix.SetsockoptInt(fd, level, name, unix.IP_PMTUDISC_WANT); err != nil {
		return fmt.Errorf("set %s: %w", optName, err)
	}
	return nil
}
