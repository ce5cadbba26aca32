//go:build !linux

package stacks

import (
	"errors"
	"fmt"
	"syscall"
)

// setPacingRate: SO_MAX_PACING_RATE is Linux only. Like a Linux kernel
// without it, this reports ErrPacingUnsupported.
func setPacingRate(syscall.Conn, uint64) error {
	return fmt.Errorf("set SO_MAX_PACING_RATE: %w (%w)", ErrPacingUnsupported, errors.ErrUnsupported)
}

// maxPacingRate: SO_MAX_PACING_RATE is Linux only (TransportInfo's
// MaxPacingRate stays 0).
func maxPacingRate(int) (uint64, error) { return 0, errors.ErrUnsupported }
