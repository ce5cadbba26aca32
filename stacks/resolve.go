package stacks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Resolver resolves host names. The zero value uses net.DefaultResolver.
type Resolver struct {
	// LookupNetIP replaces net.DefaultResolver.LookupNetIP when set (tests).
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolveError reports a failed name resolution. It unwraps to the
// resolver's error (a *net.DNSError for real lookups).
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// Resolve returns the addresses of host ("localhost", "example.org" or an IP
// literal), IPv6 and IPv4 interleaved starting with IPv6 (RFC 8305 §4).
func (r Resolver) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	lookup := r.LookupNetIP
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	addrs, err := lookup(ctx, "ip", host)
	if err != nil {
		return nil, &ResolveError{Host: host, Err: err}
	}
	if len(addrs) == 0 {
		return nil, &ResolveError{Host: host, Err: fmt.Errorf("no addresses")}
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return Interleave(addrs), nil
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
