package actors

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// A RemoteEndpoint with a host name, reached over a secure stack by an
// application that speaks HTTP, has its HTTPS resource records (RFC 9460)
// looked up alongside its addresses (Happy Eyeballs v3): they tell which
// of QUIC ("h3") and TLS over TCP ("http/1.1", "h2") the server offers,
// and on which port (stacks.PlanHTTPS). The race puts the stacks offered
// first and those not offered last (never drops them: a record that is
// wrong does not fail a connection that works without it), and sends an
// offered stack to its record's port. The service endpoints other than
// the host (TargetNames, an alias target) are attempted over the stacks
// their records offer, in SvcPriority order with the host's when it is
// one of them, before the host's own addresses when it is not (then
// over every stack). This file is that step of
// resolution; resolveStream waits for the answer at most
// stacks.ResolutionDelay once addresses are in, and re-plans the attempts
// not started yet when it comes later.

// httpsName returns the name whose HTTPS records the remote endpoint r
// has for a race over the stacks of cfg (stacks.HTTPSName: r's host
// name for port 443, "_PORT._https.host" for another port), "" when none
// is looked up: r is not a host name that goes to DNS
// (stacks.SRVHostName: no IP literal, no "localhost"), has no port (the
// service has none), neither the quic nor the tls stack is selected for
// it, or the application offers no HTTP ALPN id (stacks.IsHTTPALPN: the
// records describe the https scheme; an application that negotiates
// another protocol, or none, is not its client). It is pure.
func httpsName(cfg *messages.ConnectionConfig, r *messages.Endpoint) string {
	if r.HostName == "" || r.IpAddress != "" || r.Path != "" || r.Multicast || r.Port == 0 ||
		!stacks.SRVHostName(r.HostName) || !slices.ContainsFunc(appALPN(cfg), stacks.IsHTTPALPN) {
		return ""
	}
	for _, st := range cfg.Stacks {
		if n := st.Name(); (n == "quic" || n == "tls") && (r.Protocol == "" || r.Protocol == n) {
			return stacks.HTTPSName(r.HostName, uint16(r.Port))
		}
	}
	return ""
}

// appALPN is the ALPN ids the application offers (its security
// parameters), nil for none.
func appALPN(cfg *messages.ConnectionConfig) []string {
	if cfg.StackOptions.TLS == nil {
		return nil
	}
	return cfg.StackOptions.TLS.NextProtos
}

// httpsAnswer is what the HTTPS records of a remote endpoint tell its
// race (lookupHTTPS); the zero value: nothing usable, the race goes as
// without records.
type httpsAnswer struct {
	// plan is what the records say of the host itself as a service
	// endpoint (a ServiceMode record whose TargetName is "." or the host
	// name), nil when none names it
	plan *stacks.HTTPSPlan
	// targets are the other service endpoints the records name (their
	// TargetNames, an alias target), in the order to try them (lowest
	// SvcPriority first), each resolved; those that did not resolve are
	// left out
	targets []httpsTarget
}

// httpsTarget is a service endpoint other than the host that HTTPS
// records name: what its records offer, and its addresses.
type httpsTarget struct {
	plan  *stacks.HTTPSPlan
	addrs []netip.Addr
}

// maxHTTPSTargets bounds the service endpoints other than the host that
// one remote endpoint's HTTPS records have resolved (RFC 9623 §12.2:
// limit the state a DNS answer can create), as maxSRVTargets does SRV's.
const maxHTTPSTargets = maxSRVTargets

// lookupHTTPS looks up the HTTPS records of name (httpsName) for the
// host name host and decides what they tell the race: the service
// endpoints (an AliasMode record is followed once, to its target's own
// HTTPS records, and one there is not followed; stacks.HTTPSTargets: in
// SvcPriority order, RFC 9460 §3) and what the records of each offer
// (stacks.PlanHTTPS). The targets other than host (at most
// maxHTTPSTargets) are resolved (A and AAAA, in full) here,
// concurrently; one that does not resolve is skipped, the others are
// kept. A failed lookup, no usable record, an alias target without
// ServiceMode records, a second alias: nothing.
func lookupHTTPS(ctx context.Context, cfg *messages.ConnectionConfig, name, host string) httpsAnswer {
	recs, err := cfg.Resolver.LookupHTTPS(ctx, name)
	if err != nil {
		return httpsAnswer{}
	}
	owner := host
	target, alias := stacks.HTTPSTarget(recs, host)
	if alias {
		if recs, err = cfg.Resolver.LookupHTTPS(ctx, target); err != nil {
			return httpsAnswer{}
		}
		owner = target
		if _, alias = stacks.HTTPSTarget(recs, owner); alias {
			return httpsAnswer{} // followed once
		}
	} else if target == "" {
		return httpsAnswer{}
	}
	var out httpsAnswer
	var others []string
	var plans []*stacks.HTTPSPlan
	for _, t := range stacks.HTTPSTargets(recs, owner) {
		plan, ok := stacks.PlanHTTPS(recs, owner, t, appALPN(cfg))
		switch {
		case !ok:
		case strings.EqualFold(strings.TrimSuffix(t, "."), strings.TrimSuffix(host, ".")):
			out.plan = &plan
		case len(others) < maxHTTPSTargets:
			others = append(others, t)
			plans = append(plans, &plan)
		}
	}
	addrs := make([][]netip.Addr, len(others))
	var wg sync.WaitGroup
	for i, t := range others {
		wg.Go(func() {
			if as, err := cfg.Resolver.Resolve(ctx, t); err == nil {
				addrs[i] = as
			}
		})
	}
	wg.Wait()
	for i := range others {
		if len(addrs[i]) > 0 {
			out.targets = append(out.targets, httpsTarget{plan: plans[i], addrs: addrs[i]})
		}
	}
	return out
}

// httpsAfterRank is the rank (rankHTTPS) of the host's own addresses
// behind the service endpoint its HTTPS records name: after every offer
// (stacks.HTTPSPlan.Rank, at most 1<<17).
const httpsAfterRank = 1 << 18

// rankHTTPS reorders the candidates of one path group (planCandidates)
// by the HTTPS records of their endpoints: ranks[i] is cands[i]'s rank
// (stacks.HTTPSPlan.Rank), -1 for a candidate the records do not concern
// (another stack, an endpoint without records). The candidates with a
// rank are sorted by it, stably, within the places they hold; the others
// keep theirs.
func rankHTTPS(cands []candidate, ranks []int) {
	var pos []int
	for i, r := range ranks {
		if r >= 0 {
			pos = append(pos, i)
		}
	}
	if len(pos) < 2 {
		return
	}
	sorted := slices.Clone(pos)
	slices.SortStableFunc(sorted, func(a, b int) int { return ranks[a] - ranks[b] })
	moved := make([]candidate, len(sorted))
	for k, i := range sorted {
		moved[k] = cands[i]
	}
	for k, i := range pos {
		cands[i] = moved[k]
	}
}

// uniqueCandidates drops, in place, the candidates whose key an earlier
// one has, keeping the order.
func uniqueCandidates(cands []candidate) []candidate {
	seen := make(map[candKey]bool, len(cands))
	out := cands[:0]
	for _, c := range cands {
		if k := c.key(); !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}
