package stacks

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readKernelPath adds to r the kernel's route to r.Remote and t's path MTU
// and MPTCP subflow count. What cannot be read stays zero. The route is
// looked up as the kernel routes t's socket: from r.Local and, when the
// socket is bound to an interface (SO_BINDTODEVICE: a local endpoint's or
// the interface property's), out of that interface alone; while that
// interface has no route to the peer (it is down), the route fields stay
// zero.
func readKernelPath(r *PathReading, t Transport) {
	if r.Remote.IsValid() {
		if rt, err := LookupRoute(r.Remote.Addr(), r.Local, boundDevice(t)); err == nil {
			r.Interface, r.Source, r.RouteMTU = rt.Interface, rt.Source, rt.MTU
		}
	}
	if p, ok := t.(PathMTUReader); ok {
		r.PMTU, _ = p.PathMTU()
	}
	if s, ok := t.(SubflowCounter); ok {
		r.Subflows, _ = s.MPTCPSubflows()
	}
}

// boundDevice is the interface t's socket is bound to (SO_BINDTODEVICE),
// "" when it is not bound or has no socket: a QUIC stream's is its
// connection's UDP socket.
func boundDevice(t Transport) string {
	var rc syscall.RawConn
	var err error
	if q, ok := t.(interface{ udpSocket() *net.UDPConn }); ok {
		rc, err = q.udpSocket().SyscallConn()
	} else {
		rc, _, _, err = rawSocket(t)
	}
	if err != nil {
		return ""
	}
	name, _ := BoundInterface(rc)
	return name
}

// tcpPathMTU reads tcpi_pmtu from TCP_INFO.
func tcpPathMTU(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("get TCP_INFO: %w", serr)
	}
	return int(info.Pmtu), nil
}

// udpPathMTU reads IP_MTU (IPV6_MTU) of a connected UDP socket; when the
// socket has no cached route (ENOTCONN after an IP_TOS change, or an
// adopted socket), a probe socket connected to the peer answers.
func udpPathMTU(c *net.UDPConn, peer *net.UDPAddr) (int, error) {
	remote := peer
	if remote == nil {
		remote, _ = c.RemoteAddr().(*net.UDPAddr)
	}
	if remote == nil {
		return 0, errors.New("path MTU: the UDP socket is not connected")
	}
	v4 := remote.AddrPort().Addr().Unmap().Is4()
	mtu := 0
	err := controlFD(c, func(fd int) error {
		var err error
		mtu, err = pathMTU(fd, v4)
		return err
	})
	if err == nil {
		return mtu, nil
	}
	p, perr := net.DialUDP("udp", nil, remote)
	if perr != nil {
		return 0, err
	}
	defer p.Close()
	err = controlFD(p, func(fd int) error {
		var err error
		mtu, err = pathMTU(fd, v4)
		return err
	})
	return mtu, err
}

// MPTCP_INFO (linux/mptcp.h): getsockopt(SOL_MPTCP) filling struct
// mptcp_info, whose first byte is mptcpi_subflows.
const mptcpInfo = 1

// mptcpSubflows reads mptcpi_subflows of an MPTCP connection.
func mptcpSubflows(c *net.TCPConn) (int, error) {
	if mp, err := c.MultipathTCP(); err != nil || !mp {
		return 0, errors.ErrUnsupported
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var buf [256]byte
	var errno syscall.Errno
	n := uint32(len(buf))
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_MPTCP, mptcpInfo,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	}); err != nil {
		return 0, err
	}
	switch errno {
	case 0:
	case unix.ENOPROTOOPT, unix.EOPNOTSUPP, unix.EINVAL:
		return 0, fmt.Errorf("MPTCP_INFO: %w: %w", errors.ErrUnsupported, errno)
	default:
		return 0, fmt.Errorf("MPTCP_INFO: %w", errno)
	}
	if n < 1 {
		return 0, errors.ErrUnsupported
	}
	return int(buf[0]), nil
}

// RouteMonitor watches the kernel's links, addresses and routes: a
// netlink socket subscribed to RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
// RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE and RTMGRP_IPV6_ROUTE of the
// calling thread's network namespace. Next is for one goroutine at a
// time; Close may be called from any goroutine, and ends a Next in
// progress.
type RouteMonitor struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
}

// NewRouteMonitor opens a RouteMonitor. Outside Linux it fails with
// errors.ErrUnsupported.
func NewRouteMonitor() (*RouteMonitor, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("route monitor: %w", err)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("route monitor: bind: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink-route") // non-blocking: the runtime's poller waits for it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("route monitor: %w", err)
	}
	return &RouteMonitor{f: f, rc: rc, buf: make([]byte, 32<<10)}, nil
}

// Next waits for the next burst of changes: it returns once at least one
// netlink message arrived and every message then queued was read, with
// their count (a receive queue overflow, ENOBUFS, counts as one: changes
// were lost, so something changed). After Close it fails with an error
// wrapping os.ErrClosed.
func (m *RouteMonitor) Next() (int, error) {
	n := 0
	var rerr error
	err := m.rc.Read(func(fd uintptr) bool {
		for {
			k, _, err := unix.Recvfrom(int(fd), m.buf, 0)
			switch {
			case err == unix.EAGAIN:
				return n > 0 // nothing queued: done with this burst, or wait for one
			case err == unix.EINTR:
				continue
			case err == unix.ENOBUFS:
				n++
				continue
			case err != nil:
				rerr = err
				return true
			}
			msgs, perr := syscall.ParseNetlinkMessage(m.buf[:k])
			if perr != nil || len(msgs) == 0 {
				n++
				continue
			}
			n += len(msgs)
		}
	})
	if err != nil {
		return n, fmt.Errorf("route monitor: %w", err)
	}
	if rerr != nil {
		return n, fmt.Errorf("route monitor: %w", rerr)
	}
	return n, nil
}

// Close closes the netlink socket; a Next in progress returns.
func (m *RouteMonitor) Close() error { return m.f.Close() }

// BoundDevice is the interface t's socket is bound to (SO_BINDTODEVICE),
// "" when it is not bound.
func BoundDevice(t Transport) string { return boundDevice(t) }
