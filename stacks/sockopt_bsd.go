//go:build unix && !linux && !darwin

package stacks

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

const (
	tcpKeepIdle     = unix.TCP_KEEPIDLE // keep-alive idle time, seconds
	tcpKeepIdleName = "TCP_KEEPIDLE"
	ipTOSCmsgLen    = 1 // IP_TOS control message data length on send (a byte)
)

// bindToDevice: there is no per-socket interface binding here.
func bindToDevice(int, string, string) error {
	return fmt.Errorf("binding a socket to an interface is not supported on this system: %w", errors.ErrUnsupported)
}
