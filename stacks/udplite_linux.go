package stacks

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// udpLiteSocket opens a non-blocking UDP-Lite socket of the family of addr
// (IPv6 for the zero Addr, dual-stack), applies opts and binds it to local
// when that is set.
func udpLiteSocket(addr netip.Addr, local netip.AddrPort, opts Options) (int, error) {
	if opts.DSCP > 63 {
		return -1, fmt.Errorf("DSCP %d out of range 0-63", opts.DSCP)
	}
	family, network := unix.AF_INET6, "udp6"
	if addr.IsValid() && addr.Unmap().Is4() {
		family, network = unix.AF_INET, "udp4"
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ipprotoUDPLite)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) {
			return -1, fmt.Errorf("%w: %w", ErrUDPLiteUnsupported, err)
		}
		return -1, fmt.Errorf("UDP-Lite socket: %w", err)
	}
	err = func() error {
		if family == unix.AF_INET6 && !addr.IsValid() {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return fmt.Errorf("clear IPV6_V6ONLY: %w", err)
			}
		}
		if err := applySockopts(fd, network, opts.Interface, opts.DSCP, 0); err != nil {
			return err
		}
		if family == unix.AF_INET6 {
			if err := setAddrPreferences(fd, opts.TemporaryAddress); err != nil { // useTemporaryLocalAddress
				return err
			}
		}
		if opts.SendChecksumLen != 0 {
			if err := setCoverage(fd, udpliteSendCscov, opts.SendChecksumLen); err != nil {
				return err
			}
		}
		// always: 0, full coverage (recvChecksumLen's default), is a
		// minimum too, which the kernel checks only once the option is
		// set (without it any coverage is taken)
		if err := setCoverage(fd, udpliteRecvCscov, opts.RecvChecksumLen); err != nil {
			return err
		}
		if local.Addr().IsMulticast() { // a multicast listener (multicast.go)
			if err := setReuseAddr(fd); err != nil {
				return err
			}
			local = multicastBindAddr(local)
		}
		if local.IsValid() || local.Port() != 0 {
			if err := unix.Bind(fd, sockaddrOf(family, local)); err != nil {
				return fmt.Errorf("bind %s: %w", local, err)
			}
		}
		return nil
	}()
	if err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
