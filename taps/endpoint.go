package taps

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// endpoint is what LocalEndpoint and RemoteEndpoint share: at most one
// identifier of each type (RFC 9622 §6.1). Setting an identifier twice to
// different values is an error reported when the endpoint is used.
type endpoint struct {
	mu       sync.Mutex
	hostName string
	ip       string
	port     uint32
	portSet  bool
	service  string
	iface    string
	protocol string
	path     string // Unix domain socket
	// a multicast group (RFC 9622 §6.1.1): mcast is the identifier as
	// setOnce compares it (the group, and for a source-specific one its
	// source), group and source its parts; hops is WithHopLimit's
	mcast   string
	group   string
	source  string
	hops    uint8
	hopsSet bool
	err     error
}

func (e *endpoint) setOnce(field *string, kind, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *field != "" && *field != v && e.err == nil {
		e.err = fmt.Errorf("two %s identifiers (%q and %q): use two endpoints", kind, *field, v)
	}
	*field = v
}

// setGroup sets the multicast group identifier: any-source when source
// is "" and not ssm, source-specific otherwise.
func (e *endpoint) setGroup(group, source string, ssm bool) {
	id := group
	if ssm {
		id = group + " from source " + source
	}
	e.setOnce(&e.mcast, "multicast group", id)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.group, e.source = group, source
	if ssm && source == "" && e.err == nil {
		e.err = fmt.Errorf("source-specific multicast group %q without a source address", group)
	}
}

// setHopLimit sets WithHopLimit's hop limit.
func (e *endpoint) setHopLimit(n uint8) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hopsSet && e.hops != n && e.err == nil {
		e.err = fmt.Errorf("two hop limits (%d and %d): use two endpoints", e.hops, n)
	}
	e.hops, e.hopsSet = n, true
}

func (e *endpoint) label() string {
	if e.path != "" {
		return e.path
	}
	host := e.hostName
	if host == "" {
		host = e.ip
	}
	if host == "" {
		host = e.group
	}
	if e.portSet {
		return net.JoinHostPort(host, strconv.Itoa(int(e.port)))
	}
	if e.service != "" {
		return host + ":" + e.service
	}
	return host
}

// toMessage validates the endpoint and converts it. needPort: an endpoint
// to connect to needs a port (or service).
func (e *endpoint) toMessage(needPort, needAddress bool) (*messages.Endpoint, error) {
	return e.convert(needPort, needAddress, false)
}

// toInitiateMessage converts a remote endpoint to initiate to, or to add
// to a connection (toMessage with a port and an address needed), where a
// host name's service may also be one with no IANA port: its port then
// comes from its SRV records alone (port 0 in the message;
// actors.resolveSRVStream fails the resolution with a
// *stacks.ServiceError when it has none). A host name whose SRV records are not looked up (an
// IP literal, localhost: stacks.SRVHostName) needs an IANA service.
func (e *endpoint) toInitiateMessage() (*messages.Endpoint, error) {
	return e.convert(true, true, true)
}

// convert is toMessage; srvOnly allows a host name's service with no
// IANA port (toInitiateMessage). The message carries the service only
// when the port comes from it: a port given with WithPort wins over the
// service, and leaves no SRV records to look up.
func (e *endpoint) convert(needPort, needAddress, srvOnly bool) (*messages.Endpoint, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fail := func(err error) (*messages.Endpoint, error) {
		return nil, &EndpointError{Endpoint: e.label(), Err: err}
	}
	if e.err != nil {
		return fail(e.err)
	}
	m := &messages.Endpoint{HostName: e.hostName, Port: e.port, Interface: e.iface, Protocol: e.protocol}
	if !e.portSet {
		m.Service = e.service
	}
	if e.ip != "" {
		a, err := netip.ParseAddr(e.ip)
		if err != nil {
			return fail(fmt.Errorf("bad IP address %q", e.ip))
		}
		if a.Zone() != "" {
			if m.Interface != "" && m.Interface != a.Zone() {
				return fail(fmt.Errorf("zone %q contradicts interface %q", a.Zone(), m.Interface))
			}
			m.Interface = a.Zone()
			a = a.WithZone("")
		}
		m.IpAddress = a.String()
	}
	if e.hostName != "" && e.ip != "" {
		return fail(errors.New("both a host name and an IP address: use two endpoints"))
	}
	if m.IpAddress != "" && netip.MustParseAddr(m.IpAddress).IsMulticast() {
		return fail(fmt.Errorf("%s is a multicast address: name a group with WithMulticastGroupIP (a remote endpoint) or WithAnySourceMulticastGroupIP / WithSingleSourceMulticastGroupIP (a local one)", m.IpAddress))
	}
	if e.group != "" {
		if err := e.groupToMessage(m); err != nil {
			return fail(err)
		}
	} else if e.hopsSet {
		return fail(errors.New("a hop limit without a multicast group (WithMulticastGroupIP)"))
	}
	if m.Interface != "" {
		name, err := interfaceName(m.Interface)
		if err != nil {
			return fail(err)
		}
		m.Interface = name
	}
	if e.path != "" {
		if e.hostName != "" || e.ip != "" || e.portSet || e.service != "" || e.iface != "" {
			return fail(errors.New("a Unix socket path with a host, address, port, service or interface: use two endpoints"))
		}
		if e.protocol != "" && e.protocol != "unix" {
			return fail(fmt.Errorf("a Unix socket path is reached over the unix stack, not %q", e.protocol))
		}
		m.Path = e.path
		return m, nil
	}
	portSet := e.portSet // the endpoint itself is left as it is: it may be used again
	if !portSet && e.service != "" {
		p, err := servicePort(e.service, e.protocol)
		switch {
		case err == nil:
			m.Port = uint32(p)
			portSet = true
		case srvOnly && stacks.SRVHostName(e.hostName) && stacks.ValidServiceName(e.service):
			return m, nil // port 0: from the SRV records, or a resolution error
		default:
			host := e.hostName
			if host == "" {
				host = e.ip
			}
			return fail(&stacks.ServiceError{Service: e.service, Host: host})
		}
	}
	if needPort && (!portSet || m.Port == 0) {
		return fail(errors.New("no port"))
	}
	if m.Multicast && (!portSet || m.Port == 0) {
		return fail(errors.New("a multicast group needs a port (WithPort)"))
	}
	if needAddress && e.hostName == "" && e.ip == "" && e.group == "" {
		return fail(errors.New("no host name or IP address"))
	}
	return m, nil
}

// ErrNotMulticast: an address given as a multicast group
// (WithMulticastGroupIP, WithAnySourceMulticastGroupIP,
// WithSingleSourceMulticastGroupIP) is not a multicast address (an
// EndpointError wraps it, before any packet is sent).
var ErrNotMulticast = errors.New("not a multicast address")

// groupToMessage validates the endpoint's multicast group and sets it in m
// (the group is m's address). The caller holds e.mu.
func (e *endpoint) groupToMessage(m *messages.Endpoint) error {
	if e.hostName != "" || e.ip != "" || e.path != "" {
		return errors.New("a multicast group with a host name, an IP address or a path: the group is the endpoint's address (name its interface with WithInterface)")
	}
	g, err := netip.ParseAddr(e.group)
	if err != nil {
		return fmt.Errorf("bad multicast group %q", e.group)
	}
	if g.Zone() != "" {
		if m.Interface != "" && m.Interface != g.Zone() {
			return fmt.Errorf("zone %q contradicts interface %q", g.Zone(), m.Interface)
		}
		m.Interface = g.Zone()
		g = g.WithZone("")
	}
	if g = g.Unmap(); !g.IsMulticast() {
		return fmt.Errorf("multicast group %s: %w", g, ErrNotMulticast)
	}
	m.IpAddress, m.Multicast = g.String(), true
	if e.source != "" {
		src, err := netip.ParseAddr(e.source)
		if err != nil {
			return fmt.Errorf("bad multicast source %q", e.source)
		}
		src = src.Unmap()
		switch {
		case src.IsMulticast() || src.IsUnspecified():
			return fmt.Errorf("multicast source %s: not a unicast address", src)
		case src.Is4() != g.Is4():
			return fmt.Errorf("multicast source %s and group %s: not of the same family", src, g)
		}
		m.MulticastSource = src.String()
	}
	if e.hopsSet {
		h := uint32(e.hops)
		m.HopLimit = &h
	}
	return nil
}

// servicePort is the port of an IANA service name (net.LookupPort: Go's
// table, then /etc/services), looked up for the transport of the
// endpoint's protocol first (UDP for udp, udplite and quic, TCP
// otherwise), then for the other one: a name registered for UDP alone
// (ntp, syslog) names its port whichever stack is selected later.
func servicePort(service, protocol string) (int, error) {
	nets := [2]string{"tcp", "udp"}
	switch protocol {
	case "udp", "udplite", "quic":
		nets = [2]string{"udp", "tcp"}
	}
	p, err := net.LookupPort(nets[0], service)
	if err != nil {
		if p2, err2 := net.LookupPort(nets[1], service); err2 == nil {
			return p2, nil
		}
	}
	return p, err
}

// ErrUnknownInterface: an endpoint names a network interface this host does
// not have (an EndpointError wraps it, before any packet is sent).
var ErrUnknownInterface = errors.New("no such network interface")

// interfaceName checks that the interface an endpoint names exists, and
// turns a numeric zone ("fe80::1%2") into the interface's name.
func interfaceName(name string) (string, error) {
	if _, err := net.InterfaceByName(name); err == nil {
		return name, nil
	}
	if idx, err := strconv.Atoi(name); err == nil && idx > 0 {
		if ifi, err := net.InterfaceByIndex(idx); err == nil {
			return ifi.Name, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownInterface, name)
}

// RemoteEndpoint identifies the peer of a connection (RFC 9622 §6.1). The
// With methods set one identifier each and return the endpoint for
// chaining. A Preconnection holds the endpoint it is given and copies it
// at each Initiate, InitiateWithSend, Listen or Resolve: a setter called in
// between changes what the next one uses, never a Connection or Listener
// made before.
// Methods are safe for concurrent use.
type RemoteEndpoint struct{ e endpoint }

// NewRemoteEndpoint returns an empty RemoteEndpoint.
func NewRemoteEndpoint() *RemoteEndpoint { return &RemoteEndpoint{} }

// WithHostName sets the host name (resolved at Initiate; an FQDN is best).
func (r *RemoteEndpoint) WithHostName(name string) *RemoteEndpoint {
	r.e.setOnce(&r.e.hostName, "host name", name)
	return r
}

// WithIPAddress sets the IP address (an IPv4 or IPv6 literal, with an
// optional %zone meaning WithInterface).
func (r *RemoteEndpoint) WithIPAddress(ip string) *RemoteEndpoint {
	r.e.setOnce(&r.e.ip, "IP address", ip)
	return r
}

// WithPort sets the port.
func (r *RemoteEndpoint) WithPort(port uint16) *RemoteEndpoint {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	if r.e.portSet && r.e.port != uint32(port) && r.e.err == nil {
		r.e.err = fmt.Errorf("two ports (%d and %d): use two endpoints", r.e.port, port)
	}
	r.e.port, r.e.portSet = uint32(port), true
	return r
}

// WithService names the service to reach (RFC 9622 §6.1.1: an IANA
// service name or a DNS SRV service name, "https", "xmpp-client").
//
// With a host name (WithHostName; not "localhost" or a name under it,
// which are not sent to DNS) and no port (WithPort: an explicit port
// wins, and no SRV record is looked up), Initiate looks up the service's
// DNS SRV records (RFC 2782), alongside the host name's addresses (used
// only when there is no record, so that the fallback costs no extra DNS
// round trip; once they are in, the SRV answer is waited for 50 ms at
// most, the resolution delay of RFC 8305 and RFC 9460 §5.1: past it the
// host name is attempted with the IANA port while the SRV lookup goes
// on, so that a DNS server that drops SRV queries costs 50 ms, not the
// resolver's timeout, and SRV targets that answer later join the race in
// place of the host name's addresses not attempted yet, an attempt
// already started going on; the race does not fail while the SRV answer
// is pending):
// "_service._tcp.host" for the stacks over TCP (tcp, tls),
// "_service._udp.host" for the stacks over UDP (quic, udp, udplite),
// each once per Initiate for the stacks that may be selected (with
// WithProtocol, that stack's only), with the Preconnection's DNS resolver
// (WithDNSResolver; default net.DefaultResolver). The records' targets
// are the endpoint's derived endpoints, each resolved (A and AAAA, both
// answers waited for, with WithResolver's lookup when given) and attempted with its record's port
// over the stacks of its transport: lowest priority first, and within a
// priority in RFC 2782's weighted random order, each target's addresses
// in the Happy Eyeballs order; a target that fails or is refused gives
// way at once to the next one (the race, as between addresses). At most
// 16 targets, and 16 addresses of the endpoint, are used. A secure
// attempt verifies the server's certificate against the host name given
// here, not the SRV target (set SecurityParameters.SetServerName
// otherwise).
//
// SRV records win over the service's IANA port when both exist. Without
// SRV records for a transport (no such name, no record, or a DNS
// failure), its stacks fall back to the host name's addresses with the
// IANA port (Go's table and /etc/services, for the transport of the
// endpoint's protocol first, then the other one); a service that has no
// IANA port then fails Initiate with an EstablishmentError
// (ResolutionFailed) wrapping a *stacks.ServiceError (ErrNoServicePort). A
// single SRV target "." says the service is not available at that
// domain: no attempt is made over that transport, and when no transport
// is left Initiate fails with an EstablishmentError
// wrapping ErrServiceUnavailable, sending nothing but DNS queries.
//
// A Connection's re-establishment (WithReestablishment) and Clone resolve
// the endpoint again the same way, and Preconnection.Resolve returns the
// endpoints so derived. With an IP address, and for Listen's and
// Rendezvous' remote endpoints and NetConn dials, the service only names
// its IANA port, looked up as above (no SRV lookup). A service with no
// IANA port is fine with a host name whose SRV records are looked up
// (not an IP literal, not localhost), in Initiate (and InitiateWithSend,
// InitiateAsync), Resolve, and Connection.AddRemote and RemoveRemote
// (the connection's next establishment looks them up): its
// port comes from the SRV records, and only when they give none does the
// establishment fail, its EstablishmentError (ResolutionFailed) wrapping
// a *stacks.ServiceError that names the service (ErrNoServicePort) and the SRV
// lookups' errors. Everywhere else it is an *EndpointError
// (ErrInvalidEndpoint) wrapping a *stacks.ServiceError, before any packet. A
// service that is a port number ("8080") is that port.
func (r *RemoteEndpoint) WithService(service string) *RemoteEndpoint {
	r.e.setOnce(&r.e.service, "service", service)
	return r
}

// WithInterface names the interface through which the remote endpoint is
// reached: it scopes a link-local address, and every attempt to this
// endpoint is bound to the interface (SO_BINDTODEVICE on Linux). The
// interface must exist when the Preconnection is used (ErrUnknownInterface
// otherwise, before any packet), and must be allowed by the interface
// Selection Property.
func (r *RemoteEndpoint) WithInterface(name string) *RemoteEndpoint {
	r.e.setOnce(&r.e.iface, "interface", name)
	return r
}

// WithUnixPath makes the endpoint a Unix domain socket at path, reached
// over the "unix" stack only. When every remote endpoint is a path, that
// stack is the only candidate; among remote endpoints with addresses or
// names, the path is one more alternative, raced with them. The path is
// the whole endpoint: with a host name, IP address, port, service or
// interface, or a protocol other than "unix", using it fails with an
// *EndpointError before any packet.
func (r *RemoteEndpoint) WithUnixPath(path string) *RemoteEndpoint {
	r.e.setOnce(&r.e.path, "path", path)
	return r
}

// WithProtocol makes the endpoint specific to one protocol stack ("tcp",
// "quic", ...; RFC 9622 §6.1: QUIC on 8443, TCP on 443 are two endpoints):
// it is attempted over that stack only, while an endpoint without a
// protocol is attempted over every stack selected. When every remote
// endpoint names one, the stacks they name are the only ones that may be
// selected (within those WithProtocols allows: none left is
// ErrUnfulfilled); an unknown name fails Initiate before any packet.
func (r *RemoteEndpoint) WithProtocol(name string) *RemoteEndpoint {
	r.e.setOnce(&r.e.protocol, "protocol", name)
	return r
}

// WithMulticastGroupIP makes the endpoint a multicast group (RFC 9622
// §6.1.1), an IPv4 or IPv6 multicast address (with an optional %zone
// meaning WithInterface), on the port WithPort gives. Initiate to it gives
// a send-only Connection (direction UnidirectionalSend: Receive fails with
// ErrSendOnly) over UDP or UDP-Lite that sends its Messages to the group
// as datagrams, with the hop limit WithHopLimit gives (default 1), out of
// the local endpoint's interface when it names one (WithInterface:
// IP_MULTICAST_IF / IPV6_MULTICAST_IF, and the binding every
// WithInterface makes); it never joins the group. An address that is not
// a multicast address fails with an EndpointError wrapping
// ErrNotMulticast, and a stack selection that leaves neither UDP nor
// UDP-Lite (a reliable or secure profile, WithProtocols("tcp")) with an
// EstablishmentError wrapping ErrMulticastNeedsDatagrams, both before any
// packet. Every remote endpoint of the Preconnection must then be a
// multicast group. Listen and Rendezvous do not take a remote multicast
// group (the group a Listener joins is its local endpoint's:
// LocalEndpoint.WithAnySourceMulticastGroupIP).
func (r *RemoteEndpoint) WithMulticastGroupIP(group string) *RemoteEndpoint {
	r.e.setGroup(group, "", false)
	return r
}

// WithHopLimit sets the hop limit of the datagrams sent to the endpoint's
// multicast group (IPv4 TTL, IPv6 Hop Limit: IP_MULTICAST_TTL /
// IPV6_MULTICAST_HOPS; the default is 1, the link; 0 keeps them on this
// host). It needs WithMulticastGroupIP. SocketInfo.MulticastHopLimit reads
// it back from the socket.
func (r *RemoteEndpoint) WithHopLimit(n uint8) *RemoteEndpoint {
	r.e.setHopLimit(n)
	return r
}

// String returns "host:port".
func (r *RemoteEndpoint) String() string {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	return r.e.label()
}

// LocalEndpoint identifies the local side of a connection or listener
// (RFC 9622 §6.1). Port 0 means an ephemeral port. Methods are safe for
// concurrent use.
type LocalEndpoint struct {
	e endpoint
	// guarded by e.mu
	stun      *stunServer // WithStunServer
	reflexive bool        // made by Resolve from a STUN answer
}

// StunCredentials are short-term STUN credentials (RFC 8489 §9.1): the
// Binding requests carry USERNAME and MESSAGE-INTEGRITY keyed with
// Password (used as given), and a response without a valid
// MESSAGE-INTEGRITY is not accepted.
type StunCredentials struct {
	Username string
	Password string
}

// stunServer is a LocalEndpoint's STUN server.
type stunServer struct {
	host  string
	port  uint16
	creds *StunCredentials
}

// WithStunServer sets the STUN server (RFC 9622 §6.1.1) that Resolve asks
// for this endpoint's server-reflexive address (the address and port a NAT
// maps it to, RFC 8489 Binding over UDP from the endpoint's address and
// port), and that Rendezvous, for the first local endpoint only, asks for
// its rendezvous socket's (with the port that socket is bound to; see
// Rendezvous). addr is a host name or an IP literal; at
// most one credentials value may be given (short-term credentials; none:
// unauthenticated Binding requests, as public STUN servers take). An empty
// addr, port 0 or a second, different server is an error reported when
// the endpoint is used.
func (l *LocalEndpoint) WithStunServer(addr string, port uint16, creds ...StunCredentials) *LocalEndpoint {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	srv := &stunServer{host: addr, port: port}
	switch {
	case len(creds) > 1 && l.e.err == nil:
		l.e.err = errors.New("WithStunServer: more than one credentials value")
	case len(creds) == 1:
		c := creds[0]
		srv.creds = &c
	}
	if (addr == "" || port == 0) && l.e.err == nil {
		l.e.err = fmt.Errorf("STUN server %q port %d: an address and a port are needed", addr, port)
	}
	if old := l.stun; old != nil && (old.host != addr || old.port != port) && l.e.err == nil {
		l.e.err = fmt.Errorf("two STUN servers (%s and %s): use two endpoints",
			net.JoinHostPort(old.host, strconv.Itoa(int(old.port))), net.JoinHostPort(addr, strconv.Itoa(int(port))))
	}
	l.stun = srv
	return l
}

// StunServer returns the STUN server set with WithStunServer.
func (l *LocalEndpoint) StunServer() (addr string, port uint16, ok bool) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	if l.stun == nil {
		return "", 0, false
	}
	return l.stun.host, l.stun.port, true
}

// IsServerReflexive reports whether Resolve learned this endpoint from a
// STUN server: its address and port are what the server saw, not an
// address of this host.
func (l *LocalEndpoint) IsServerReflexive() bool {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.reflexive
}

// NewLocalEndpoint returns an empty LocalEndpoint (any address, ephemeral
// port).
func NewLocalEndpoint() *LocalEndpoint { return &LocalEndpoint{} }

// WithHostName sets the local address by name ("localhost").
func (l *LocalEndpoint) WithHostName(name string) *LocalEndpoint {
	l.e.setOnce(&l.e.hostName, "host name", name)
	return l
}

// WithIPAddress sets the local IP address.
func (l *LocalEndpoint) WithIPAddress(ip string) *LocalEndpoint {
	l.e.setOnce(&l.e.ip, "IP address", ip)
	return l
}

// WithPort sets the local port (0: ephemeral).
func (l *LocalEndpoint) WithPort(port uint16) *LocalEndpoint {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	if l.e.portSet && l.e.port != uint32(port) && l.e.err == nil {
		l.e.err = fmt.Errorf("two ports (%d and %d): use two endpoints", l.e.port, port)
	}
	l.e.port, l.e.portSet = uint32(port), true
	return l
}

// WithService sets the local port by IANA service name ("http": Go's
// table and /etc/services, as for RemoteEndpoint.WithService without SRV
// records; a local endpoint's service never looks up DNS SRV records).
// An unknown name is an *EndpointError.
func (l *LocalEndpoint) WithService(service string) *LocalEndpoint {
	l.e.setOnce(&l.e.service, "service", service)
	return l
}

// WithUnixPath makes the endpoint a Unix domain socket at path; with a
// host name, IP address, port, service or interface, using it fails with
// an *EndpointError before any socket is made.
func (l *LocalEndpoint) WithUnixPath(path string) *LocalEndpoint {
	l.e.setOnce(&l.e.path, "path", path)
	return l
}

// WithAnySourceMulticastGroupIP makes the endpoint an any-source multicast
// group (ASM, RFC 9622 §6.1.1): an IPv4 or IPv6 multicast address (with an
// optional %zone meaning WithInterface), on the port WithPort gives (a
// port is needed). Listen joins the group (IP_ADD_MEMBERSHIP /
// IPV6_JOIN_GROUP) on the endpoint's interface (WithInterface, to which
// the socket is also bound) or, without one, on the interface the system
// routes the group to, and binds the group's port (SO_REUSEADDR: other
// receivers of the group on this host may bind it too). Every sender to
// the group becomes one received Connection (ConnectionReceived with its
// first datagram; receive-only, direction UnidirectionalReceive: Send
// fails with ErrReceiveOnly), and all of them are members of one
// Connection Group (GroupedConnections of one returns them all), the
// Listener's, which lives as long as the Listener and its Connections.
// Listener.Stop leaves the group at once (the Connections received stay
// open, with what they have received). Only UDP and UDP-Lite can be
// selected (see ErrMulticastNeedsDatagrams); remote endpoints, if any,
// restrict the senders as for any Listener. Initiate and Rendezvous do
// not take a local multicast group.
func (l *LocalEndpoint) WithAnySourceMulticastGroupIP(group string) *LocalEndpoint {
	l.e.setGroup(group, "", false)
	return l
}

// WithSingleSourceMulticastGroupIP makes the endpoint a source-specific
// multicast group (SSM, RFC 4607): Listen joins it for the datagrams of
// source only (IP_ADD_SOURCE_MEMBERSHIP / MCAST_JOIN_SOURCE_GROUP; the
// kernel drops the others), and is otherwise as
// WithAnySourceMulticastGroupIP. source is a unicast address of the
// group's family. Systems without source-specific joins (Windows) fail
// Listen with an error wrapping errors.ErrUnsupported. Rendezvous with
// such an endpoint is an EstablishmentError (RFC 9622 §6.1.1).
func (l *LocalEndpoint) WithSingleSourceMulticastGroupIP(group, source string) *LocalEndpoint {
	l.e.setGroup(group, source, true)
	return l
}

// UnixPath returns the Unix domain socket path, if any.
func (l *LocalEndpoint) UnixPath() string {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.e.path
}

// WithInterface binds every attempt made from this local endpoint
// (SO_BINDTODEVICE on Linux), and for Listen its listening sockets, to the
// named interface. With several local endpoints each is a branch of the
// candidate tree that Initiate races (RFC 9623 §4.1) and Listen listens on
// every one. The interface must exist when the Preconnection is used
// (ErrUnknownInterface otherwise, before any packet); an interface the
// interface Selection Property Prohibits, or that is not one it Requires,
// makes no attempt.
func (l *LocalEndpoint) WithInterface(name string) *LocalEndpoint {
	l.e.setOnce(&l.e.iface, "interface", name)
	return l
}

// Interface returns the interface named by WithInterface ("" when none):
// for an endpoint of Listener.LocalEndpoints, the interface its listening
// socket is bound to.
func (l *LocalEndpoint) Interface() string {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.e.iface
}

// String returns "host:port".
func (l *LocalEndpoint) String() string {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.e.label()
}

// Addr returns the endpoint's address and port when it holds an IP
// address.
func (l *LocalEndpoint) Addr() (netip.AddrPort, bool) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	a, err := netip.ParseAddr(l.e.ip)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(l.e.port)), true
}

// Port returns the endpoint's port.
func (l *LocalEndpoint) Port() uint16 {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return uint16(l.e.port)
}

func localFromMessage(m *messages.Endpoint) *LocalEndpoint {
	l := NewLocalEndpoint()
	if m == nil {
		return l
	}
	l.e.ip, l.e.hostName, l.e.iface, l.e.path = m.IpAddress, m.HostName, m.Interface, m.Path
	l.e.port, l.e.portSet = m.Port, m.Path == ""
	return l
}

func remoteFromMessage(m *messages.Endpoint) *RemoteEndpoint {
	r := NewRemoteEndpoint()
	if m == nil {
		return r
	}
	r.e.ip, r.e.hostName, r.e.iface, r.e.path = m.IpAddress, m.HostName, m.Interface, m.Path
	r.e.port, r.e.portSet = m.Port, m.Path == "" && m.Service == "" // a service's port is the service's
	return r
}
