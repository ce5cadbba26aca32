package actors

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gotaps/gotaps/stacks"
)

// This file is the pure core of racing (RFC 9623 §4, RFC 8305 §4-§5): the
// candidate tree flattened into an ordered list of attempts, and the
// schedule of their start times. It has no goroutines, timers or actors;
// racer.go runs what it computes.

// Connection Attempt Delay bounds (RFC 8305 §8).
const (
	DefaultAttemptDelay = 250 * time.Millisecond
	MinAttemptDelay     = 10 * time.Millisecond
	MaxAttemptDelay     = 2 * time.Second
)

// maxDerivedEndpoints bounds how many addresses of one remote endpoint are
// attempted (RFC 9623 §12.2: limit the state a DNS answer can create).
const maxDerivedEndpoints = 16

// ClampAttemptDelay returns the effective Connection Attempt Delay: the
// default for 0, clamped to [MinAttemptDelay, MaxAttemptDelay].
func ClampAttemptDelay(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultAttemptDelay
	case d < MinAttemptDelay:
		return MinAttemptDelay
	case d > MaxAttemptDelay:
		return MaxAttemptDelay
	}
	return d
}

// nextStart returns when the next attempt starts in a staggered race (RFC
// 9623 §4.3, RFC 8305 §5): one Connection Attempt Delay after the last
// start, or now when an attempt has just failed (failures never wait for
// the timer).
func nextStart(now, lastStart time.Time, delay time.Duration, lastFailed bool) time.Time {
	if lastFailed {
		return now
	}
	return lastStart.Add(delay)
}

// secureFallbackHold is the longest a plain attempt waits behind a
// running secure attempt to the same remote under opportunistic security
// (messages.ConnectionConfig.SecureFallback): long enough for a TLS 1.2
// handshake over a 600 ms round trip, short enough that a server that
// accepts TCP and never answers a ClientHello still gets its plain
// connection. A secure attempt that fails releases its fallbacks at once.
const secureFallbackHold = 2 * time.Second

// attemptState is what pickAttempt needs to know of a candidate: when it
// started (zero: not yet) and whether it has ended.
type attemptState struct {
	start time.Time
	ended bool
	// spokeTLS: a secure attempt that ended after its peer answered in
	// TLS (stacks.TLSHandshakeError.PeerAnswered)
	spokeTLS bool
}

// pickAttempt returns the candidate to start now: the first in order that
// has not started and is not held back. With fallback, a plain candidate
// is held while a secure candidate to the same target (remote, local
// address, interface) has not started yet, or runs and started less than
// hold ago: a slow TLS handshake to a TLS server is waited for, not beaten
// by plain TCP to its port, and a plain winner that the race cache put
// first does not skip TLS (a downgrade once would otherwise stick for as
// long as the cache keeps it). A plain candidate whose secure sibling
// failed after its peer answered in TLS is never started: that peer is a
// TLS server, and its failure (a refused certificate, no common ALPN, the
// trust callback's no) is no reason to talk plain text to it. It returns
// -1 when none can start; wake is
// then the earliest time a held candidate's hold ends by the clock (zero
// when none is held by the clock). It is pure.
func pickAttempt(cands []candidate, st []attemptState, fallback bool, hold time.Duration, now time.Time) (idx int, wake time.Time) {
	for i, c := range cands {
		if !st[i].start.IsZero() {
			continue
		}
		if !fallback || c.stack.Capabilities().Secure {
			return i, time.Time{}
		}
		var until time.Time // the end of the latest hold on i
		first := false      // a secure sibling has not started: it goes first
		tlsPeer := false    // a secure sibling's peer answered in TLS
		for j, s := range cands {
			if !s.stack.Capabilities().Secure || s.remote != c.remote || s.local != c.local || s.iface != c.iface || s.path != c.path {
				continue
			}
			switch {
			case st[j].ended && st[j].spokeTLS:
				tlsPeer = true
			case st[j].ended:
			case st[j].start.IsZero():
				first = true
			default:
				if end := st[j].start.Add(hold); end.After(now) && end.After(until) {
					until = end
				}
			}
		}
		if tlsPeer {
			// the peer speaks TLS: its secure attempt failed for another
			// reason (certificate, ALPN, a callback), and plain text to a
			// TLS server would be a downgrade: this fallback never starts
			continue
		}
		if until.IsZero() && !first {
			return i, time.Time{}
		}
		if !until.IsZero() && (wake.IsZero() || until.Before(wake)) {
			wake = until
		}
	}
	return -1, wake
}

// candidate is one leaf of the candidate tree: [path, stack, endpoint].
type candidate struct {
	stack  stacks.Stack
	remote netip.AddrPort
	local  netip.AddrPort
	iface  string // SO_BINDTODEVICE: the path's interface (local endpoint, interface property, scoped remote)
	label  string // the endpoint as the application named it
	path   string // a Unix domain socket path (remote is then zero)
	group  int    // the index of its path group in the plan that made it (planCandidates)
}

// candKey is what tells a candidate apart: the same attempt planned again
// has the same key.
type candKey struct {
	stack         string
	remote, local netip.AddrPort
	iface, path   string
}

func (c candidate) key() candKey {
	return candKey{stack: c.stack.Name(), remote: c.remote, local: c.local, iface: c.iface, path: c.path}
}

// endpoint names the attempt's endpoint in reports and traces.
func (c candidate) endpoint() string {
	if c.path != "" {
		return c.path
	}
	return c.remote.String()
}

// serverName is the name a secure attempt verifies the server's
// certificate against (and sends as SNI) unless the security parameters
// name one: the host name of the RemoteEndpoint the candidate was derived
// from, "" when that endpoint is an IP address (the address itself is
// verified then). ok is false when the candidate does not know its
// endpoint (no label): the connection's default stands.
func (c candidate) serverName() (name string, ok bool) {
	if c.label == "" {
		return "", false
	}
	host, _, err := net.SplitHostPort(c.label)
	if err != nil {
		return "", false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", true
	}
	return host, true
}

// same reports whether c is the attempt a cache entry names (a Unix
// domain socket by its path: its address is zero).
func (c candidate) same(w raceWinner) bool {
	return c.stack.Name() == w.stack && c.remote == w.remote && c.path == w.path
}

// remoteAddrs are the derived endpoints of one RemoteEndpoint, in the order
// the resolver gave them (families already interleaved).
type remoteAddrs struct {
	label string
	addrs []netip.AddrPort
	iface string // the interface a scoped (link-local) address needs, "" for any
	unix  string // a Unix domain socket path instead of addresses
	// protocol is the one stack the endpoint is for
	// (RemoteEndpoint.WithProtocol), "" for any
	protocol string
	// transport restricts the endpoint to the stacks of one SRV protocol
	// label (stacks.SRVProto: "tcp" or "udp"), "" for any: the endpoints
	// derived from a service's SRV records (resolve_srv.go)
	transport string
	// https is what the endpoint's HTTPS records say of its stacks
	// (resolve_https.go), nil without any; httpsOnly: the addresses are
	// those of the service endpoint the records name, attempted over the
	// stacks they offer only; httpsAfter: the host's own addresses of an
	// endpoint whose records name another service endpoint, attempted
	// after that endpoint's (HEv3: addresses without a service last)
	https      *stacks.HTTPSPlan
	httpsOnly  bool
	httpsAfter bool
}

// localAddrs is one LocalEndpoint, resolved: a branch of the candidate
// tree's network path level (RFC 9623 §4.1).
type localAddrs struct {
	label string
	addrs []netip.Addr // its addresses; none: any (the kernel chooses)
	port  uint16
	iface string // the interface it names (SO_BINDTODEVICE), "" for none
	path  string // a Unix domain socket path instead (listeners only)
}

// pick returns the local address of l for a remote address of a's family;
// ok is false when l has addresses but none of that family.
func (l localAddrs) pick(a netip.Addr) (netip.Addr, bool) {
	if len(l.addrs) == 0 {
		return netip.Addr{}, true
	}
	for _, la := range l.addrs {
		if la.Unmap().Is4() == a.Unmap().Is4() {
			return la, true
		}
	}
	return netip.Addr{}, false
}

// target is one derived endpoint on one path: where to connect and from
// which local address.
type target struct {
	remote     netip.AddrPort
	local      netip.AddrPort
	label      string
	unix       string
	protocol   string            // the only stack for it (remoteAddrs.protocol), "" for any
	transport  string            // the SRV protocol label of its stacks (remoteAddrs.transport), "" for any
	https      *stacks.HTTPSPlan // remoteAddrs.https
	httpsOnly  bool              // remoteAddrs.httpsOnly
	httpsAfter bool              // remoteAddrs.httpsAfter
}

// pathGroup is one network path of the candidate tree with its targets:
// attempts bound to an interface, or routed by the kernel out of one.
type pathGroup struct {
	iface   string // SO_BINDTODEVICE; "" lets the kernel route
	via     string // the interface the attempts go out of ("" unknown)
	level   int8   // the interface property's preference for it
	targets []target
}

// pathLookup is what planPaths asks the host: the kernel's route lookup
// (stacks.LookupRoute), the source address it would choose with a
// temporary address preference (stacks.SourceAddress), and whether an
// address is temporary (stacks.IsTemporaryAddress). None sends a packet.
type pathLookup interface {
	route(dst, src netip.Addr, iface string) (stacks.Route, error)
	source(dst netip.AddrPort, src netip.Addr, iface string, pref int8) (netip.Addr, error)
	temporary(a netip.Addr) bool
}

// hostLookup is the pathLookup of this host.
type hostLookup struct{}

func (hostLookup) route(dst, src netip.Addr, iface string) (stacks.Route, error) {
	return stacks.LookupRoute(dst, src, iface)
}

func (hostLookup) source(dst netip.AddrPort, src netip.Addr, iface string, pref int8) (netip.Addr, error) {
	return stacks.SourceAddress(dst, src, iface, pref)
}

func (hostLookup) temporary(a netip.Addr) bool {
	t, err := stacks.IsTemporaryAddress(a)
	return err == nil && t
}

// pathRank orders paths by the interface property: Require and Prefer
// first, then no preference, then Avoid.
func pathRank(level int8) int {
	switch {
	case level >= stacks.Prefer:
		return 0
	case level <= stacks.Avoid:
		return 2
	}
	return 1
}

// planPaths builds the network path level of the candidate tree (RFC 9623
// §4.1) and the derived endpoints under each path. The branches are the
// local endpoints (one "any" branch when none is given), each split by
// the interface property's plan:
//
//   - a local endpoint naming an interface is bound to it (an attempt is
//     not made when the plan does not allow that interface);
//   - otherwise, with Required interfaces, one branch bound to each;
//   - otherwise one branch bound to each Preferred interface, then the
//     branch the kernel routes. Each of its attempts goes into the group
//     of the interface the kernel's route lookup names: out of a
//     Prohibited interface it is not made, and when that interface is
//     Prohibited or Avoided the attempt is also offered bound to every
//     alternative interface with a route to the remote (not for
//     destinations of this host, which only the loopback reaches).
//
// A remote's scoped address adds its interface to the path. Derived
// endpoints of several remotes alternate within a path (the first address
// of each remote, then the second, ...), at most maxDerivedEndpoints per
// remote; a remote address is paired with the branch's local address of
// the same family. useTemporaryLocalAddress Require drops IPv4 targets
// (RFC 9622 §6.2.13: only IPv6 has temporary addresses); with Require or
// Prohibit the source address is chosen here (with the kernel's
// preference, then checked) and pinned, so that the stack's socket cannot
// pick another. Groups are ordered by the interface preference (stable:
// Prefer, none, Avoid). The route lookups are only made when the
// interface property has entries.
//
// The result is empty only with an error: the first *stacks.PathError that
// dropped an attempt, or why no remote address was usable.
func planPaths(remotes []remoteAddrs, locals []localAddrs, plan stacks.PathPlan, look pathLookup) ([]pathGroup, error) {
	if len(locals) == 0 {
		locals = []localAddrs{{}}
	}
	type groupKey struct {
		branch     int
		iface, via string
	}
	type seenKey struct {
		iface         string
		remote, local netip.AddrPort
		unix          string
		protocol      string // TCP and QUIC endpoints may share an address and port
		transport     string
		httpsOnly     bool
		// the records of a service endpoint they name: two such
		// endpoints may share an address and offer it other stacks
		// (planCandidates keeps one attempt per stack and port)
		https *stacks.HTTPSPlan
	}
	index := map[groupKey]int{}
	seen := map[seenKey]bool{}
	var groups []pathGroup
	var pathErr, otherErr error
	drop := func(err error) {
		if _, ok := err.(*stacks.PathError); ok {
			if pathErr == nil {
				pathErr = err
			}
		} else if otherErr == nil {
			otherErr = err
		}
	}
	tmp := plan.TemporaryAddress
	emit := func(branch int, iface, via string, t target) {
		if t.unix == "" && !t.remote.Addr().Unmap().Is4() && (tmp == stacks.Require || tmp == stacks.Prohibit) {
			want := tmp == stacks.Require
			src := t.local.Addr()
			if !src.IsValid() {
				s, err := look.source(t.remote, netip.Addr{}, iface, tmp)
				if err != nil {
					drop(err)
					return
				}
				src = s
			}
			if look.temporary(src) != want {
				kind := "a temporary"
				if !want {
					kind = "no temporary"
				}
				drop(&stacks.PathError{Property: "useTemporaryLocalAddress", Name: t.remote.String(),
					Reason: fmt.Sprintf("%s needs %s source address; %s is the one this host has for it", prefName(tmp), kind, src)})
				return
			}
			t.local = netip.AddrPortFrom(src, t.local.Port())
		}
		sk := seenKey{iface, t.remote, t.local, t.unix, t.protocol, t.transport, t.httpsOnly, nil}
		if t.httpsOnly {
			sk.https = t.https
		}
		if seen[sk] {
			return
		}
		seen[sk] = true
		k := groupKey{branch, iface, via}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			lvl := stacks.NoPreference
			if via != "" {
				lvl = plan.Level(via)
			}
			groups = append(groups, pathGroup{iface: iface, via: via, level: lvl})
		}
		groups[i].targets = append(groups[i].targets, t)
	}
	for bi, l := range locals {
		var binds []string
		switch {
		case l.iface != "":
			if !plan.Allowed(l.iface) {
				drop(&stacks.PathError{Property: "interface", Name: l.iface,
					Reason: "the local endpoint's interface is " + notAllowed(plan)})
				continue
			}
			binds = []string{l.iface}
		case len(plan.Required) > 0:
			binds = plan.Required
		default:
			binds = append(append(binds, plan.Preferred...), "")
		}
		for _, bind := range binds {
			for i := 0; i < maxDerivedEndpoints; i++ {
				added := false
				for _, r := range remotes {
					if i >= len(r.addrs) {
						continue
					}
					added = true
					if r.unix != "" {
						emit(bi, "", "", target{label: r.label, unix: r.unix, protocol: r.protocol})
						continue
					}
					ra := r.addrs[i]
					a := ra.Addr()
					iface := bind
					if r.iface != "" {
						if !plan.Allowed(r.iface) {
							drop(&stacks.PathError{Property: "interface", Name: r.iface,
								Reason: "the remote endpoint's interface is " + notAllowed(plan)})
							continue
						}
						if iface != "" && iface != r.iface {
							continue // another path than the one the scoped address needs
						}
						iface = r.iface
					}
					la, ok := l.pick(a)
					if !ok {
						drop(fmt.Errorf("local endpoint %s has no address of the family of %s", l.label, a))
						continue
					}
					if tmp == stacks.Require && a.Unmap().Is4() {
						drop(&stacks.PathError{Property: "useTemporaryLocalAddress", Name: ra.String(),
							Reason: "Require: IPv4 has no temporary addresses"})
						continue
					}
					t := target{remote: ra, local: netip.AddrPortFrom(la, l.port), label: r.label, protocol: r.protocol,
						transport: r.transport, https: r.https, httpsOnly: r.httpsOnly, httpsAfter: r.httpsAfter}
					if iface != "" {
						emit(bi, iface, iface, t)
						continue
					}
					if !plan.Constrained() {
						emit(bi, "", "", t)
						continue
					}
					rt, err := look.route(a, la, "")
					if err != nil {
						emit(bi, "", "", t) // no route: the attempt reports it
						continue
					}
					lvl := plan.Level(rt.Interface)
					switch {
					case slices.Contains(binds, rt.Interface):
						// the branch bound to that (Preferred) interface has it
					case plan.Allowed(rt.Interface):
						emit(bi, "", rt.Interface, t)
					default:
						drop(&stacks.PathError{Property: "interface", Name: rt.Interface,
							Reason: fmt.Sprintf("the route to %s goes out of this interface, which is %s", a, notAllowed(plan))})
					}
					if (lvl == stacks.Prohibit || lvl == stacks.Avoid) && !rt.Local {
						for _, y := range plan.Alternatives(rt.Interface) {
							if yr, err := look.route(a, la, y); err == nil && yr.Interface == y && !yr.Local {
								emit(bi, y, y, t)
							}
						}
					}
				}
				if !added {
					break
				}
			}
		}
	}
	if len(groups) == 0 {
		switch {
		case pathErr != nil:
			return nil, pathErr
		case otherErr != nil:
			return nil, otherErr
		}
		return nil, errors.New("no usable remote address")
	}
	sort.SliceStable(groups, func(i, j int) bool { return pathRank(groups[i].level) < pathRank(groups[j].level) })
	return groups, nil
}

func notAllowed(plan stacks.PathPlan) string {
	if len(plan.Required) > 0 {
		return "not one of the Required (" + strings.Join(plan.Required, ", ") + ")"
	}
	return "Prohibited"
}

func prefName(p int8) string {
	switch p {
	case stacks.Require:
		return "Require"
	case stacks.Prefer:
		return "Prefer"
	case stacks.Avoid:
		return "Avoid"
	case stacks.Prohibit:
		return "Prohibit"
	}
	return "NoPreference"
}

// listenSite is where one listening socket per transport protocol is
// bound: a local endpoint's address and port, and an interface.
type listenSite struct {
	endpoint int // the index of the local endpoint
	local    netip.AddrPort
	iface    string // SO_BINDTODEVICE, "" for none
	path     string // a Unix domain socket path instead
}

func (s listenSite) String() string {
	switch {
	case s.path != "":
		return s.path
	case s.iface != "":
		return s.local.String() + "%" + s.iface
	}
	return s.local.String()
}

// planListen lists the listening sites of a passive open (RFC 9623 §4.7):
// every local endpoint is listened on (its first address; none: the
// wildcard), bound to the interface it names, or else to each interface of
// plan.ListenInterfaces (unbound when that is nil: no Require and no
// Prohibit). An endpoint is skipped with a *stacks.PathError when the plan
// does not allow its interface, when the plan Prohibits something and no
// allowed interface is up, when useTemporaryLocalAddress is Require and
// its address is IPv4, or when it is Require or Prohibit and its IPv6
// address is not, or is, temporary. The result is empty only with an
// error. It is pure.
func planListen(locals []localAddrs, plan stacks.PathPlan, temporary func(netip.Addr) bool) ([]listenSite, error) {
	var sites []listenSite
	var firstErr error
	drop := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	tmp := plan.TemporaryAddress
	for i, l := range locals {
		if l.path != "" {
			sites = append(sites, listenSite{endpoint: i, path: l.path})
			continue
		}
		var addr netip.Addr
		if len(l.addrs) > 0 {
			addr = l.addrs[0]
		}
		if addr.IsValid() && (tmp == stacks.Require || tmp == stacks.Prohibit) {
			want := tmp == stacks.Require
			if addr.Unmap().Is4() && want {
				drop(&stacks.PathError{Property: "useTemporaryLocalAddress", Name: addr.String(),
					Reason: "Require: IPv4 has no temporary addresses"})
				continue
			}
			if addr.Unmap().Is6() && temporary(addr) != want {
				drop(&stacks.PathError{Property: "useTemporaryLocalAddress", Name: addr.String(),
					Reason: prefName(tmp) + ": the local endpoint's address is not what it asks for"})
				continue
			}
		}
		binds := []string{""}
		switch {
		case l.iface != "":
			if !plan.Allowed(l.iface) {
				drop(&stacks.PathError{Property: "interface", Name: l.iface,
					Reason: "the local endpoint's interface is " + notAllowed(plan)})
				continue
			}
			binds = []string{l.iface}
		default:
			if ifs := plan.ListenInterfaces(); ifs != nil {
				binds = ifs
				if len(ifs) == 0 {
					drop(&stacks.PathError{Property: "interface",
						Reason: "Prohibit: no interface that is up is allowed (the listener does not listen unbound)"})
				}
			}
		}
		for _, b := range binds {
			sites = append(sites, listenSite{endpoint: i, local: netip.AddrPortFrom(addr, l.port), iface: b})
		}
	}
	if len(sites) == 0 {
		if firstErr == nil {
			firstErr = errors.New("no local endpoint to listen on")
		}
		return nil, firstErr
	}
	return sites, nil
}

// planCandidates flattens the candidate tree into the order of attempts.
// The branching order is RFC 9623 §4.1's: network paths (the groups of
// planPaths, in their order) above protocol options (the stacks, best
// first) above derived endpoints (the group's targets, in order); a Unix
// socket path is paired only with the unix stack, an address only with
// the others, and the endpoint of a RemoteEndpoint made specific to one
// protocol (WithProtocol) only with that stack, and an endpoint derived
// from an SRV record only with the stacks of its "_tcp" or "_udp" label.
// Within a path, the candidates of an endpoint with HTTPS records
// (target.https) over the quic and tls stacks are ordered by what the
// records offer (rankHTTPS: offered first, by SvcPriority, not offered
// last), in the places those candidates hold, and an offered stack goes
// to its record's port; the addresses of a service endpoint the records
// name (target.httpsOnly) go over the stacks they offer only, and the
// host's own addresses of that endpoint (target.httpsAfter) after them,
// over every stack. It is pure.
func planCandidates(sts []stacks.Stack, groups []pathGroup) []candidate {
	var out []candidate
	for gi, g := range groups {
		first := len(out)
		var ranks []int // per candidate of the group from first on, once one has HTTPS records
		for _, st := range sts {
			for _, t := range g.targets {
				if (st.Name() == "unix") != (t.unix != "") {
					continue // a socket path only over the unix stack, an address never
				}
				if t.protocol != "" && t.protocol != st.Name() {
					continue // an endpoint for another stack (RemoteEndpoint.WithProtocol)
				}
				if t.transport != "" && t.transport != stacks.SRVProto(st.Name()) {
					continue // an SRV record for the other transport ("_tcp" or "_udp")
				}
				if t.httpsOnly {
					if o, _ := t.https.Offer(st.Name()); !o.Offered {
						continue // the records' service endpoint, over a stack they do not offer
					}
				}
				remote, rank := t.remote, -1
				if t.httpsAfter {
					rank = httpsAfterRank
				}
				if t.https != nil {
					if rk, ok := t.https.Rank(st.Name()); ok {
						rank = rk
						if o, _ := t.https.Offer(st.Name()); o.Offered && o.Port != 0 {
							remote = netip.AddrPortFrom(remote.Addr(), o.Port)
						}
					}
				}
				if rank >= 0 && ranks == nil {
					ranks = make([]int, len(out)-first, len(out)-first+1)
					for i := range ranks {
						ranks[i] = -1
					}
				}
				if ranks != nil {
					ranks = append(ranks, rank)
				}
				out = append(out, candidate{stack: st, remote: remote, local: t.local, iface: g.iface,
					label: t.label, path: t.unix, group: gi})
			}
		}
		if ranks != nil {
			rankHTTPS(out[first:], ranks)
			// the service endpoint of the records and the host may share
			// an address: one attempt, at the better place
			out = append(out[:first], uniqueCandidates(out[first:])...)
		}
	}
	return out
}

// mergePlan merges into a running race the candidates planned again after
// a later DNS answer (RFC 8305 §3: addresses that come while attempts are
// in progress join the list of those not attempted yet, sorted with them,
// §4). cands are the race's candidates, started the indices of those
// started, in start order, and plan the candidate list planned again
// (planCandidates) over every address known now.
//
// It returns cands with plan's new candidates appended (a candidate keeps
// its index) and order: started, then every candidate of plan not started
// yet, in the order to attempt them. That order is plan's, the order had
// every answer come at once, except that within a block that has started
// attempts (the addresses of one remote endpoint over one stack on one
// path) the families alternate again from the block's last attempt on,
// starting with the other family: a late A answer after an IPv6 attempt
// goes next, and a late AAAA answer after IPv4 attempts alternates with
// the IPv4 addresses left instead of coming all before them. A candidate
// of cands that plan no longer has (maxDerivedEndpoints may push it out)
// is not attempted unless it has started. It is pure.
func mergePlan(cands []candidate, started []int, plan []candidate) (out []candidate, order []int) {
	out = slices.Clone(cands)
	index := make(map[candKey]int, len(cands)+len(plan))
	for i, c := range out {
		index[c.key()] = i
	}
	seq := make(map[int]int, len(started)) // 1 for the first attempt started
	for n, i := range started {
		seq[i] = n + 1
	}
	type block struct {
		group        int
		stack, label string
	}
	type lastRun struct {
		seq int
		is4 bool
	}
	last := map[block]lastRun{}
	var pending []int    // not started, in plan's order
	var blocks []block   // pending[k]'s block
	in := map[int]bool{} // planned (plan may repeat a candidate)
	for _, c := range plan {
		k := c.key()
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, c)
		}
		if in[i] {
			continue
		}
		in[i] = true
		b := block{group: c.group, stack: c.stack.Name(), label: c.label}
		if s := seq[i]; s > 0 {
			if s > last[b].seq {
				last[b] = lastRun{seq: s, is4: c.remote.Addr().Unmap().Is4()}
			}
			continue
		}
		out[i] = c // with its group in this plan
		pending = append(pending, i)
		blocks = append(blocks, b)
	}
	done := map[block]bool{}
	for k, b := range blocks {
		lr, ok := last[b]
		if !ok || done[b] {
			continue
		}
		done[b] = true
		var slots, next, then []int // next: the other family than the last attempt's
		for j := k; j < len(blocks); j++ {
			if blocks[j] != b {
				continue
			}
			slots = append(slots, j)
			if i := pending[j]; out[i].remote.Addr().Unmap().Is4() != lr.is4 {
				next = append(next, i)
			} else {
				then = append(then, i)
			}
		}
		alt := make([]int, 0, len(slots))
		for n := 0; n < len(next) || n < len(then); n++ {
			if n < len(next) {
				alt = append(alt, next[n])
			}
			if n < len(then) {
				alt = append(alt, then[n])
			}
		}
		for n, j := range slots {
			pending[j] = alt[n]
		}
	}
	order = make([]int, 0, len(started)+len(pending))
	return out, append(append(order, started...), pending...)
}

// promote moves the candidate that won the last race to the same remotes
// (stack and address from the race cache, RFC 9623 §9) to the front,
// keeping the others' order. ok is false when no candidate matches; the
// input is never modified.
func promote(cands []candidate, stack string, remote netip.AddrPort) (out []candidate, ok bool) {
	return promoteWinner(cands, raceWinner{stack: stack, remote: remote})
}

// promoteWinner is promote for a race cache entry (which names a Unix
// domain socket by its path).
func promoteWinner(cands []candidate, w raceWinner) (out []candidate, ok bool) {
	for i, c := range cands {
		if c.same(w) {
			if i == 0 {
				return cands, true // first already
			}
			out = make([]candidate, 0, len(cands))
			out = append(out, c)
			out = append(out, cands[:i]...)
			return append(out, cands[i+1:]...), true
		}
	}
	return cands, false
}
