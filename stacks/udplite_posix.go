//go:build unix

package stacks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The UDP-Lite socket calls of the POSIX socket API (udpLiteSocket itself
// is in udplite_linux.go, and fails elsewhere); udplite_windows.go has
// Windows' stubs.

func setCoverage(fd, opt, n int) error {
	if err := unix.SetsockoptInt(fd, solUDPLite, opt, cscov(n)); err != nil {
		name := "UDPLITE_SEND_CSCOV"
		if opt == udpliteRecvCscov {
			name = "UDPLITE_RECV_CSCOV"
		}
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// sockaddrOf is ap as a socket address of the family (IPv4 addresses are
// mapped for AF_INET6; the zero Addr is the wildcard). A zone names the
// interface or, as in the net package, gives its index in decimal.
func sockaddrOf(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port())}
	if ap.Addr().IsValid() {
		sa.Addr = ap.Addr().As16()
		if z := ap.Addr().Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			} else if i, err := strconv.ParseUint(z, 10, 32); err == nil {
				sa.ZoneId = uint32(i)
			}
		}
	}
	return sa
}

// fdToUDPConn hands fd to the Go runtime poller as a *net.UDPConn; fd is
// closed either way.
func fdToUDPConn(fd int) (*net.UDPConn, error) {
	f := os.NewFile(uintptr(fd), "udplite")
	c, err := net.FileConn(f) // dups the descriptor
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("UDP-Lite socket is a %T", c)
	}
	return uc, nil
}

func (udpLiteStack) Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := udpLiteSocket(remote.Addr(), opts.Local, opts)
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET6
	if remote.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	// A datagram socket connects at once: it only records the peer.
	if err := unix.Connect(fd, sockaddrOf(family, remote)); err != nil {
		_ = unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "udplite", Addr: net.UDPAddrFromAddrPort(remote), Err: err}
	}
	uc, err := fdToUDPConn(fd)
	if err != nil {
		return nil, err
	}
	t, err := newUDPTransport(uc, "udplite", opts)
	if err != nil {
		return nil, err
	}
	t.peer = net.UDPAddrFromAddrPort(remote)
	if err := t.sendToGroup(remote.Addr(), opts); err != nil { // multicast.go
		return nil, err
	}
	return &udpLiteTransport{t}, nil
}

func (udpLiteStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := udpLiteSocket(opts.Local.Addr(), opts.Local, opts)
	if err != nil {
		return nil, err
	}
	if !opts.Local.IsValid() && opts.Local.Port() == 0 {
		if err := unix.Bind(fd, &unix.SockaddrInet6{}); err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("bind: %w", err)
		}
	}
	uc, err := fdToUDPConn(fd)
	if err != nil {
		return nil, err
	}
	l, err := newUDPListener(uc, "udplite", opts)
	if err != nil {
		return nil, err
	}
	return &udpLiteListener{l}, nil
}

func readCoverage(c *net.UDPConn, info *TransportInfo) error {
	return controlFD(c, func(fd int) error {
		s, err := unix.GetsockoptInt(fd, solUDPLite, udpliteSendCscov)
		if err != nil {
			return fmt.Errorf("get UDPLITE_SEND_CSCOV: %w", err)
		}
		r, err := unix.GetsockoptInt(fd, solUDPLite, udpliteRecvCscov)
		if err != nil {
			return fmt.Errorf("get UDPLITE_RECV_CSCOV: %w", err)
		}
		info.SendChecksumCoverage, info.RecvChecksumCoverage = s, r
		return nil
	})
}

// connectFD connects the datagram socket fd to remote (ConnectRendezvousSocket).
func connectFD(fd int, remote netip.AddrPort) error {
	family := unix.AF_INET6
	if sa, err := unix.Getsockname(fd); err == nil {
		if _, ok := sa.(*unix.SockaddrInet4); ok {
			family = unix.AF_INET
		}
	}
	return unix.Connect(fd, sockaddrOf(family, remote))
}
