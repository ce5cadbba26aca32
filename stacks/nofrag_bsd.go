//go:build darwin || freebsd

package stacks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dfOption is the socket option that forbids source fragmentation of one
// address family: IP_DONTFRAG, or IPV6_DONTFRAG.
func dfOption(v4 bool) (level, name int, optName string) {
	if v4 {
		return unix.IPPROTO_IP, unix.IP_DONTFRAG, "IP_DONTFRAG"
	}
	return unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, "IPV6_DONTFRAG"
}

// setDF sets the don't-fragment flag (on), or orig.
func setDF(fd int, v4, on bool, orig int) error {
	level, name, optName := dfOption(v4)
	v := orig
	if on {
		v = 1
	}
	if err := unix.SetsockoptInt(fd, level, name, v); err != nil {
		return fmt.Errorf("set %s: %w", optName, err)
	}
	return nil
}

// pathMTU: there is no IP_MTU to read here; the error leaves
// FragmentationError.MTU 0.
func pathMTU(int, bool) (int, error) { return 0, unix.ENOPROTOOPT }

// keepStreamDF does nothing: TCP sets DF whenever path MTU discovery is
// on (net.inet.tcp.path_mtu_discovery), a system setting.
func keepStreamDF(int, bool) error { return nil }
