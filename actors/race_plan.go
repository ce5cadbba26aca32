package actors

import (
	"net/netip"
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

// candidate is one leaf of the candidate tree: [path, stack, endpoint].
type candidate struct {
	stack  stacks.Stack
	remote netip.AddrPort
	local  netip.AddrPort
	iface  string
	label  string // the endpoint as the application named it
	path   string // a Unix domain socket path (remote is then zero)
}

// endpoint names the attempt's endpoint in reports and traces.
func (c candidate) endpoint() string {
	if c.path != "" {
		return c.path
	}
	return c.remote.String()
}

// same reports whether c is the attempt a cache entry names.
func (c candidate) same(stack string, remote netip.AddrPort) bool {
	return c.stack.Name() == stack && c.remote == remote
}

// remoteAddrs are the derived endpoints of one RemoteEndpoint, in the order
// the resolver gave them (families already interleaved).
type remoteAddrs struct {
	label string
	addrs []netip.AddrPort
	iface string // the path: an interface name, "" for any
	unix  string // a Unix domain socket path instead of addresses
}

// planCandidates flattens the candidate tree into the order of attempts.
// The branching order is RFC 9623 §4.1's: network paths (the interfaces
// the remotes name, in order of first appearance) above protocol options
// (the stacks, best first) above derived endpoints. Within one path and
// stack the derived endpoints of several remotes alternate (first address
// of each remote, then the second of each, ...), so that no single remote
// with many addresses delays the others. At most maxDerivedEndpoints
// addresses per remote are used. It is pure.
func planCandidates(sts []stacks.Stack, remotes []remoteAddrs, local netip.AddrPort) []candidate {
	var paths []string
	seen := map[string]bool{}
	for _, r := range remotes {
		if !seen[r.iface] {
			seen[r.iface] = true
			paths = append(paths, r.iface)
		}
	}
	var out []candidate
	for _, path := range paths {
		for _, st := range sts {
			for i := 0; i < maxDerivedEndpoints; i++ {
				added := false
				for _, r := range remotes {
					if r.iface == path && i < len(r.addrs) {
						out = append(out, candidate{stack: st, remote: r.addrs[i], local: local, iface: r.iface, label: r.label, path: r.unix})
						added = true
					}
				}
				if !added {
					break
				}
			}
		}
	}
	return out
}

// promote moves the candidate that won the last race to the same remotes
// (stack and address from the race cache, RFC 9623 §9) to the front,
// keeping the others' order. ok is false when no candidate matches; the
// input is never modified.
func promote(cands []candidate, stack string, remote netip.AddrPort) (out []candidate, ok bool) {
	for i, c := range cands {
		if c.same(stack, remote) {
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
