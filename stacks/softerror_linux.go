package stacks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// isSoftErrno tells whether a Read or Write error is a pending ICMP error
// (sk_err) rather than a failure of the socket. onRead also accepts
// EMSGSIZE, which on a write means the datagram itself is too large.
func isSoftErrno(err error, onRead bool) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN,
		unix.ENONET, unix.EPROTO, unix.ECONNRESET:
		return true
	case unix.EMSGSIZE:
		return onRead
	}
	return false
}

// softErrorsDelivered: UDP and UDP-Lite deliver ICMP errors as SoftError
// events (the IP_RECVERR error queue), so they provide softErrorNotify.
const softErrorsDelivered = true

// enableRecvErr sets IP_RECVERR (and IPV6_RECVERR on IPv6 sockets, where
// IP_RECVERR still covers IPv4-mapped peers).
func enableRecvErr(fd int) error {
	_, err := enableRecvErrOf(fd)
	return err
}

// enableRecvErrOf is enableRecvErr, and tells whether the socket is an
// IPv6 one (SO_DOMAIN AF_INET6), for whoever turns the options off again.
func enableRecvErrOf(fd int) (v6 bool, err error) {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return false, fmt.Errorf("get SO_DOMAIN: %w", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1); err != nil {
			return true, fmt.Errorf("set IPV6_RECVERR: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1) // mapped peers, best effort
		return true, nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		return false, fmt.Errorf("set IP_RECVERR: %w", err)
	}
	return false, nil
}

// drainErrQueue reads every error queued on the socket (recvmsg
// MSG_ERRQUEUE, non-blocking) and returns them.
func drainErrQueue(rc syscall.RawConn) []*SoftError {
	var out []*SoftError
	_ = rc.Control(func(fd uintptr) {
		var buf [512]byte
		var oob [512]byte
		for {
			_, oobn, _, from, err := unix.Recvmsg(int(fd), buf[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			if se := parseErrQueue(oob[:oobn], from); se != nil {
				out = append(out, se)
			}
		}
	})
	return out
}

// parseErrQueue turns the IP_RECVERR / IPV6_RECVERR control message of one
// error queue entry into a SoftError.
func parseErrQueue(oob []byte, from unix.Sockaddr) *SoftError {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
	for _, m := range msgs {
		isErr := (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR)
		if !isErr || len(m.Data) < eeSize {
			continue
		}
		d := m.Data
		se := &SoftError{
			Err:    syscall.Errno(binary.NativeEndian.Uint32(d[0:4])),
			Origin: d[4],
			Type:   d[5],
			Code:   d[6],
			Info:   binary.NativeEndian.Uint32(d[8:12]),
			Dest:   sockaddrToAddrPort(from),
		}
		se.Offender = offender(d[eeSize:])
		return se
	}
	return nil
}

// offender parses the struct sockaddr that follows sock_extended_err
// (SO_EE_OFFENDER); family AF_UNSPEC means none.
func offender(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
			if len(b) >= 28 { // sin6_scope_id
				a = withScope(a, binary.NativeEndian.Uint32(b[24:28]))
			}
			return a
		}
	}
	return netip.Addr{}
}

// sockaddrToAddrPort is the address of sa, with the zone of a scoped
// (link-local) IPv6 address named as the net package names it in the
// addresses it reads (the interface's name): the listener's peers are
// keyed by those (udpListener.softError).
func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(withScope(netip.AddrFrom16(a.Addr).Unmap(), a.ZoneId), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// withScope gives an IPv6 address its zone, the interface of scope id
// index (0: none), by name as the net package does (the index in decimal
// when no interface has it any more).
func withScope(a netip.Addr, index uint32) netip.Addr {
	if index == 0 || !a.Is6() {
		return a
	}
	return a.WithZone(scopeNames.name(index, time.Now()))
}

// scopeNames caches the names of the interfaces of scope ids for
// withScope: net.InterfaceByIndex dumps every link over netlink, too much
// for each ICMP error of a burst. A name is looked up again after
// scopeNameTTL (the net package keeps its own for up to a minute; a peer
// keyed by a stale name is still matched without the zone:
// udpListener.peersAt).
var scopeNames = zoneNames{lookup: func(index int) (string, error) {
	ifi, err := net.InterfaceByIndex(index)
	if err != nil {
		return "", err
	}
	return ifi.Name, nil
}}

// scopeNameTTL is how long scopeNames keeps a name.
const scopeNameTTL = time.Second

// zoneNames is a cache of interface names by index. It is safe for
// concurrent use.
type zoneNames struct {
	lookup func(index int) (string, error)
	mu     sync.Mutex
	m      map[uint32]zoneName
}

type zoneName struct {
	name string
	at   time.Time
}

// name is the name of interface index at now, from the cache when it is
// younger than scopeNameTTL; the index in decimal when no interface has
// it.
func (z *zoneNames) name(index uint32, now time.Time) string {
	z.mu.Lock()
	e, ok := z.m[index]
	z.mu.Unlock()
	if ok && now.Sub(e.at) < scopeNameTTL {
		return e.name
	}
	name, err := z.lookup(int(index))
	if err != nil {
		name = strconv.FormatUint(uint64(index), 10)
	}
	z.mu.Lock()
	if z.m == nil {
		z.m = map[uint32]zoneName{}
	}
	z.m[index] = zoneName{name: name, at: now}
	z.mu.Unlock()
	return name
}
