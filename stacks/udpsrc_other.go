//go:build !linux

package stacks

import (
	"net"
	"net/netip"
)

// Off Linux a wildcard UDP Listener does not learn each datagram's
// destination address (udpsrc_linux.go): its peers are answered from the
// address the kernel picks by route.

const dstOOBSpace = 0

func enableRecvDst(*net.UDPConn) (bool, error) { return false, nil }

func parseTOSDst(oob []byte) (uint8, netip.Addr) { return parseTOS(oob), netip.Addr{} }

func srcOOB(netip.Addr, netip.Addr) []byte { return nil }
