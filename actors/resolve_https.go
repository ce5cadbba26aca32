package actors

import (
	"context"
	"slices"

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
// offered stack to its record's port. This file is that step of
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

// lookupHTTPSPlan looks up the HTTPS records of name (httpsName) for the
// host name host and returns what they tell the race (stacks.PlanHTTPS,
// a "." target being host: at a port-prefixed name too, whose own name
// has no address), nil when the lookup failed or no record is usable: the
// race then goes as without records.
func lookupHTTPSPlan(ctx context.Context, cfg *messages.ConnectionConfig, name, host string) *stacks.HTTPSPlan {
	recs, err := cfg.Resolver.LookupHTTPS(ctx, name)
	if err != nil {
		return nil
	}
	plan, ok := stacks.PlanHTTPS(recs, host, appALPN(cfg))
	if !ok {
		return nil
	}
	return &plan
}

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
