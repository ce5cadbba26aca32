//go:build unix

package stacktest

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// JoinNetns moves the calling thread into the named namespace (made by
// ip netns add). The caller must have locked its OS thread and must not
// unlock it. It fails with errors.ErrUnsupported outside Linux.
func JoinNetns(ns string) error {
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := setns(fd); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return nil
}
