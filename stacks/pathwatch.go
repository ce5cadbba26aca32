package stacks

import (
	"net"
	"net/netip"
)

// PathReading is one reading of a connection's path (RFC 9622 §8.3.2
// PathChange): its addresses and what the kernel says about the way to
// the peer. A field the system cannot read stays zero (and so compares
// equal across readings).
type PathReading struct {
	// Local is the local IP address (the port is left out: a new socket
	// to the same peer from the same address is the same path).
	Local netip.Addr
	// Remote is the peer's address and port.
	Remote netip.AddrPort
	// Interface is the outgoing interface of the kernel's route to Remote
	// and Source its preferred source address (Linux).
	Interface string
	Source    netip.Addr
	// RouteMTU is the MTU of that route: its mtu metric, else the MTU of
	// its outgoing interface (Linux).
	RouteMTU int
	// PMTU is the socket's path MTU: tcpi_pmtu for TCP and TLS, IP_MTU
	// (IPV6_MTU) for UDP and UDP-Lite (Linux).
	PMTU int
	// Subflows is the MPTCP subflow count (mptcpi_subflows) of a
	// connection that runs MPTCP on a kernel offering MPTCP_INFO; 0
	// otherwise.
	Subflows int
}

// PathDiff names the fields of cur that differ from old ("local",
// "remote", "interface", "source", "route MTU", "PMTU", "subflows"); it
// is empty when the path is the same. It is pure.
func PathDiff(old, cur PathReading) []string {
	var d []string
	if old.Local != cur.Local {
		d = append(d, "local")
	}
	if old.Remote != cur.Remote {
		d = append(d, "remote")
	}
	if old.Interface != cur.Interface {
		d = append(d, "interface")
	}
	if old.Source != cur.Source {
		d = append(d, "source")
	}
	if old.RouteMTU != cur.RouteMTU {
		d = append(d, "route MTU")
	}
	if old.PMTU != cur.PMTU {
		d = append(d, "PMTU")
	}
	if old.Subflows != cur.Subflows {
		d = append(d, "subflows")
	}
	return d
}

// AddrReading is the reading of a path from its addresses alone (local,
// remote: *net.TCPAddr, *net.UDPAddr or nil; other addresses read as
// zero).
func AddrReading(local, remote net.Addr) PathReading {
	return PathReading{Local: addrPortOf(local).Addr().Unmap().WithZone(""), Remote: unmapPort(addrPortOf(remote))}
}

// ReadPath reads the path of transport t, from local to remote: their
// addresses, and on Linux the kernel's route to remote (outgoing
// interface, preferred source, route MTU), t's path MTU (PathMTUReader)
// and its MPTCP subflow count (SubflowCounter). Outside Linux only the
// addresses are read. It makes a few system calls (a netlink route
// lookup, getsockopt); safe for concurrent use.
func ReadPath(t Transport, local, remote net.Addr) PathReading {
	r := AddrReading(local, remote)
	readKernelPath(&r, t)
	return r
}

// PathMTUReader is implemented by the Transports whose socket knows its
// path MTU: TCP and TLS (TCP_INFO tcpi_pmtu), UDP and UDP-Lite (IP_MTU,
// IPV6_MTU). Outside Linux it fails with errors.ErrUnsupported.
type PathMTUReader interface {
	PathMTU() (int, error)
}

// SubflowCounter is implemented by TCP and TLS Transports: MPTCPSubflows
// reads mptcpi_subflows (getsockopt SOL_MPTCP MPTCP_INFO). It fails with
// errors.ErrUnsupported when the connection does not run MPTCP, the
// kernel has no MPTCP_INFO, or outside Linux.
type SubflowCounter interface {
	MPTCPSubflows() (int, error)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// PathMTU reads tcpi_pmtu; see PathMTUReader.
func (t *tcpTransport) PathMTU() (int, error) { return tcpPathMTU(t.TCPConn) }

// PathMTU reads tcpi_pmtu of the TCP socket under TLS; see PathMTUReader.
func (t *tlsTransport) PathMTU() (int, error) { return tcpPathMTU(t.tcp) }

// PathMTU reads IP_MTU (IPV6_MTU); see PathMTUReader.
func (t *udpTransport) PathMTU() (int, error) { return udpPathMTU(t.UDPConn, t.peer) }

// MPTCPSubflows reads mptcpi_subflows; see SubflowCounter.
func (t *tcpTransport) MPTCPSubflows() (int, error) { return mptcpSubflows(t.TCPConn) }

// MPTCPSubflows reads mptcpi_subflows of the socket under TLS; see
// SubflowCounter.
func (t *tlsTransport) MPTCPSubflows() (int, error) { return mptcpSubflows(t.tcp) }

// PathLost tells whether a transport's path is gone as far as the host
// can tell, and why: its local address is no longer on an interface that
// is up and running (the address was removed, or its link went down), or
// its socket is bound to an interface (bound, BoundDevice) out of which
// the kernel has no route to the peer left (r is then a full reading,
// ReadPath, with no Interface). usable are the addresses of the
// interfaces that are up (UsableAddrs); nil skips the address check. An
// unspecified or unknown local address is never lost. It is pure.
func PathLost(r PathReading, bound string, usable map[netip.Addr]bool) (why string, lost bool) {
	local := r.Local.Unmap().WithZone("")
	if usable != nil && local.IsValid() && !local.IsUnspecified() && !usable[local] {
		return "local address " + local.String() + " is gone or its interface is down", true
	}
	if bound != "" && r.Remote.IsValid() && r.Interface == "" {
		return "no route to " + r.Remote.Addr().String() + " out of " + bound, true
	}
	return "", false
}

// UsableAddrs returns the IP addresses (unmapped, without zone) of the
// interfaces that are up and running.
func UsableAddrs() (map[netip.Addr]bool, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	usable := map[netip.Addr]bool{}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					usable[ip.Unmap()] = true
				}
			}
		}
	}
	return usable, nil
}
