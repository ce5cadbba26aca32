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

// ResolutionDelay is how long ResolveStream waits for the AAAA answer once
// a positive A answer is in, before connecting starts (RFC 8305 §3: 50 ms),
// and how long a race waits for a missing HTTPS answer after the first
// positive address answer (Happy Eyeballs v3, LookupHTTPS).
const ResolutionDelay = 50 * time.Millisecond

// Resolver resolves host names the Happy Eyeballs way (RFC 8305 §3, §4),
// and services by their SRV records (LookupSRV). The zero value uses
// net.DefaultResolver and probes routes with the kernel's routing table.
// A Resolver is a value; its methods are safe for concurrent use.
type Resolver struct {
	// DNS is the resolver for the SRV records and, unless LookupNetIP is
	// set, the A and AAAA records. Nil: net.DefaultResolver.
	DNS *net.Resolver
	// LookupNetIP replaces DNS.LookupNetIP for the A and AAAA records when
	// set (tests, another naming system); SRV records are still looked up
	// with DNS. ResolveStream calls it with network "ip6" and "ip4",
	// concurrently; it must return promptly once ctx is done.
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// Routable reports whether this host has a route to a. Nil probes the
	// routing table by connecting an unbound UDP socket (no packet is
	// sent). ResolveStream asks only about the first IPv6 address, once,
	// and only when the A answer is not negative.
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

// answerState is where one family's query stands.
type answerState uint8

const (
	answerPending  answerState = iota
	answerNegative             // an error, or no address of the family
	answerPositive             // at least one address
)

// resolutionStart decides whether connecting starts with the answers in so
// far (RFC 8305 §3): preferred is the family to give preference to (IPv6,
// unless its first address has no route), other the other family.
// Connecting starts on a positive answer for the preferred family, or on a
// positive answer for the other one once the preferred one is negative or
// delayOver (ResolutionDelay has passed since that positive answer);
// armDelay asks for that delay to start. Two negative answers start
// nothing: the resolution failed. It is pure.
func resolutionStart(preferred, other answerState, delayOver bool) (start, armDelay bool) {
	switch {
	case preferred == answerPositive:
		return true, false
	case other != answerPositive:
		return false, false
	case preferred == answerNegative || delayOver:
		return true, false
	}
	return false, true
}

// ResolveStream resolves host ("localhost", "example.org" or an IP
// literal) the Happy Eyeballs way (RFC 8305 §3, §4), giving the addresses
// to yield as the answers come in, so that connecting can start before
// every answer is in:
//
//   - AAAA and A are queried concurrently (LookupNetIP with "ip6" and
//     "ip4"). A positive AAAA answer is yielded at once. A positive A
//     answer that comes first is yielded once the AAAA answer is in
//     (negative or positive), or ResolutionDelay after it, whichever comes
//     first. An answer that comes after the first yield is yielded when it
//     comes, so that its addresses still join the race (RFC 8305 §3).
//   - Every yield gives every address known so far, in the order to
//     attempt them had none been attempted yet: within a family the
//     resolver's order (Go's resolver and getaddrinfo already sort each
//     answer by RFC 6724 destination address selection); across families
//     IPv6 first (RFC 6724 precedence of ::/0 over ::ffff:0:0/96) unless
//     this host has no route to the first IPv6 address (RFC 6724 rule 1,
//     avoid unusable destinations: then IPv4 goes first, and a lone AAAA
//     answer waits ResolutionDelay for the A answer as a lone A answer
//     waits for AAAA); the families interleaved, starting with the first
//     family (First Address Family Count 1). A caller that has attempted
//     some addresses merges the later yields into what it has not
//     attempted yet.
//   - final is true on the last yield: both answers are in. A negative
//     answer after a positive one yields the same addresses, final.
//
// Duplicates are dropped and IPv4-mapped IPv6 addresses unmapped. yield
// runs on the calling goroutine. ResolveStream returns once both answers
// are in (after the final yield), with a *ResolveError when neither
// family has an address (yield is then never called), or with ctx's error
// as soon as ctx ends (no further yield). No lookup outlives it.
func (r Resolver) ResolveStream(ctx context.Context, host string, yield func(addrs []netip.Addr, final bool)) error {
	return r.ResolveStreamSince(ctx, host, func(addrs []netip.Addr, final bool, _ time.Time) { yield(addrs, final) })
}

// ResolveStreamSince is ResolveStream whose yields also tell when the
// first positive answer came (an IP literal: at the call), so that a
// caller waiting for another answer after it (the HTTPS records: Happy
// Eyeballs v3) counts the Resolution Delay from there, not from the
// yield, which may itself have waited it.
func (r Resolver) ResolveStreamSince(ctx context.Context, host string, yield func(addrs []netip.Addr, final bool, since time.Time)) error {
	if a, err := netip.ParseAddr(host); err == nil {
		yield([]netip.Addr{a.Unmap()}, true, time.Now())
		return nil
	}
	lookup := r.IPLookup()
	routable := r.Routable
	if routable == nil {
		routable = hasRoute
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
		wg.Wait() // the lookups honour qctx: no goroutine outlives ResolveStream
	}()

	var a6, a4 *answer
	var v6, v4 []netip.Addr
	var err6, err4 error
	route6 := -1 // whether v6[0] has a route: -1 not asked yet
	v6First := func() bool {
		if route6 < 0 {
			route6 = 0
			if routable(v6[0]) {
				route6 = 1
			}
		}
		return route6 == 1
	}
	var delay <-chan time.Time
	var since time.Time // the first positive answer's arrival
	delayOver, started := false, false
	for a6 == nil || a4 == nil {
		grew := false
		select {
		case a := <-ch:
			if a.v6 {
				a6 = &a
				v6, err6 = family(a6, false)
				grew = len(v6) > 0
			} else {
				a4 = &a
				v4, err4 = family(a4, true)
				grew = len(v4) > 0
			}
		case <-delay:
			delay, delayOver = nil, true
		case <-ctx.Done():
			return ctx.Err()
		}
		if grew && since.IsZero() {
			since = time.Now()
		}
		if err := ctx.Err(); err != nil {
			// ctx ended as an answer came (the lookup may have answered
			// because qctx ended with it): select picks either, and no
			// yield follows the end of ctx
			return err
		}
		if a6 == nil || a4 == nil { // the final yield is below
			if !started {
				s6, s4 := stateOf(a6, v6), stateOf(a4, v4)
				preferred, other := s6, s4
				if s6 == answerPositive && s4 != answerNegative && !v6First() {
					preferred, other = s4, s6
				}
				start, arm := resolutionStart(preferred, other, delayOver)
				if arm && delay == nil && !delayOver {
					t := time.NewTimer(ResolutionDelay)
					defer t.Stop()
					delay = t.C
				}
				if !start {
					continue
				}
				started, grew = true, true
			}
			if grew {
				yield(ordered(v6, v4, v6First), false, since)
			}
		}
	}
	if len(v6) == 0 && len(v4) == 0 {
		return &ResolveError{Host: host, Err: familyErrors{v6: err6, v4: err4}}
	}
	yield(ordered(v6, v4, v6First), true, since)
	return nil
}

// IPLookup is the function that looks up the A ("ip4") and AAAA ("ip6")
// records: LookupNetIP, else DNS's LookupNetIP, else
// net.DefaultResolver's. DNS's lookups go through a copy of it whose
// sockets close once a lookup's ctx ends (as LookupSRV's), so that a
// cancelled lookup does not wait for an answer until the resolver's
// timeout (Go's resolver heeds only a ctx's deadline there); each
// IPLookup has its own copy, so concurrent lookups of one name from two
// IPLookups are not merged into one query as net.Resolver merges its
// own. net.DefaultResolver (DNS nil) is used as it is: it may resolve
// through the system's getaddrinfo, which no socket of ours serves.
func (r Resolver) IPLookup() func(ctx context.Context, network, host string) ([]netip.Addr, error) {
	switch {
	case r.LookupNetIP != nil:
		return r.LookupNetIP
	case r.DNS != nil:
		return cancellable(r.DNS).LookupNetIP
	}
	return net.DefaultResolver.LookupNetIP
}

// Resolve returns every address of host ("localhost", "example.org" or an
// IP literal) in the order to attempt them: ResolveStream's final yield.
// It waits for both the AAAA and the A answer (bounded by ctx), as
// net.Resolver.LookupNetIP with "ip" does; a race does not wait, it
// follows ResolveStream instead (connecting starts on the first answers,
// and later ones join the race). Errors are *ResolveError, or ctx's error
// when ctx ends first.
func (r Resolver) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	err := r.ResolveStream(ctx, host, func(addrs []netip.Addr, final bool) {
		if final {
			out = addrs
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// stateOf is where a family's query stands: a (nil while pending) and the
// addresses family found in it.
func stateOf(a *answer, addrs []netip.Addr) answerState {
	switch {
	case a == nil:
		return answerPending
	case len(addrs) == 0:
		return answerNegative
	}
	return answerPositive
}

// ordered is the attempt order of the addresses known: both families
// interleaved, IPv6 first when v6First says its first address is usable
// (asked only when both families have addresses).
func ordered(v6, v4 []netip.Addr, v6First func() bool) []netip.Addr {
	first, second := v6, v4
	if len(v6) > 0 && len(v4) > 0 && !v6First() {
		first, second = v4, v6
	}
	out := make([]netip.Addr, 0, len(v6)+len(v4))
	return Interleave(append(append(out, first...), second...))
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
