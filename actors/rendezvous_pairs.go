package actors

import (
	"net/netip"
	"slices"
	"strconv"
)

// This file is the pure core of a rendezvous's candidate pairs (RFC 9622
// §7.3, in the manner of ICE, RFC 8445 §6.1.2): which local candidate is
// paired with which remote address, in which order. No sockets, no
// goroutines; rendezvous.go binds and checks what it computes.

// rvLocal is one local candidate of a rendezvous: one address of a local
// endpoint (or none: the wildcard, the kernel chooses), with the
// endpoint's port and interface. Once bound, Port is the bound port.
type rvLocal struct {
	Addr  netip.AddrPort // Addr() invalid: the wildcard (dual-stack)
	Iface string         // SO_BINDTODEVICE, "" for none
}

// rvPair is one candidate pair: a local candidate (by index into the
// candidates rendezvousPairs returns) and a remote address of its family.
type rvPair struct {
	Local  int
	Remote netip.AddrPort
}

// rvPairKey names a pair by its addresses (the local one as bound).
type rvPairKey struct{ Local, Remote netip.AddrPort }

// String is the pair as the attempts list names it: "local->remote"
// (a wildcard local address is left out: ":port").
func (k rvPairKey) String() string { return rvAddrString(k.Local) + "->" + k.Remote.String() }

// rvAddrString is ap as a string; without an address (a wildcard local
// candidate) only its port: ":port".
func rvAddrString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ":" + strconv.Itoa(int(ap.Port()))
	}
	return ap.String()
}

// rvSameFamily reports whether a local candidate of address l can reach
// remote address r: the wildcard reaches every family; otherwise both are
// IPv4 (IPv4-mapped addresses count as IPv4) or both IPv6.
func rvSameFamily(l, r netip.Addr) bool {
	return !l.IsValid() || l.Unmap().Is4() == r.Unmap().Is4()
}

// rendezvousPairs forms the candidate pairs of a rendezvous: every local
// candidate with every remote address of its family. The local candidates
// are every address of every local endpoint (a local endpoint without
// addresses is one wildcard candidate), in the endpoints' order and then
// the resolver's; a candidate that reaches no remote (an IPv6 address with
// only IPv4 remotes) is left out, and so is a duplicate (same address,
// port and interface). Remotes are unmapped and deduplicated, in the
// order given. The pairs are ordered by priority: the candidates' order
// first (the application's preference), then the remotes'. Unix socket
// paths have no pairs. It returns the candidates that have at least one
// pair, the pairs (Local indexes into those candidates) and every remote
// address; no pair is not an error here.
func rendezvousPairs(locals []localAddrs, remotes []netip.AddrPort) ([]rvLocal, []rvPair, []netip.AddrPort) {
	var rs []netip.AddrPort
	for _, r := range remotes {
		if !r.Addr().IsValid() {
			continue // a Unix socket path
		}
		u := unmapAddrPort(r)
		if !slices.Contains(rs, u) {
			rs = append(rs, u)
		}
	}
	var cands []rvLocal
	var pairs []rvPair
	add := func(c rvLocal) {
		if slices.Contains(cands, c) {
			return
		}
		var ps []rvPair
		for _, r := range rs {
			if rvSameFamily(c.Addr.Addr(), r.Addr()) {
				ps = append(ps, rvPair{Local: len(cands), Remote: r})
			}
		}
		if len(ps) == 0 {
			return
		}
		cands = append(cands, c)
		pairs = append(pairs, ps...)
	}
	for _, l := range locals {
		if l.path != "" {
			continue
		}
		if len(l.addrs) == 0 {
			add(rvLocal{Addr: netip.AddrPortFrom(netip.Addr{}, l.port), Iface: l.iface})
			continue
		}
		for _, a := range l.addrs {
			add(rvLocal{Addr: netip.AddrPortFrom(a.Unmap(), l.port), Iface: l.iface})
		}
	}
	return cands, pairs, rs
}
