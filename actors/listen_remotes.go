package actors

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// remoteFilter is what a Listener with remote endpoints accepts (RFC 9622
// §7.2: "only Connections from [those] Remote Endpoints"): the addresses
// the remote endpoints resolved to, each with its port (0: any port), and
// the Unix socket paths. A peer from anywhere else is refused: counted,
// traced, and never reported as ConnectionReceived.
type remoteFilter struct {
	addrs []netip.AddrPort
	paths []string
	sys   *System
	q     *ListenQueue // counts the refusals
}

// remoteResolveTimeout bounds the resolution of the remote endpoints' host
// names when the Listener starts.
const remoteResolveTimeout = 10 * time.Second

// newRemoteFilter resolves cfg's remote endpoints (resolveRemotes: host
// names through the Resolver, every address of both families, see
// stacks.Resolver.Resolve; a name that does not resolve is dropped); it
// fails only when none is left. Nil when cfg has no remote endpoint: every peer is
// accepted.
func newRemoteFilter(sys *System, q *ListenQueue, cfg *messages.ConnectionConfig) (*remoteFilter, error) {
	if len(cfg.Remotes) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteResolveTimeout)
	defer cancel()
	remotes, err := resolveRemotes(ctx, cfg)
	if err != nil {
		return nil, err
	}
	f := &remoteFilter{sys: sys, q: q}
	for _, ra := range remotes {
		if ra.unix != "" {
			f.paths = append(f.paths, ra.unix)
			continue
		}
		for _, ap := range ra.addrs {
			f.addrs = append(f.addrs, netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port()))
		}
	}
	return f, nil
}

// matches reports whether a peer at a is one of the remote endpoints.
func (f *remoteFilter) matches(a net.Addr) bool {
	if ua, ok := a.(*net.UnixAddr); ok {
		for _, p := range f.paths {
			if ua.Name == p {
				return true
			}
		}
		return false
	}
	ap, ok := stacks.AddrPortOf(a)
	if !ok {
		return false
	}
	addr := ap.Addr().WithZone("").Unmap()
	for _, want := range f.addrs {
		if want.Addr() == addr && (want.Port() == 0 || want.Port() == ap.Port()) {
			return true
		}
	}
	return false
}

// admit reports whether the Listener may accept a peer at remote through
// stack; a refusal is counted and traced.
func (f *remoteFilter) admit(stack string, remote net.Addr) bool {
	if f.matches(remote) {
		return true
	}
	f.q.refused.Add(1)
	if f.sys.Tracing() {
		f.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "ConnectionRefused", Stack: stack,
			Remote: remote.String(), Error: "not one of the listener's remote endpoints"})
	}
	return false
}

// filterRemotes sets up the remote endpoint filter from l.cfg before the
// listener binds: the stacks that can refuse a peer before their handshake
// (QUIC, TLS) are given it through Options.AcceptFrom; acceptOne applies
// it to every accepted transport.
func (l *listenerActor) filterRemotes() error {
	f, err := newRemoteFilter(l.sys, l.queue, l.cfg)
	if err != nil || f == nil {
		return err
	}
	l.remotes = f
	cfg := *l.cfg // the snapshot may be shared: change a copy
	cfg.StackOptions.AcceptFrom = func(remote net.Addr) bool {
		stack := "tls" // the stacks that ask: QUIC over UDP, TLS over TCP
		if _, ok := remote.(*net.UDPAddr); ok {
			stack = "quic"
		}
		return f.admit(stack, remote)
	}
	l.cfg = &cfg
	return nil
}
