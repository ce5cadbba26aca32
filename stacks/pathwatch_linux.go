package stacks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
// calling thread's network namespace. Where the process may (it needs
// CAP_NET_ADMIN) it also follows the MPTCP path manager's events (the
// generic netlink group mptcp_pm_events): a subflow established, closed or
// given another priority, on any MPTCP connection of the namespace, counts
// as a change too, so that a subflow handover is seen when it happens
// rather than at the next link, address or route change. Next is for one
// goroutine at a time; Close may be called from any goroutine, and ends a
// Next in progress. A monitor runs one goroutine per netlink socket, until
// Close.
type RouteMonitor struct {
	route, mptcp *os.File // mptcp: nil when not subscribed
	pending      atomic.Int64
	wake         chan struct{} // a burst is pending (capacity 1)
	done         chan struct{} // closed when every reader ended
	errMu        sync.Mutex
	err          error // why the readers ended
	closed       atomic.Bool
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
	m := &RouteMonitor{route: os.NewFile(uintptr(fd), "netlink-route"), // non-blocking: the runtime's poller waits for it
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	m.mptcp, _ = mptcpEventSocket() // without it, subflow changes are seen at the next route change
	files := []*os.File{m.route}
	if m.mptcp != nil {
		files = append(files, m.mptcp)
	}
	var wg sync.WaitGroup
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("route monitor: %w", err)
		}
		keep := keepRouteMessage
		if f == m.mptcp {
			keep = keepMPTCPEvent
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.read(rc, keep)
		}()
	}
	go func() {
		wg.Wait()
		close(m.done)
	}()
	return m, nil
}

// read posts the bursts of one netlink socket until it fails (closed).
func (m *RouteMonitor) read(rc syscall.RawConn, keep func(syscall.NetlinkMessage) bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := readBurst(rc, buf, keep)
		if n > 0 {
			m.pending.Add(int64(n))
			select {
			case m.wake <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
		if err != nil {
			m.errMu.Lock()
			if m.err == nil {
				m.err = err
			}
			m.errMu.Unlock()
			return
		}
	}
}

// readBurst waits until at least one message that keep accepts arrived and
// every message then queued was read, and returns their count (a receive
// queue overflow, ENOBUFS, counts as one: changes were lost, so something
// changed).
func readBurst(rc syscall.RawConn, buf []byte, keep func(syscall.NetlinkMessage) bool) (int, error) {
	n := 0
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			k, _, err := unix.Recvfrom(int(fd), buf, 0)
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
			msgs, perr := syscall.ParseNetlinkMessage(buf[:k])
			if perr != nil || len(msgs) == 0 {
				n++
				continue
			}
			for _, msg := range msgs {
				if keep(msg) {
					n++
				}
			}
		}
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// keepRouteMessage: every link, address and route message counts.
func keepRouteMessage(syscall.NetlinkMessage) bool { return true }

// sizeofGenlmsghdr is struct genlmsghdr's size (cmd, version, reserved).
const sizeofGenlmsghdr = 4

// The MPTCP path manager's event commands that change a connection's
// subflows (linux/mptcp.h, enum mptcp_event_type).
const (
	mptcpEventSubEstablished = 10
	mptcpEventSubClosed      = 11
	mptcpEventSubPriority    = 13
)

// keepMPTCPEvent: only subflow events count (a connection created or
// closed is no path change of another one).
func keepMPTCPEvent(msg syscall.NetlinkMessage) bool {
	if len(msg.Data) < sizeofGenlmsghdr {
		return false
	}
	switch msg.Data[0] { // genlmsghdr.cmd: the event
	case mptcpEventSubEstablished, mptcpEventSubClosed, mptcpEventSubPriority:
		return true
	}
	return false
}

// Next waits for the next burst of changes: it returns once at least one
// netlink message arrived and every message then queued was read, with
// their count. After Close it fails with an error wrapping os.ErrClosed.
func (m *RouteMonitor) Next() (int, error) {
	for {
		if n := m.pending.Swap(0); n > 0 {
			return int(n), nil
		}
		select {
		case <-m.wake:
		case <-m.done:
			if n := m.pending.Swap(0); n > 0 {
				return int(n), nil
			}
			if m.closed.Load() {
				return 0, fmt.Errorf("route monitor: %w", os.ErrClosed)
			}
			m.errMu.Lock()
			err := m.err
			m.errMu.Unlock()
			return 0, fmt.Errorf("route monitor: %w", err)
		}
	}
}

// Close closes the netlink sockets; a Next in progress returns.
func (m *RouteMonitor) Close() error {
	m.closed.Store(true)
	err := m.route.Close()
	if m.mptcp != nil {
		_ = m.mptcp.Close()
	}
	return err
}

// MPTCPEvents reports whether the monitor follows the MPTCP path
// manager's subflow events.
func (m *RouteMonitor) MPTCPEvents() bool { return m.mptcp != nil }

// mptcpEventSocket opens a generic netlink socket subscribed to the MPTCP
// path manager's event group (mptcp_pm_events; joining it needs
// CAP_NET_ADMIN). It fails where the kernel has no MPTCP path manager or
// the process may not join.
func mptcpEventSocket() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	grp, err := genlMulticastGroup(fd, "mptcp_pm", "mptcp_pm_events")
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(grp))
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "netlink-mptcp-pm"), nil
}

// genlMulticastGroup asks the generic netlink controller (CTRL_CMD_GETFAMILY)
// for the id of the multicast group named group of the family named
// family, on the blocking generic netlink socket fd.
func genlMulticastGroup(fd int, family, group string) (uint32, error) {
	name := append([]byte(family), 0)
	attr := make([]byte, unix.SizeofNlAttr+len(name))
	binary.NativeEndian.PutUint16(attr[0:], uint16(len(attr)))
	binary.NativeEndian.PutUint16(attr[2:], unix.CTRL_ATTR_FAMILY_NAME)
	copy(attr[unix.SizeofNlAttr:], name)
	attr = append(attr, make([]byte, nlaAlign(len(attr))-len(attr))...)
	req := make([]byte, unix.SizeofNlMsghdr+sizeofGenlmsghdr, unix.SizeofNlMsghdr+sizeofGenlmsghdr+len(attr))
	req = append(req, attr...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.GENL_ID_CTRL)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], routeSeq)
	req[unix.SizeofNlMsghdr] = unix.CTRL_CMD_GETFAMILY
	req[unix.SizeofNlMsghdr+1] = 1 // version
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	buf := make([]byte, 16<<10)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return 0, fmt.Errorf("generic netlink family %s: %w", family, syscall.Errno(-e))
				}
			}
		case unix.GENL_ID_CTRL:
			if len(m.Data) < sizeofGenlmsghdr {
				continue
			}
			for _, a := range nlAttrs(m.Data[sizeofGenlmsghdr:]) {
				if a.typ != unix.CTRL_ATTR_MCAST_GROUPS {
					continue
				}
				for _, g := range nlAttrs(a.data) { // one nested entry per group
					var gname string
					var id uint32
					for _, f := range nlAttrs(g.data) {
						switch f.typ {
						case unix.CTRL_ATTR_MCAST_GRP_NAME:
							gname = strings.TrimRight(string(f.data), "\x00")
						case unix.CTRL_ATTR_MCAST_GRP_ID:
							if len(f.data) >= 4 {
								id = binary.NativeEndian.Uint32(f.data)
							}
						}
					}
					if gname == group && id != 0 {
						return id, nil
					}
				}
			}
		}
	}
	return 0, fmt.Errorf("generic netlink family %s: no multicast group %s", family, group)
}

// nlAttr is one netlink attribute (its type without the nested and
// byte-order flags).
type nlAttr struct {
	typ  uint16
	data []byte
}

// nlAttrs splits b into its netlink attributes (malformed tails are
// dropped).
func nlAttrs(b []byte) []nlAttr {
	var out []nlAttr
	for len(b) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < unix.SizeofNlAttr || l > len(b) {
			break
		}
		out = append(out, nlAttr{typ: binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER), data: b[unix.SizeofNlAttr:l]})
		adv := nlaAlign(l)
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return out
}

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

// BoundDevice is the interface t's socket is bound to (SO_BINDTODEVICE),
// "" when it is not bound.
func BoundDevice(t Transport) string { return boundDevice(t) }
