//go:build linux

package stacks

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// interfaceKind classifies an interface from sysfs: Wi-Fi has a wireless
// or phy80211 entry (or DEVTYPE=wlan), cellular modems DEVTYPE=wwan or the
// raw-IP link type, other Ethernet-type links (wired, veth, bridges) are
// KindEthernet.
func interfaceKind(name string, flags net.Flags) string {
	if flags&net.FlagLoopback != 0 {
		return KindLoopback
	}
	if strings.ContainsAny(name, "/") || name == "." || name == ".." {
		return ""
	}
	base := "/sys/class/net/" + name
	for _, p := range []string{"/wireless", "/phy80211"} {
		if _, err := os.Stat(base + p); err == nil {
			return KindWiFi
		}
	}
	if b, err := os.ReadFile(base + "/uevent"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			switch strings.TrimSpace(line) {
			case "DEVTYPE=wlan":
				return KindWiFi
			case "DEVTYPE=wwan":
				return KindCellular
			}
		}
	}
	if b, err := os.ReadFile(base + "/type"); err == nil {
		switch strings.TrimSpace(string(b)) {
		case strconv.Itoa(unix.ARPHRD_ETHER):
			return KindEthernet
		case strconv.Itoa(unix.ARPHRD_RAWIP):
			return KindCellular
		}
	}
	return ""
}

// LookupRoute asks the kernel which route a packet to dst would take
// (netlink RTM_GETROUTE, as "ip route get"): from src when valid, out of
// the interface named iface when not empty (as a socket bound to it with
// SO_BINDTODEVICE), or out of dst's zone for a scoped IPv6 address. No
// packet is sent.
func LookupRoute(dst, src netip.Addr, iface string) (Route, error) {
	var oif int
	if iface == "" && dst.Zone() != "" {
		iface = dst.Zone()
	}
	if iface != "" {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			if n, nerr := strconv.Atoi(iface); nerr == nil {
				oif = n
			} else {
				return Route{}, fmt.Errorf("route lookup: interface %s: %w", iface, err)
			}
		} else {
			oif = ifi.Index
		}
	}
	dst = dst.Unmap().WithZone("")
	family := unix.AF_INET6
	if dst.Is4() {
		family = unix.AF_INET
	}
	src = src.Unmap().WithZone("")
	if src.IsValid() && (src.IsUnspecified() || src.Is4() != dst.Is4()) {
		src = netip.Addr{}
	}
	req := newRouteRequest(family, dst, src, oif)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return Route{}, fmt.Errorf("route lookup: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Route{}, fmt.Errorf("route lookup: %w", err)
	}
	buf := make([]byte, 16<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return Route{}, fmt.Errorf("route lookup: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return Route{}, fmt.Errorf("route lookup: %w", err)
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Header.Seq != routeSeq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return Route{}, fmt.Errorf("route lookup %s: %w", dst, syscall.Errno(-e))
					}
				}
				return Route{}, fmt.Errorf("route lookup %s: no route", dst)
			case unix.RTM_NEWROUTE:
				return parseRoute(m)
			}
		}
	}
}

const routeSeq = 0x67746170 // "gtap"

// newRouteRequest builds an RTM_GETROUTE request.
func newRouteRequest(family int, dst, src netip.Addr, oif int) []byte {
	bits := uint8(dst.BitLen())
	rtm := unix.RtMsg{Family: uint8(family), Dst_len: bits}
	var attrs []byte
	attrs = appendRtAttr(attrs, unix.RTA_DST, dst.AsSlice())
	if src.IsValid() {
		rtm.Src_len = bits
		attrs = appendRtAttr(attrs, unix.RTA_SRC, src.AsSlice())
	}
	if oif > 0 {
		b := make([]byte, 4)
		binary.NativeEndian.PutUint32(b, uint32(oif))
		attrs = appendRtAttr(attrs, unix.RTA_OIF, b)
	}
	total := unix.SizeofNlMsghdr + unix.SizeofRtMsg + len(attrs)
	out := make([]byte, 0, total)
	hdr := unix.NlMsghdr{Len: uint32(total), Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_REQUEST, Seq: routeSeq}
	out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.SizeofNlMsghdr)...)
	out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(&rtm)), unix.SizeofRtMsg)...)
	return append(out, attrs...)
}

func appendRtAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	var h [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for pad := (4 - l%4) % 4; pad > 0; pad-- {
		b = append(b, 0)
	}
	return b
}

func parseRoute(m *syscall.NetlinkMessage) (Route, error) {
	if len(m.Data) < unix.SizeofRtMsg {
		return Route{}, errors.New("route lookup: short answer")
	}
	rtm := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return Route{}, fmt.Errorf("route lookup: %w", err)
	}
	r := Route{Local: rtm.Type == unix.RTN_LOCAL}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_OIF:
			if len(a.Value) >= 4 {
				r.Index = int(binary.NativeEndian.Uint32(a.Value))
			}
		case unix.RTA_PREFSRC:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				r.Source = ip
			}
		}
	}
	r.MTU = routeMetricMTU(attrs)
	if r.Index > 0 {
		if ifi, err := net.InterfaceByIndex(r.Index); err == nil {
			r.Interface = ifi.Name
			if r.MTU == 0 {
				r.MTU = ifi.MTU
			}
		}
	}
	if r.Interface == "" {
		return r, errors.New("route lookup: no outgoing interface")
	}
	return r, nil
}

// routeMetricMTU is the RTAX_MTU of an RTM_NEWROUTE message's RTA_METRICS
// (attrs), 0 when it has none.
func routeMetricMTU(attrs []syscall.NetlinkRouteAttr) int {
	for _, a := range attrs {
		if a.Attr.Type != unix.RTA_METRICS {
			continue
		}
		b := a.Value
		for len(b) >= unix.SizeofRtAttr {
			l := int(binary.NativeEndian.Uint16(b[0:]))
			typ := binary.NativeEndian.Uint16(b[2:])
			if l < unix.SizeofRtAttr || l > len(b) {
				return 0
			}
			if typ == unix.RTAX_MTU && l >= unix.SizeofRtAttr+4 {
				return int(binary.NativeEndian.Uint32(b[unix.SizeofRtAttr:]))
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
	return 0
}

// SourceAddress returns the local address the kernel chooses for a socket
// to dst bound to src (when valid) and to the interface iface (when not
// empty), with the useTemporaryLocalAddress preference pref applied
// (IPV6_ADDR_PREFERENCES): it connects a UDP socket, which sends nothing.
func SourceAddress(dst netip.AddrPort, src netip.Addr, iface string, pref int8) (netip.Addr, error) {
	d := net.Dialer{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					serr = fmt.Errorf("bind to interface %s: %w", iface, serr)
					return
				}
			}
			if strings.HasSuffix(network, "6") {
				serr = setAddrPreferences(int(fd), pref)
			}
		})
		return errors.Join(err, serr)
	}}
	network := "udp4"
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		network = "udp6"
	}
	if src.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	port := dst.Port()
	if port == 0 {
		port = 9 // discard: connect needs a port, nothing is sent
	}
	c, err := d.Dial(network, netip.AddrPortFrom(dst.Addr(), port).String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, errors.New("source address: not a UDP socket")
	}
	return ua.AddrPort().Addr(), nil
}

// IsTemporaryAddress reports whether a is a temporary IPv6 address of this
// host (RFC 8981 privacy address: IFA_F_TEMPORARY in /proc/net/if_inet6).
// IPv4 addresses are never temporary.
func IsTemporaryAddress(a netip.Addr) (bool, error) {
	a = a.Unmap().WithZone("")
	if !a.Is6() {
		return false, nil
	}
	f, err := os.Open("/proc/net/if_inet6")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return temporaryIn(bufio.NewScanner(f), a)
}

// temporaryIn scans /proc/net/if_inet6 lines ("addr ifindex plen scope
// flags name", hexadecimal) for a.
func temporaryIn(sc *bufio.Scanner, a netip.Addr) (bool, error) {
	want := hex.EncodeToString(a.AsSlice())
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != want {
			continue
		}
		flags, err := strconv.ParseUint(f[4], 16, 32)
		if err != nil {
			return false, err
		}
		if flags&unix.IFA_F_TEMPORARY != 0 {
			return true, nil
		}
	}
	return false, sc.Err()
}
