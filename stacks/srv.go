package stacks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ErrServiceUnavailable: the service's SRV answer has no target but "."
// (RFC 2782: "the service is decidedly not available at this domain").
// A *ResolveError naming the SRV owner name wraps it; nothing is attempted.
var ErrServiceUnavailable = errors.New(`service not available at this domain (SRV target ".")`)

// ErrNoServicePort: a service has no port to reach it at: it is not an
// IANA service name (Go's table, /etc/services), and no SRV record gives
// one (none was found, or none is looked up for the endpoint). A
// *ServiceError naming the service wraps it.
var ErrNoServicePort = errors.New("no port for the service")

// ServiceError reports a service that leaves an endpoint with no port:
// Service is not an IANA service name and no SRV record of Host gives a
// port. Err is why the SRV lookups gave none (*ResolveError, for each
// label looked up), nil when none is looked up for Host (an IP address,
// localhost, a local endpoint). It unwraps to ErrNoServicePort and Err.
type ServiceError struct {
	Service string
	Host    string
	Err     error
}

func (e *ServiceError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("service %q: not an IANA service name, and no SRV record is looked up here (no port)", e.Service)
	}
	return fmt.Sprintf("service %q of %s: no SRV record, and not an IANA service name (no port to fall back on): %v",
		e.Service, e.Host, e.Err)
}

func (e *ServiceError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNoServicePort}
	}
	return []error{ErrNoServicePort, e.Err}
}

// SRVProto is the protocol label of the SRV records that give the
// endpoints of a stack (RFC 2782 "_Proto"): "udp" for the stacks over UDP
// (udp, udplite, and quic: QUIC has no label of its own), "" for the unix
// stack (no DNS), "tcp" for the others (tcp, tls, and MPTCP, which is TCP).
func SRVProto(stack string) string {
	switch stack {
	case "udp", "udplite", "quic":
		return "udp"
	case "unix":
		return ""
	}
	return "tcp"
}

// ValidServiceName reports whether s can be the "_Service" label of an SRV
// owner name: an RFC 6335 §5.1 service name, 1 to 15 letters, digits and
// hyphens, with at least one letter, neither starting nor ending with a
// hyphen and without two hyphens in a row. A port number ("443") is not.
func ValidServiceName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	letter := false
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

// SRVHostName reports whether host is a name whose SRV records can be
// looked up: not empty, not an IP literal, and neither "localhost" nor a
// name under it (RFC 6761 §6.3: localhost names are not sent to DNS). It
// is pure.
func SRVHostName(host string) bool {
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h != "localhost" && !strings.HasSuffix(h, ".localhost")
}

// SRVName is the owner name of the SRV records of service over proto at
// host: "_service._proto.host".
func SRVName(service, proto, host string) string {
	return "_" + service + "._" + proto + "." + host
}

// OrderSRV returns SRV records in the order to attempt their targets (RFC
// 2782, "Usage rules"): by priority, lowest first; within a priority, by
// weighted random selection: of the records not ordered yet, those with
// weight 0 first, then the others in their order, a number r is drawn
// uniformly in [0, sum of their weights] (randN(n) returns one in [0, n))
// and the first record whose running sum of weights is at least r goes
// next (the last one left is taken without a draw). A record of weight 0
// is then picked only when r is 0, or once no other is left; as r may be
// 0, the first record of the list wins one draw more than its weight
// (weights 1 and 3: 2 in 5 and 3 in 5, as RFC 2782 and Go's resolver
// have it). recs is not modified; nil records are dropped. It is
// pure (randN aside).
func OrderSRV(recs []*net.SRV, randN func(n int) int) []*net.SRV {
	in := make([]*net.SRV, 0, len(recs))
	for _, r := range recs {
		if r != nil {
			in = append(in, r)
		}
	}
	slices.SortStableFunc(in, func(a, b *net.SRV) int { return int(a.Priority) - int(b.Priority) })
	out := make([]*net.SRV, 0, len(in))
	for len(in) > 0 {
		n := 1
		for n < len(in) && in[n].Priority == in[0].Priority {
			n++
		}
		group := in[:n:n]
		in = in[n:]
		// zero weights first, keeping the order otherwise
		slices.SortStableFunc(group, func(a, b *net.SRV) int {
			return min(int(a.Weight), 1) - min(int(b.Weight), 1)
		})
		for len(group) > 0 {
			sum := 0
			for _, r := range group {
				sum += int(r.Weight)
			}
			pick := 0
			if sum > 0 && len(group) > 1 {
				r, run := randN(sum+1), 0
				for i, rec := range group {
					if run += int(rec.Weight); run >= r {
						pick = i
						break
					}
				}
			}
			out = append(out, group[pick])
			group = slices.Delete(group, pick, pick+1)
		}
	}
	return out
}

// LookupSRV looks up the SRV records of service over proto ("tcp" or
// "udp") at host, "_service._proto.host", with r.DNS (nil:
// net.DefaultResolver), and returns them in the order to attempt their
// targets (OrderSRV, weights drawn with math/rand/v2). Records whose
// target is "." are dropped; when no other is left the service is
// decidedly not available there, and the error is a *ResolveError
// wrapping ErrServiceUnavailable. A name with no SRV record fails with a
// *ResolveError wrapping the resolver's *net.DNSError (IsNotFound); so do
// the resolver's other failures. A malformed record the resolver dropped
// is not an error when others are left.
//
// It returns ctx's error as soon as ctx ends, and the lookup ends with
// it: net.Resolver.LookupSRV heeds only a ctx's deadline while it waits
// for an answer (not its cancellation), so the query goes through a copy
// of r.DNS (cancellable) whose sockets are closed once ctx ends. That
// holds wherever SRV records are looked up by Go's own resolver (every
// Unix; Windows with PreferGo). Windows' system resolver (DnsQuery, the
// default there) cannot be interrupted: its lookup runs on in a goroutine
// of its own until the system's timeout, its answer dropped.
func (r Resolver) LookupSRV(ctx context.Context, service, proto, host string) ([]*net.SRV, error) {
	res := cancellable(r.DNS)
	name := SRVName(service, proto, host)
	type answer struct {
		recs []*net.SRV
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		_, recs, err := res.LookupSRV(ctx, service, proto, host)
		ch <- answer{recs, err}
	}()
	var recs []*net.SRV
	var err error
	select {
	case a := <-ch:
		recs, err = a.recs, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var out []*net.SRV
	dot := false
	for _, rec := range recs {
		if rec == nil {
			continue
		}
		if rec.Target == "." {
			dot = true
			continue
		}
		out = append(out, rec)
	}
	switch {
	case len(out) > 0:
		return OrderSRV(out, rand.IntN), nil
	case dot:
		return nil, &ResolveError{Host: name, Err: ErrServiceUnavailable}
	case err == nil:
		err = &net.DNSError{Err: "no SRV record", Name: name, IsNotFound: true}
	}
	return nil, &ResolveError{Host: name, Err: err}
}

// cancellable returns a resolver that looks up as res does (nil:
// net.DefaultResolver), but whose every socket (res.Dial's, or a
// net.Dialer's) is closed once the ctx of the query it was dialed for
// ends: Go's resolver sets that ctx's deadline on the socket and never
// looks at its cancellation, so a cancelled query would otherwise wait
// for an answer until the resolver's timeout. The socket is returned as
// dialed (not wrapped), as Go's resolver tells UDP from TCP by its type.
// A socket closed after its query is over (the query's ctx ends when it
// returns) is closed a second time, harmlessly.
func cancellable(res *net.Resolver) *net.Resolver {
	if res == nil {
		res = net.DefaultResolver
	}
	dial := res.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return &net.Resolver{PreferGo: res.PreferGo, StrictErrors: res.StrictErrors,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			context.AfterFunc(ctx, func() { _ = c.Close() })
			return c, nil
		}}
}
