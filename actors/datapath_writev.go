//go:build linux || darwin || openbsd

package actors

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxIovecs bounds the buffers of one writev call (IOV_MAX is 1024).
const maxIovecs = 1024

// tryWritev writes as much of bufs as the socket takes now, without
// waiting: it returns with bufs empty (all written), with blocked true (the
// socket buffer is full; bufs holds the rest), or with an error.
func tryWritev(rc syscall.RawConn, bufs *net.Buffers) (blocked bool, err error) {
	var werr error
	cerr := rc.Write(func(fd uintptr) bool {
		for len(*bufs) > 0 {
			iov := *bufs
			if len(iov) > maxIovecs {
				iov = iov[:maxIovecs]
			}
			n, e := unix.Writev(int(fd), iov)
			switch {
			case e == nil:
				consumeBuffers(bufs, n)
			case errors.Is(e, unix.EINTR):
			case errors.Is(e, unix.EAGAIN):
				blocked = true
				return true
			default:
				werr = os.NewSyscallError("writev", e)
				return true
			}
		}
		return true
	})
	if cerr != nil {
		return false, cerr
	}
	return blocked, werr
}

// rawReadable: rawRead is available.
const rawReadable = true

// rawRead waits until the socket is readable, then reads into a pooled
// buffer. A full chunk is handed over as it is; anything smaller is copied
// out and the buffer goes back to the pool.
func rawRead(rc syscall.RawConn) ([]byte, error) {
	var data []byte
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		bp := readBufs.Get().(*[]byte)
		buf := *bp
		for {
			n, e := unix.Read(int(fd), buf)
			switch {
			case e == nil && n == len(buf):
				data = buf // handed over: the pool makes a new one
				return true
			case e == nil && n > 0:
				data = make([]byte, n)
				copy(data, buf[:n])
			case e == nil:
				rerr = io.EOF
			case errors.Is(e, unix.EINTR):
				continue
			case errors.Is(e, unix.EAGAIN):
				readBufs.Put(bp)
				return false // wait for readability without holding the buffer
			default:
				rerr = os.NewSyscallError("read", e)
			}
			readBufs.Put(bp)
			return true
		}
	})
	if err != nil {
		return nil, err
	}
	return data, rerr
}
