//go:build !(linux || darwin || openbsd)

package actors

import (
	"net"
	"syscall"
)

// tryWritev is not available here: everything goes to the writer
// goroutine.
func tryWritev(_ syscall.RawConn, _ *net.Buffers) (blocked bool, err error) { return true, nil }

const rawReadable = false

func rawRead(syscall.RawConn) ([]byte, error) { return nil, nil }
