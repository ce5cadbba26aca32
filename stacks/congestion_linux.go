package stacks

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// congestionFiles are where Linux lists the congestion controls it offers
// and its default (variables: tests point them elsewhere).
var (
	availableCongestionFile = "/proc/sys/net/ipv4/tcp_available_congestion_control"
	defaultCongestionFile   = "/proc/sys/net/ipv4/tcp_congestion_control"
)

// CongestionAvailable reports whether the kernel offers the named TCP
// congestion control (its module is loaded or built in).
func CongestionAvailable(name string) bool {
	b, err := os.ReadFile(availableCongestionFile)
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}

// setCongestion sets TCP_CONGESTION to name when the kernel offers it; ""
// restores the system default on a socket that has another one.
func setCongestion(fd int, name string) error {
	if name == "" {
		b, err := os.ReadFile(defaultCongestionFile)
		if err != nil {
			return nil // no default to restore to: leave the socket alone
		}
		cur, err := getCongestion(fd)
		name = strings.TrimSpace(string(b))
		if err != nil || cur == name || name == "" {
			return nil
		}
	} else if !CongestionAvailable(name) {
		return nil // not offered: the caller's fallback (DSCP) stands
	}
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, name); err != nil {
		return fmt.Errorf("set TCP_CONGESTION %q: %w", name, err)
	}
	return nil
}

func getCongestion(fd int) (string, error) {
	name, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	if err != nil {
		return "", fmt.Errorf("get TCP_CONGESTION: %w", err)
	}
	return strings.TrimRight(name, "\x00"), nil
}
