package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// ResolutionDelay is how long Resolve waits for the AAAA answer once a
// positive A answer is in (RFC 8305 §3: 50 ms).
const ResolutionDelay = 50 * time.Millisecond

// Resolver resolves host names the Happy Eyeballs way (RFC 8305 §3, §4).
// The zero value uses net.DefaultResolver and probes routes with the
// kernel's routing table. A Resolver is a value; its methods are safe for
// concurrent use.
type Resolver struct {
	// LookupNetIP replaces net.DefaultResolver.LookupNetIP when set (tests).
	// Resolve calls it with network "ip6" and "ip4", concurrently; it must
	// return promptly once ctx is done.
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// Routable reports whether this host has a route to a. Nil probes the
	// routing table by connecting an unbound UDP socket (no packet is
	// sent). Resolve asks only about the first IPv6 address, and only when
	// both families answered.
	Routable func(a netip.Addr) bool
}

// ResolveError reports a failed name resolution. It unwraps to the
// resolver's errors (*net.DNSError for real lookups; for a name with no
// address of either family, the AAAA and the A errors joined).
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// errNoAddresses is the cause when a lookup succeeds with no address.
var errNoAddresses = errors.New("no addresses")

type answer struct {
	v6    bool
	addrs []netip.Addr
	err   error
}

// Resolve returns the addresses of host ("localhost", "example.org" or an IP
// literal) in the order to attempt them (RFC 8305 §3, §4):
//
//   - AAAA and A are queried concurrently (LookupNetIP with "ip6" and
//     "ip4"). When the A answer comes first, Resolve waits at most
//     ResolutionDelay for the AAAA answer, then goes on with IPv4 alone; an
//     AAAA answer that comes later is dropped (RFC 8305 lets it join the
//     race; gotaps does not yet). When the AAAA answer comes first, Resolve
//     waits for the A answer (bounded by ctx), like net.Dialer.
//   - Within a family the resolver's order is kept: Go's resolver and
//     getaddrinfo already sort each answer by RFC 6724 destination address
//     selection.
//   - Across families, IPv6 goes first (RFC 6724 precedence of ::/0 over
//     ::ffff:0:0/96) unless this host has no route to the first IPv6
//     address (RFC 6724 rule 1, avoid unusable destinations): then IPv4
//     goes first. The families are then interleaved, starting with the
//     first family (First Address Family Count 1).
//
// Duplicates are dropped and IPv4-mapped IPv6 addresses unmapped. Errors
// are *ResolveError, or ctx's error when ctx ends first.
func (r Resolver) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	lookup := r.LookupNetIP
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	qctx, cancel := context.WithCancel(ctx)
	ch := make(chan answer, 2)
	var wg sync.WaitGroup
	for _, v6 := range []bool{true, false} {
		network := "ip4"
		if v6 {
			network = "ip6"
		}
		wg.Go(func() {
			addrs, err := lookup(qctx, network, host)
			ch <- answer{v6: v6, addrs: addrs, err: err}
		})
	}
	defer func() {
		cancel()
		wg.Wait() // the lookups honour qctx: no goroutine outlives Resolve
	}()

	var a6, a4 *answer
	var delay <-chan time.Time
loop:
	for a6 == nil || a4 == nil {
		select {
		case a := <-ch:
			if a.v6 {
				a6 = &a
				continue
			}
			a4 = &a
			if a6 == nil && a.err == nil && len(a.addrs) > 0 {
				t := time.NewTimer(ResolutionDelay)
				defer t.Stop()
				delay = t.C
			}
		case <-delay:
			break loop // AAAA is late: go on with IPv4 (RFC 8305 §3)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a6 == nil {
		a6 = &answer{v6: true, err: errors.New("AAAA answer later than the resolution delay")}
	}
	v6, err6 := family(a6, false)
	v4, err4 := family(a4, true)
	if len(v6) == 0 && len(v4) == 0 {
		return nil, &ResolveError{Host: host, Err: familyErrors{v6: err6, v4: err4}}
	}
	routable := r.Routable
	if routable == nil {
		routable = hasRoute
	}
	first, second := v6, v4
	if len(v6) > 0 && len(v4) > 0 && !routable(v6[0]) {
		first, second = v4, v6
	}
	return Interleave(append(first, second...)), nil
}

// family returns the deduplicated, unmapped addresses of one answer that
// belong to its family (is4), or why there are none.
// familyErrors is why neither family gave an address: one line, and one
// error when the AAAA and A lookups failed alike (a name that does not
// exist fails both the same way). It unwraps to both.
type familyErrors struct{ v6, v4 error }

func (e familyErrors) Error() string {
	if e.v6.Error() == e.v4.Error() {
		return e.v4.Error()
	}
	return "AAAA: " + e.v6.Error() + "; A: " + e.v4.Error()
}

func (e familyErrors) Unwrap() []error { return []error{e.v6, e.v4} }

func family(a *answer, is4 bool) ([]netip.Addr, error) {
	if a.err != nil {
		return nil, a.err
	}
	var out []netip.Addr
	seen := make(map[netip.Addr]bool, len(a.addrs))
	for _, ad := range a.addrs {
		ad = ad.Unmap()
		if ad.Is4() != is4 || seen[ad] {
			continue
		}
		seen[ad] = true
		out = append(out, ad)
	}
	if len(out) == 0 {
		return nil, errNoAddresses
	}
	return out, nil
}

// hasRoute reports whether the kernel has a route to a: connecting a UDP
// socket picks a source address without sending anything.
func hasRoute(a netip.Addr) bool {
	network := "udp6"
	if a.Is4() {
		network = "udp4"
	}
	c, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9)))
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Interleave orders addresses by family, alternating IPv6 and IPv4 and
// starting with the family of the first address, keeping the order within
// each family (RFC 8305 §4, First Address Family Count 1).
func Interleave(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	var first, second []netip.Addr
	firstIs4 := addrs[0].Is4()
	for _, a := range addrs {
		if a.Is4() == firstIs4 {
			first = append(first, a)
		} else {
			second = append(second, a)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
