//go:build !linux

package stacks

import "net"

// tcpQuiescent answers false: SIOCINQ / SIOCOUTQ are Linux only, so the
// connection always takes the CloseWrite path on Close.
func tcpQuiescent(*net.TCPConn) bool { return false }
