//go:build linux || darwin || freebsd

package stacks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// getDF reads the family's fragmentation setting (dfOption: Linux's path
// MTU discovery mode, or the BSDs' don't-fragment flag), to restore it
// later.
func getDF(fd int, v4 bool) (int, error) {
	level, name, optName := dfOption(v4)
	v, err := unix.GetsockoptInt(fd, level, name)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", optName, err)
	}
	return v, nil
}
