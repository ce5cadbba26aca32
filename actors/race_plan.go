package actors

import (
	"net/netip"
	"time"

	"github.com/gotaps/gotaps/stacks"
)

// Connection Attempt Delay bounds (RFC 8305 §8).
const (
	DefaultAttemptDelay = 250 * time.Millisecond
	MinAttemptDelay     = 10 * time.Millisecond
	MaxAttemptDelay     = 2 * time.Second
)

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

// candidate is one leaf of the candidate tree: [path, stack, endpoint].
type candidate struct {
	stack  stacks.Stack
	remote netip.AddrPort
	local  netip.AddrPort
	iface  string
	label  string // the endpoint as the application named it
}

// remoteAddrs are the derived endpoints of one RemoteEndpoint.
type remoteAddrs struct {
	label string
	addrs []netip.AddrPort
	iface string
}

// planCandidates orders the leaves of the candidate tree: protocol options
// (stacks, best first) above derived endpoints (each remote's addresses,
// already interleaved by family; several remotes alternate). It is pure.
func planCandidates(sts []stacks.Stack, remotes []remoteAddrs, local netip.AddrPort) []candidate {
	var out []candidate
	for _, st := range sts {
		for i := 0; ; i++ {
			added := false
			for _, r := range remotes {
				if i < len(r.addrs) {
					out = append(out, candidate{stack: st, remote: r.addrs[i], local: local, iface: r.iface, label: r.label})
					added = true
				}
			}
			if !added {
				break
			}
		}
	}
	return out
}
