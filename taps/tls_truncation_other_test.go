//go:build !linux

package taps

import "net"

// corkTCP does nothing here: the bytes written next and the FIN may go out
// in two segments (still before the peer reads, on loopback, mostly).
func corkTCP(*net.TCPConn) error { return nil }
