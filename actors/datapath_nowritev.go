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

type writevOp struct{}

func (*writevOp) write(rc syscall.RawConn, bufs *net.Buffers) (bool, error) {
	return tryWritev(rc, bufs)
}

type rawReadOp struct{ limit int }

func (*rawReadOp) read(rc syscall.RawConn, _ []byte) ([]byte, error) { return rawRead(rc) }
