//go:build linux || darwin || openbsd

package actors

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/gotaps/gotaps/stacks"
	"golang.org/x/sys/unix"
)

// maxIovecs bounds the buffers of one writev call (IOV_MAX is 1024).
const maxIovecs = 1024

// tryWritev writes as much of bufs as the socket takes now, without
// waiting: it returns with bufs empty (all written), with blocked true (the
// socket buffer is full; bufs holds the rest), or with an error.
func tryWritev(rc syscall.RawConn, bufs *net.Buffers) (blocked bool, err error) {
	var op writevOp
	return op.write(rc, bufs)
}

// writevOp is tryWritev with its state kept, so that a connection writes
// without allocating: the callback handed to RawConn.Write and the iovec
// array are made once.
type writevOp struct {
	bufs    net.Buffers
	blocked bool
	err     error
	iov     []unix.Iovec
	fn      func(fd uintptr) bool
}

func (op *writevOp) write(rc syscall.RawConn, bufs *net.Buffers) (blocked bool, err error) {
	if op.fn == nil {
		op.fn = op.do
	}
	op.bufs, op.blocked, op.err = *bufs, false, nil
	cerr := rc.Write(op.fn)
	*bufs, op.bufs = op.bufs, nil
	if cerr != nil {
		return false, cerr
	}
	return op.blocked, op.err
}

func (op *writevOp) do(fd uintptr) bool {
	bufs := &op.bufs
	for len(*bufs) > 0 {
		var n int
		var e error
		if len(*bufs) == 1 {
			n, e = unix.Write(int(fd), (*bufs)[0])
		} else {
			n, e = op.writev(fd, *bufs)
		}
		switch {
		case e == nil:
			stacks.ConsumeBuffers(bufs, n)
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			op.blocked = true
			return true
		default:
			op.err = os.NewSyscallError("writev", e)
			return true
		}
	}
	return true
}

// writev is one writev(2) call on at most maxIovecs buffers, with the
// iovec array reused.
func (op *writevOp) writev(fd uintptr, bufs net.Buffers) (int, error) {
	op.iov = op.iov[:0]
	for _, b := range bufs {
		if len(op.iov) == maxIovecs {
			break
		}
		if len(b) == 0 {
			continue
		}
		var v unix.Iovec
		v.Base = &b[0]
		v.SetLen(len(b))
		op.iov = append(op.iov, v)
	}
	if len(op.iov) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&op.iov[0])), uintptr(len(op.iov)))
	clear(op.iov) // do not keep the buffers reachable
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// readTarget is do for a read into the lent target.
func (op *rawReadOp) readTarget(fd uintptr) bool {
	for {
		n, e := unix.Read(int(fd), op.tgt)
		switch {
		case e == nil && n > 0:
			op.data = op.tgt[:n:n]
		case e == nil:
			op.err = io.EOF
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return false
		default:
			op.err = os.NewSyscallError("read", e)
		}
		return true
	}
}

// rawReadable: rawRead is available.
const rawReadable = true

// rawRead waits until the socket is readable, then reads into a pooled
// buffer. A full chunk is handed over as it is; anything smaller is copied
// out and the buffer goes back to the pool.
func rawRead(rc syscall.RawConn) ([]byte, error) {
	var op rawReadOp
	return op.read(rc, nil)
}

// rawReadOp is rawRead with its callback made once (a reader reads without
// allocating anything but the data it returns).
type rawReadOp struct {
	data []byte
	err  error
	tgt  []byte // where to read, when a framer lent its buffer
	// limit, when not 0, bounds a read into a pooled buffer
	limit int
	fn    func(fd uintptr) bool
}

// read reads what the socket has: into tgt when it is not nil (the data
// returned is then a prefix of tgt), into a pooled buffer otherwise.
func (op *rawReadOp) read(rc syscall.RawConn, tgt []byte) ([]byte, error) {
	if op.fn == nil {
		op.fn = op.do
	}
	op.data, op.err, op.tgt = nil, nil, tgt
	err := rc.Read(op.fn)
	data, rerr := op.data, op.err
	op.data, op.err, op.tgt = nil, nil, nil
	if err != nil {
		return nil, err
	}
	return data, rerr
}

func (op *rawReadOp) do(fd uintptr) bool {
	if op.tgt != nil {
		return op.readTarget(fd)
	}
	bp := readBufs.Get().(*[]byte)
	buf := *bp
	if op.limit > 0 && op.limit < len(buf) {
		buf = buf[:op.limit] // never a full chunk: copied out below
	}
	for {
		n, e := unix.Read(int(fd), buf)
		switch {
		case e == nil && n == len(*bp):
			op.data = buf // handed over: the pool makes a new one
			return true
		case e == nil && n > 0:
			op.data = copyOut(buf[:n])
		case e == nil:
			op.err = io.EOF
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			readBufs.Put(bp)
			return false // wait for readability without holding the buffer
		default:
			op.err = os.NewSyscallError("read", e)
		}
		readBufs.Put(bp)
		return true
	}
}
