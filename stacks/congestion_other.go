//go:build !linux

package stacks

import (
	"errors"
	"fmt"
)

// CongestionAvailable reports whether the kernel offers the named TCP
// congestion control; this system's stacks cannot choose one: false.
func CongestionAvailable(string) bool { return false }

// setCongestion: no TCP_CONGESTION here; the socket keeps its own.
func setCongestion(int, string) error { return nil }

func getCongestion(int) (string, error) {
	return "", fmt.Errorf("get TCP_CONGESTION: %w", errors.ErrUnsupported)
}
