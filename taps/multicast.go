package taps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// Multicast endpoints (RFC 9622 §6.1.1) are sent to by Initiate and joined
// by Listen, over UDP and UDP-Lite:
//
//   - Initiate with remote endpoints that are multicast groups
//     (RemoteEndpoint.WithMulticastGroupIP) gives a send-only Connection
//     (direction UnidirectionalSend) whose socket is connected to the
//     group: every Message is one datagram to the group, with the hop
//     limit of WithHopLimit (1 by default), out of the local endpoint's
//     interface when it names one. It never joins the group.
//   - Listen with local endpoints that are multicast groups
//     (LocalEndpoint.WithAnySourceMulticastGroupIP,
//     WithSingleSourceMulticastGroupIP) joins each group and delivers one
//     receive-only Connection (direction UnidirectionalReceive) per sender,
//     all of them members of one Connection Group that the Listener holds
//     (actors/listener.go: the root makes the group with the Listener, and
//     the Listener has each sender's connection made in it instead of in
//     a group of its own). The group outlives neither the Listener nor its
//     last Connection: it ends once the Listener has stopped and every
//     member has ended. A CloseGroup closes the members it has; a sender
//     heard afterwards joins it again, as long as the Listener listens.
//     Stop leaves the groups.
//   - RendezvousMulticast with remote endpoints that are any-source
//     groups gives RFC 9622's Connection and Listener: a sender to the
//     group and a Listener joined to it that leaves out the sender's own
//     datagrams. Rendezvous with a multicast group fails
//     (ErrMulticastRendezvous), since its one Connection cannot carry
//     both. A source-specific group on a local endpoint is an
//     EstablishmentError for either, as the RFC has it.
//
// Multicast Connections cannot be cloned (ReasonNotCloneable), nor can a
// multicast group be added to a Connection (AddRemote, AddLocal).

// ErrMulticastNeedsDatagrams: a Preconnection with multicast endpoints
// whose transport properties or protocol names leave neither UDP nor
// UDP-Lite (a reliable or secure profile, WithProtocols("tcp")).
// Initiate and Listen fail with an EstablishmentError
// (ReasonNoCandidates) wrapping it and ErrUnfulfilled, before any packet.
var ErrMulticastNeedsDatagrams = errors.New("a multicast group is reached over UDP or UDP-Lite only")

// ErrMulticastRendezvous: Rendezvous with a multicast endpoint (see the
// EstablishmentError it returns).
var ErrMulticastRendezvous = errors.New("rendezvous with a multicast group")

// datagramStacks are the stacks that carry multicast, made once (the
// selection is cached per stack list).
var datagramStacks = []stacks.Stack{stacks.UDP(), stacks.UDPLite()}

// isMulticastStack reports whether multicast runs over the stack.
func isMulticastStack(name string) bool { return name == "udp" || name == "udplite" }

// groupLabel names a converted endpoint in errors.
func groupLabel(m *messages.Endpoint) string {
	return net.JoinHostPort(m.IpAddress, strconv.Itoa(int(m.Port)))
}

// multicastUse tells whether cfg's endpoints are multicast groups, and
// fails (before any packet) when they are where Initiate (listen false)
// or Listen cannot use them, or mixed with unicast ones.
func multicastUse(cfg *messages.ConnectionConfig, listen bool) (bool, error) {
	var remote, local []*messages.Endpoint
	for _, r := range cfg.Remotes {
		if r.Multicast {
			remote = append(remote, r)
		}
	}
	for _, l := range cfg.Locals {
		if l.Multicast {
			local = append(local, l)
		}
	}
	fail := func(m *messages.Endpoint, msg string) (bool, error) {
		return false, &EndpointError{Endpoint: groupLabel(m), Err: errors.New(msg)}
	}
	switch {
	case listen && len(remote) > 0:
		return fail(remote[0], "a remote multicast group is for Initiate: a Listener joins its local endpoint's group (WithAnySourceMulticastGroupIP, WithSingleSourceMulticastGroupIP)")
	case !listen && len(local) > 0:
		return fail(local[0], "a local multicast group is for Listen: Initiate sends to a remote one (WithMulticastGroupIP)")
	case len(remote) > 0 && len(remote) < len(cfg.Remotes):
		return fail(remote[0], "a multicast group among unicast remote endpoints: use two Preconnections")
	case len(local) > 0 && len(local) < len(cfg.Locals):
		return fail(local[0], "a multicast group among unicast local endpoints: use two Preconnections")
	}
	return len(remote) > 0 || len(local) > 0, nil
}

// multicastStacks keeps the stacks of list (nil: every stack) that carry
// multicast.
func multicastStacks(list []stacks.Stack) []stacks.Stack {
	if list == nil {
		return datagramStacks
	}
	var out []stacks.Stack
	for _, st := range list {
		if isMulticastStack(st.Name()) {
			out = append(out, st)
		}
	}
	return out
}

// multicastSelectionError is the error of a stack selection for multicast
// endpoints that failed (err).
func multicastSelectionError(err error) error {
	return &EstablishmentError{Reason: ReasonNoCandidates, Err: fmt.Errorf("%w: %w", ErrMulticastNeedsDatagrams, err)}
}

// multicastConfig sets what multicast endpoints imply in cfg (properties
// and stack options already in place; both may be shared with other
// configs, so they are replaced, not changed): the direction (a sender
// only sends, a Listener's connections only receive; a direction
// property that says otherwise is an error) and the hop limit of the
// remote groups (one value for all of them).
func multicastConfig(cfg *messages.ConnectionConfig, listen bool) error {
	want, other := actors.SendOnly, actors.ReceiveOnly
	if listen {
		want, other = actors.ReceiveOnly, actors.SendOnly
	}
	if actors.DirectionOf(cfg.Properties) == other {
		return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: fmt.Errorf(
			"%w: direction %s on multicast endpoints, which only allow %s", ErrConflictingProperties, other, want)}
	}
	values := make(map[string]*messages.PropertyValue, len(cfg.Properties.GetValues())+1)
	for k, v := range cfg.Properties.GetValues() {
		values[k] = v
	}
	values["direction"] = &messages.PropertyValue{Kind: &messages.PropertyValue_EnumValue{EnumValue: want.String()}}
	cfg.Properties = &messages.Properties{Values: values}
	cfg.StackOptions.SendOnly = !listen
	var hops *uint32
	for i, r := range cfg.Remotes { // a Listener's are unicast: no hop limit
		if i == 0 {
			hops = r.HopLimit
			continue
		}
		if h := r.HopLimit; (h == nil) != (hops == nil) || (h != nil && *h != *hops) {
			return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: &EndpointError{Endpoint: groupLabel(r),
				Err: errors.New("the remote multicast groups have different hop limits: use two Preconnections")}}
		}
	}
	switch {
	case hops == nil:
		cfg.StackOptions.MulticastHopLimit = 0 // the default, 1
	case *hops == 0:
		cfg.StackOptions.MulticastHopLimit = -1 // 0: this host only
	default:
		cfg.StackOptions.MulticastHopLimit = int(*hops)
	}
	return nil
}

// isMulticastConfig reports whether a connection's configuration has
// multicast endpoints.
func isMulticastConfig(cfg *messages.ConnectionConfig) bool {
	for _, e := range cfg.Remotes {
		if e.Multicast {
			return true
		}
	}
	for _, e := range cfg.Locals {
		if e.Multicast {
			return true
		}
	}
	return false
}

// errMulticastNotCloneable: Clone of a multicast Connection.
var errMulticastNotCloneable = fmt.Errorf("a multicast Connection cannot be cloned: %w", ErrNotAllowed)

// errMulticastAdded: a multicast group given to AddRemote or AddLocal.
var errMulticastAdded = errors.New("a multicast group cannot be added to a Connection: make it a Preconnection's endpoint")

// multicastGroup tells whether the endpoint is a multicast group, and
// whether a source-specific one.
func (e *endpoint) multicastGroup() (group, ssm bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.group != "", e.group != "" && e.source != ""
}

// multicastRendezvous fails a Rendezvous with multicast endpoints: with a
// source-specific group on a local endpoint as RFC 9622 §6.1.1 says, and
// with any other group because the Connection and the Listener the RFC
// returns for it do not fit Rendezvous's one Connection
// (RendezvousMulticast returns them).
func (p *Preconnection) multicastRendezvous() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var group bool
	for _, l := range p.locals {
		g, ssm := l.e.multicastGroup()
		if ssm {
			return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: fmt.Errorf(
				"%w: a source-specific group on a local endpoint (RFC 9622 §6.1.1: an EstablishmentError)", ErrMulticastRendezvous)}
		}
		group = group || g
	}
	for _, r := range p.remotes {
		g, _ := r.e.multicastGroup()
		group = group || g
	}
	if group {
		return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: fmt.Errorf(
			"%w: RFC 9622 §6.1.1 answers it with a Connection and a Listener, which Rendezvous's one Connection cannot carry: "+
				"use RendezvousMulticast", ErrMulticastRendezvous)}
	}
	return nil
}

// RendezvousMulticast is Rendezvous with any-source multicast groups (RFC
// 9622 §6.1.1, whose answer is "Connection, Listener :=
// Preconnection.Rendezvous()": two objects, which Rendezvous's one
// Connection cannot carry). The remote endpoints are the groups
// (RemoteEndpoint.WithMulticastGroupIP, WithPort, WithHopLimit); the local
// endpoints, if any, are unicast: the address to send from
// (WithIPAddress), the interface (WithInterface) and the port to send from
// (WithPort; none: an ephemeral port). It returns:
//
//   - a send-only Connection to a group: the one Initiate to the groups
//     gives (several remote endpoints are equivalent, and Initiate's race
//     takes one of them; each Message is one datagram to it, with the hop
//     limit, out of the local endpoint's interface), made first;
//   - a Listener that has joined every group, on the group's port, on the
//     local endpoint's interface, or else on the interface that holds the
//     address the Connection sends from (the system's choice when none
//     does), and that delivers one receive-only Connection per other
//     sender to the groups, all in one Connection Group, as Listen on a
//     group does. The Connection's own datagrams, which the host's
//     multicast loopback brings back, are not delivered (the loopback
//     stays on, so that the groups' other members on this host hear it).
//
// The Listener has joined before RendezvousMulticast returns, so nothing
// the Connection sends is missed by the other members listening already.
// Close the Connection and Stop the Listener to leave; each lives on its
// own. The Preconnection's properties must allow UDP or UDP-Lite, as for
// Initiate and Listen on a group.
//
// It fails before any packet, with an *EstablishmentError (Reason
// ReasonInvalidConfiguration) wrapping ErrMulticastRendezvous, when there
// is no remote endpoint or one is not a multicast group, or when a local
// endpoint is a multicast group (a source-specific one is the RFC's
// EstablishmentError; an any-source group belongs on the remote
// endpoint); with Initiate's or Listen's errors otherwise. When the
// Listener cannot be made, the Connection is aborted before it sent
// anything. Safe for concurrent use.
func (p *Preconnection) RendezvousMulticast(ctx context.Context) (*Connection, *Listener, error) {
	if err := p.multicastRendezvousEndpoints(); err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	locals, remotes := append([]*LocalEndpoint(nil), p.locals...), append([]*RemoteEndpoint(nil), p.remotes...)
	p.mu.Unlock()
	c, err := p.Initiate(ctx)
	if err != nil {
		return nil, nil, err
	}
	from, fromIface := c.multicastSource(ctx)
	recv := p.clone()
	recv.remotes = nil
	recv.locals = multicastRendezvousLocals(locals, remotes, fromIface)
	ln, err := recv.listen(ctx, func(cfg *messages.ConnectionConfig) { cfg.StackOptions.MulticastIgnore = from })
	if err != nil {
		c.Abort()
		return nil, nil, err
	}
	return c, ln, nil
}

// multicastRendezvousEndpoints checks p's endpoints for
// RendezvousMulticast (before any packet).
func (p *Preconnection) multicastRendezvousEndpoints() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fail := func(msg string) error {
		return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: fmt.Errorf("%w: %s", ErrMulticastRendezvous, msg)}
	}
	if len(p.remotes) == 0 {
		return fail("RendezvousMulticast needs a remote endpoint that is a multicast group (WithMulticastGroupIP)")
	}
	for _, r := range p.remotes {
		if g, _ := r.e.multicastGroup(); !g {
			return fail(fmt.Sprintf("remote endpoint %s is not a multicast group: use Rendezvous", r.e.label()))
		}
	}
	for _, l := range p.locals {
		switch g, ssm := l.e.multicastGroup(); {
		case ssm:
			return fail("a source-specific group on a local endpoint (RFC 9622 §6.1.1: an EstablishmentError)")
		case g:
			return fail("an any-source group on a local endpoint: name the group on the remote endpoint (WithMulticastGroupIP), and the local address, interface or port on the local one")
		}
	}
	return nil
}

// multicastRendezvousLocals are the local endpoints of RendezvousMulticast's
// Listener: every group of remotes on its port, on the interface of each
// of locals (none: on iface, the interface of the address the Connection
// sends from, "" for the system's choice).
func multicastRendezvousLocals(locals []*LocalEndpoint, remotes []*RemoteEndpoint, iface string) []*LocalEndpoint {
	ifaces := []string{iface}
	if len(locals) > 0 {
		ifaces = ifaces[:0]
		for _, l := range locals {
			l.e.mu.Lock()
			name := l.e.iface
			l.e.mu.Unlock()
			if name == "" {
				name = iface
			}
			if !slices.Contains(ifaces, name) {
				ifaces = append(ifaces, name)
			}
		}
	}
	var out []*LocalEndpoint
	for _, r := range remotes {
		r.e.mu.Lock()
		group, port := r.e.group, r.e.port
		r.e.mu.Unlock()
		for _, name := range ifaces {
			l := NewLocalEndpoint().WithAnySourceMulticastGroupIP(group).WithPort(uint16(port))
			if name != "" {
				l.WithInterface(name)
			}
			out = append(out, l)
		}
	}
	return out
}

// multicastSource is the address and port c sends from, and the name of
// the interface that holds that address ("" when none does, or when c's
// endpoints cannot be read).
func (c *Connection) multicastSource(ctx context.Context) (netip.AddrPort, string) {
	info, err := callConn[*messages.ConnectionInfo](ctx, c, &messages.GetConnectionInfo{})
	if err != nil || info.Local == nil {
		return netip.AddrPort{}, ""
	}
	a, err := netip.ParseAddr(info.Local.IpAddress)
	if err != nil {
		return netip.AddrPort{}, ""
	}
	from := netip.AddrPortFrom(a.Unmap(), uint16(info.Local.Port))
	return from, interfaceHolding(a)
}

// interfaceHolding names the interface that has the address a ("" when
// none has it, or a is unspecified).
func interfaceHolding(a netip.Addr) string {
	if a.IsUnspecified() {
		return ""
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a.Unmap() {
					return ifi.Name
				}
			}
		}
	}
	return ""
}
