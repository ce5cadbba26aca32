package stacks

import (
	"errors"
	"fmt"
	"math"
	"syscall"

	"golang.org/x/sys/unix"
)

// setPacingRate sets SO_MAX_PACING_RATE in bytes per second (unlimited
// for 0).
func setPacingRate(c syscall.Conn, bitsPerSec uint64) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	bytesPerSec := uint64(math.MaxUint64) // unlimited: ~0UL
	if bitsPerSec > 0 {
		bytesPerSec = max(bitsPerSec/8, 1)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE, bytesPerSec)
	})
	if serr != nil {
		if errors.Is(serr, unix.ENOPROTOOPT) || errors.Is(serr, unix.EOPNOTSUPP) {
			return fmt.Errorf("set SO_MAX_PACING_RATE: %w (%w)", ErrPacingUnsupported, serr)
		}
		return fmt.Errorf("set SO_MAX_PACING_RATE: %w", serr)
	}
	return err
}

// maxPacingRate reads SO_MAX_PACING_RATE back in bit/s (0 = unlimited).
func maxPacingRate(fd int) (uint64, error) {
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE)
	if err != nil {
		return 0, err
	}
	if v == math.MaxUint64 || v == math.MaxUint32 {
		return 0, nil
	}
	return v * 8, nil
}
