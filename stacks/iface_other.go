//go:build !linux

package stacks

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Outside Linux there is no route lookup, source address preference or
// interface binding here: these stubs keep the path planner compiling and
// report what they cannot do.

// Source address preference flags of IPV6_ADDR_PREFERENCES (RFC 5014).
const (
	IPv6PreferSrcTmp    = 0x0001
	IPv6PreferSrcPublic = 0x0002
)

var errPathUnsupported = errors.New("not supported on this system")

func interfaceKind(_ string, flags net.Flags) string {
	if flags&net.FlagLoopback != 0 {
		return KindLoopback
	}
	return ""
}

// LookupRoute is not supported outside Linux.
func LookupRoute(dst, src netip.Addr, iface string) (Route, error) {
	return Route{}, errPathUnsupported
}

// SourceAddress connects a UDP socket to dst (nothing is sent) and returns
// its local address; iface and pref are not applied outside Linux.
func SourceAddress(dst netip.AddrPort, src netip.Addr, iface string, pref int8) (netip.Addr, error) {
	if iface != "" {
		return netip.Addr{}, errPathUnsupported
	}
	var d net.Dialer
	if src.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	c, err := d.Dial("udp", dst.String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), nil
}

// IsTemporaryAddress cannot tell outside Linux.
func IsTemporaryAddress(a netip.Addr) (bool, error) { return false, errPathUnsupported }

func setAddrPreferences(int, int8) error { return nil }

func withPathControl(ctrl func(network, address string, c syscall.RawConn) error, _ Options) func(network, address string, c syscall.RawConn) error {
	return ctrl
}

// AddrPreferences is not supported outside Linux.
func AddrPreferences(syscall.RawConn) (int, error) { return 0, errPathUnsupported }

// BoundInterface is not supported outside Linux.
func BoundInterface(syscall.RawConn) (string, error) { return "", errPathUnsupported }
