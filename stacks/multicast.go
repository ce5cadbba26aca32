package stacks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Multicast (RFC 9622 §6.1.1) runs on the UDP and UDP-Lite stacks, with the
// group in the address the caller already passes:
//
//   - Dial to a multicast group gives a Transport that sends to the group
//     and never joins it: the socket is connected to the group, its hop
//     limit is Options.MulticastHopLimit (IP_MULTICAST_TTL /
//     IPV6_MULTICAST_HOPS, 1 by default) and, when Options.Interface is
//     set, its datagrams leave by that interface (IP_MULTICAST_IF /
//     IPV6_MULTICAST_IF, on top of the binding Interface asks for).
//   - Listen with a multicast group as Options.Local's address binds the
//     group's port (SO_REUSEADDR, so that other receivers of the group on
//     this host can bind it too) on the group's address itself, so that
//     unicast datagrams to the port never reach it and a socket bound to a
//     unicast address and the port can exist beside it (on Linux; UDP on
//     the BSDs and macOS binds what net.ListenPacket binds, the wildcard
//     address of the family, and Windows, which cannot bind a group,
//     binds that too), joins the group on Options.Interface or, when that is
//     empty, on the interface the system routes the group to
//     (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP; with Options.MulticastSource,
//     source-specific: MCAST_JOIN_SOURCE_GROUP, IP_ADD_SOURCE_MEMBERSHIP),
//     and on Linux receives only what this socket's own membership lets
//     in (IP_MULTICAST_ALL / IPV6_MULTICAST_ALL off: without it a socket
//     gets the datagrams of every group any socket of the host joined).
//     Accept returns one Transport per sender, as for unicast, but for
//     Options.MulticastIgnore's (a multicast rendezvous's own sender,
//     whose datagrams the multicast loopback brings back). Close
//     leaves the group at once; the socket stays open, as for unicast,
//     until the last accepted Transport is closed.
//
// The options come from golang.org/x/net/ipv4 and ipv6. Where the system
// lacks one (source-specific joins on Windows, for example), Dial and
// Listen fail with an error wrapping errors.ErrUnsupported.

// multicastHops is the hop limit Options.MulticastHopLimit asks for.
func multicastHops(n int) (int, error) {
	switch {
	case n == 0:
		return 1, nil
	case n < 0:
		return 0, nil
	case n > 255:
		return 0, fmt.Errorf("multicast hop limit %d out of range 0-255", n)
	}
	return n, nil
}

// multicastInterface returns the interface named name (nil for "").
func multicastInterface(name string) (*net.Interface, error) {
	if name == "" {
		return nil, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("multicast interface %s: %w", name, err)
	}
	return ifi, nil
}

// unsupportedOpt wraps an error of golang.org/x/net's ipv4 and ipv6
// packages in errors.ErrUnsupported when it says the option is not
// implemented on this system, and names the option either way.
func unsupportedOpt(opt string, err error) error {
	if err == nil {
		return nil
	}
	if strings.HasPrefix(err.Error(), "not implemented on ") || errors.Is(err, syscall.ENOPROTOOPT) {
		return fmt.Errorf("%s: %w on %s (%w)", opt, errors.ErrUnsupported, runtime.GOOS, err)
	}
	return fmt.Errorf("%s: %w", opt, err)
}

// setupMulticastSender configures c, dialled to the multicast group, with
// the hop limit and outgoing interface of opts.
func setupMulticastSender(c *net.UDPConn, group netip.Addr, opts Options) error {
	hops, err := multicastHops(opts.MulticastHopLimit)
	if err != nil {
		return err
	}
	ifi, err := multicastInterface(opts.Interface)
	if err != nil {
		return err
	}
	if group.Unmap().Is4() {
		p := ipv4.NewPacketConn(c)
		if err := p.SetMulticastTTL(hops); err != nil {
			return unsupportedOpt("set IP_MULTICAST_TTL", err)
		}
		if ifi != nil {
			if err := p.SetMulticastInterface(ifi); err != nil {
				return unsupportedOpt("set IP_MULTICAST_IF", err)
			}
		}
		return nil
	}
	p := ipv6.NewPacketConn(c)
	if err := p.SetMulticastHopLimit(hops); err != nil {
		return unsupportedOpt("set IPV6_MULTICAST_HOPS", err)
	}
	if ifi != nil {
		if err := p.SetMulticastInterface(ifi); err != nil {
			return unsupportedOpt("set IPV6_MULTICAST_IF", err)
		}
	}
	return nil
}

// multicastHopLimit reads back the hop limit of c's multicast datagrams.
func multicastHopLimit(c *net.UDPConn, group netip.Addr) (int, error) {
	if group.Unmap().Is4() {
		n, err := ipv4.NewPacketConn(c).MulticastTTL()
		return n, unsupportedOpt("get IP_MULTICAST_TTL", err)
	}
	n, err := ipv6.NewPacketConn(c).MulticastHopLimit()
	return n, unsupportedOpt("get IPV6_MULTICAST_HOPS", err)
}

// multicastMembership is a listening socket's membership of its group.
type multicastMembership struct {
	c      *net.UDPConn
	ifi    *net.Interface // nil: the system's choice
	group  netip.Addr
	source netip.Addr // SSM; zero for ASM
}

// joinMulticast joins c to group on the interface named iface (the
// system's choice for ""), source-specific when source is valid.
func joinMulticast(c *net.UDPConn, group, source netip.Addr, iface string) (*multicastMembership, error) {
	ifi, err := multicastInterface(iface)
	if err != nil {
		return nil, err
	}
	group = group.Unmap()
	m := &multicastMembership{c: c, ifi: ifi, group: group, source: source.Unmap()}
	if err := multicastOnlyJoined(c, group.Is6()); err != nil {
		return nil, err
	}
	g := &net.UDPAddr{IP: group.AsSlice()}
	ssm := m.source.IsValid()
	if ssm && m.source.Is4() != group.Is4() {
		return nil, fmt.Errorf("multicast source %s and group %s are of different families", source, group)
	}
	var s *net.UDPAddr
	if ssm {
		s = &net.UDPAddr{IP: m.source.AsSlice()}
	}
	switch {
	case group.Is4() && ssm:
		err = unsupportedOpt("join source-specific multicast group (IP_ADD_SOURCE_MEMBERSHIP)", ipv4.NewPacketConn(c).JoinSourceSpecificGroup(ifi, g, s))
	case group.Is4():
		err = unsupportedOpt("join multicast group (IP_ADD_MEMBERSHIP)", ipv4.NewPacketConn(c).JoinGroup(ifi, g))
	case ssm:
		err = unsupportedOpt("join source-specific multicast group (MCAST_JOIN_SOURCE_GROUP)", ipv6.NewPacketConn(c).JoinSourceSpecificGroup(ifi, g, s))
	default:
		err = unsupportedOpt("join multicast group (IPV6_JOIN_GROUP)", ipv6.NewPacketConn(c).JoinGroup(ifi, g))
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// leave drops the membership.
func (m *multicastMembership) leave() error {
	g := &net.UDPAddr{IP: m.group.AsSlice()}
	if m.source.IsValid() {
		s := &net.UDPAddr{IP: m.source.AsSlice()}
		if m.group.Is4() {
			return unsupportedOpt("leave source-specific multicast group", ipv4.NewPacketConn(m.c).LeaveSourceSpecificGroup(m.ifi, g, s))
		}
		return unsupportedOpt("leave source-specific multicast group", ipv6.NewPacketConn(m.c).LeaveSourceSpecificGroup(m.ifi, g, s))
	}
	if m.group.Is4() {
		return unsupportedOpt("leave multicast group (IP_DROP_MEMBERSHIP)", ipv4.NewPacketConn(m.c).LeaveGroup(m.ifi, g))
	}
	return unsupportedOpt("leave multicast group (IPV6_LEAVE_GROUP)", ipv6.NewPacketConn(m.c).LeaveGroup(m.ifi, g))
}

// multicastListenControl adds SO_REUSEADDR to a listening socket's
// Control (ctrl may be nil): receivers of one group share its port.
func multicastListenControl(ctrl func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if ctrl != nil {
			if err := ctrl(network, address, c); err != nil {
				return err
			}
		}
		var serr error
		err := c.Control(func(fd uintptr) { serr = setReuseAddr(int(fd)) })
		return errors.Join(err, serr)
	}
}

// isMulticastListen reports whether opts ask Listen for a multicast
// group.
func isMulticastListen(opts Options) bool { return opts.Local.Addr().IsMulticast() }

// ignoredSender is the sender a listener drops (Options.MulticastIgnore,
// unmapped as the read addresses are), for a multicast listener only: a
// unicast listener drops nothing.
func ignoredSender(m *multicastMembership, a netip.AddrPort) netip.AddrPort {
	if m == nil || !a.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
