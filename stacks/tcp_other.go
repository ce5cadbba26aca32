//go:build !linux

package stacks

import (
	"io"
	"net"
	"syscall"
)

// tcpQuiescent answers false: SIOCINQ / SIOCOUTQ are Linux only, so the
// connection always takes the CloseWrite path on Close.
func tcpQuiescent(*net.TCPConn) bool { return false }

// tcpWaitPeerReset answers nil at once: the socket's state (TCP_INFO) is
// read on Linux only, so a half-closed connection notices the peer's RST
// with its next write.
func tcpWaitPeerReset(*net.TCPConn) error { return nil }

// BytesAcked answers false: TCP_INFO's tcpi_bytes_acked is read on Linux
// only.
func BytesAcked(Transport) (n uint64, ok bool) { return 0, false }

// TCPEndOfStream answers io.EOF: the socket's state (TCP_INFO) is read on
// Linux only, so an end of stream is taken for the peer's FIN.
func TCPEndOfStream(syscall.RawConn) error { return io.EOF }
