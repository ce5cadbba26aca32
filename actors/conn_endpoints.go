package actors

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/ctxext"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/supervision"
)

// A connection's endpoint sets (RFC 9622 §7.5: AddRemote, RemoveRemote,
// AddLocal, RemoveLocal). A connection keeps the remote and local
// endpoints it was made from: the Preconnection's for an initiated one, the
// peer's address and the address its listener accepted it on for a
// received one.
// They are what its next establishment uses: re-establishment (the
// connection's configuration, which the preconnection actor reads) and
// Clone (which reads them with ChangeEndpoints). gotaps uses one path at a
// time (no multipath), so adding an endpoint opens nothing now. Removing
// the endpoint in use changes the path: a connection with a
// re-establishment policy and remotes left is established again over what
// is left (a switch: Reestablishing, then Reestablished, then PathChange
// when the new transport is on another address: pathwatch.go); any other
// is aborted with an *EndpointRemovedError.

// EndpointRemovedError (supervision) is the error of a connection whose
// endpoint in use was removed: the cause of its Reestablishing event when
// it switches, of its ConnectionError (wrapped by ErrAborted) when not.
type EndpointRemovedError = supervision.EndpointRemovedError

// ChangeEndpoints adds endpoints to one of a connection's endpoint sets, or
// removes them from it. Endpoints already in the set are not added again;
// removing an endpoint not in the set does nothing. The reply is
// *EndpointSets, the sets after the change, or a *StateError when the
// connection is neither Establishing nor Established. With no Endpoints
// nothing changes, in any state: the reply reports the sets and the
// connection's ConnectionInfo (Clone reads them so).
type ChangeEndpoints struct {
	Endpoints []*messages.Endpoint
	// Local: the local set; otherwise the remote set.
	Local  bool
	Remove bool
}

// EndpointSets is the reply to ChangeEndpoints. Its slices are never
// modified after the reply.
type EndpointSets struct {
	Remotes, Locals []*messages.Endpoint
	// Info is set in the reply to a ChangeEndpoints without endpoints.
	Info *messages.ConnectionInfo
}

// endpointsExtID is the context extension slot in which a connection
// actor keeps its endpointSets (the connActor struct is the data path's:
// what only these rare operations need is kept beside it).
var endpointsExtID = ctxext.NextContextExtensionID()

// endpointSets is a connection's endpoint state, made when first needed.
type endpointSets struct {
	remotes, locals []*messages.Endpoint
	// firstBound: the transport in use was bound to locals[0] (the one
	// establishment binds to), as of the Ready at readyAt.
	firstBound bool
	readyAt    time.Time
}

func (*endpointSets) ExtensionID() ctxext.ContextExtensionID { return endpointsExtID }

// endpoints returns the connection's endpoint state, making it from the
// configuration (for a received connection, from its peer's address and
// its own) on first use.
func (c *connActor) endpoints(ctx actor.Context) *endpointSets {
	s, ok := ctx.Get(endpointsExtID).(*endpointSets)
	if !ok {
		s = &endpointSets{remotes: c.spec.cfg.Remotes, locals: c.spec.cfg.Locals}
		if c.spec.passive != nil {
			// the listener's snapshot is not this connection's: its peer is
			// its remote, and the address its listener accepted it on
			// (bound from the listener's first local endpoint) its local
			s.remotes, s.locals = nil, nil
			if c.remote != nil {
				s.remotes = []*messages.Endpoint{endpointOf(c.remote)}
			}
			if c.local != nil {
				s.locals = []*messages.Endpoint{endpointOf(c.local)}
			}
		}
		s.readyAt = c.established
		s.firstBound = len(s.locals) > 0
		ctx.Set(s)
	}
	if !c.established.Equal(s.readyAt) { // a new transport since: made with the sets as they were
		s.readyAt = c.established
		s.firstBound = len(s.locals) > 0
	}
	return s
}

// changeEndpoints handles ChangeEndpoints.
func (c *connActor) changeEndpoints(ctx actor.Context, m *ChangeEndpoints) {
	s := c.endpoints(ctx)
	if len(m.Endpoints) == 0 {
		ctx.Respond(&EndpointSets{Remotes: s.remotes, Locals: s.locals, Info: c.info()})
		return
	}
	if !c.state.Allows(OpChangeEndpoints) {
		ctx.Respond(&StateError{Op: OpChangeEndpoints, State: c.state})
		return
	}
	set := s.remotes
	if m.Local {
		set = s.locals
	}
	var inUse, removed *messages.Endpoint
	if m.Remove {
		kept := make([]*messages.Endpoint, 0, len(set))
		for i, e := range set {
			if !slices.ContainsFunc(m.Endpoints, func(r *messages.Endpoint) bool { return sameEndpoint(r, e) }) {
				kept = append(kept, e)
				continue
			}
			removed = e
			if inUse == nil && c.endpointInUse(s, m.Local, i) {
				inUse = e
			}
			if m.Local && i == 0 {
				s.firstBound = false // the next first local was not bound
			}
		}
		set = kept
	} else {
		for _, e := range m.Endpoints {
			if !slices.ContainsFunc(set, func(k *messages.Endpoint) bool { return sameEndpoint(k, e) }) {
				set = append(slices.Clip(set), e) // never into an array a reply or a config shares
			}
		}
	}
	if m.Local {
		s.locals = set
	} else {
		s.remotes = set
	}
	if c.spec.passive == nil {
		// the next (re-)establishment reads these. Copy on write: the
		// configuration is shared with clones and replies, and the spec
		// with a preconnection that may still be racing (it reads its cfg)
		cfg := *c.spec.cfg
		cfg.Remotes, cfg.Locals = s.remotes, s.locals
		spec := *c.spec
		spec.cfg = &cfg
		c.spec = &spec
	}
	ctx.Respond(&EndpointSets{Remotes: s.remotes, Locals: s.locals})
	switch {
	case removed != nil && !m.Local && len(s.remotes) == 0:
		if inUse == nil {
			inUse = removed
		}
		c.abort(ctx, &EndpointRemovedError{Endpoint: endpointName(inUse), Reason: "no remote endpoint left"})
	case inUse != nil:
		c.switchPath(ctx, &EndpointRemovedError{Endpoint: endpointName(inUse), Local: m.Local})
	}
}

// switchPath follows the removal of the endpoint in use: a connection
// with a re-establishment policy is established again over its remaining
// endpoints at once (a switch is no failure: no backoff wait); any other
// is aborted.
func (c *connActor) switchPath(ctx actor.Context, err *EndpointRemovedError) {
	switch {
	case c.spec.passive != nil:
		err.Reason = "a received connection is not re-established"
	case c.spec.cfg.Reestablish == nil:
		err.Reason = "no re-establishment policy"
	default:
		sw := *err
		sw.Reason = "switching to the other endpoints"
		if c.reestablish(ctx, &sw) {
			c.closeGen++ // the backoff timer's reestablishNow is now stale
			ctx.Send(ctx.Self(), &reestablishNow{gen: c.closeGen})
			return
		}
		err.Reason = "re-establishment not possible"
	}
	c.abort(ctx, err)
}

// endpointInUse reports whether endpoint i of the remote (or local) set is
// the one the established transport uses: same address and port (a local
// endpoint's port 0 matches any), same path; a remote named by host name
// when the race that made the transport won with an address of that name
// (the establishment report's label). A local endpoint named by host name
// or interface alone is in use when it is the first of the set and the
// transport was bound to it (only the first local endpoint is bound); so
// is a wildcard address.
func (c *connActor) endpointInUse(s *endpointSets, local bool, i int) bool {
	if c.state != Established || c.t == nil {
		return false
	}
	if !local {
		e := s.remotes[i]
		if c.remote == nil {
			return false
		}
		cur := endpointOf(c.remote)
		switch {
		case e.Path != "":
			return e.Path == cur.Path
		case e.IpAddress != "":
			return e.Port == cur.Port && sameIP(e.IpAddress, cur.IpAddress)
		case e.HostName != "":
			// the report is the current transport's (transportOffered)
			w := wonAttempt(c.report)
			return w != nil && strings.EqualFold(w.Label, endpointName(e))
		}
		return false
	}
	e := s.locals[i]
	if c.local == nil {
		return false
	}
	cur := endpointOf(c.local)
	portOK := e.Port == 0 || e.Port == cur.Port
	switch {
	case e.Path != "":
		return e.Path == cur.Path
	case e.IpAddress != "" && !unspecified(e.IpAddress):
		return portOK && sameIP(e.IpAddress, cur.IpAddress)
	}
	return portOK && i == 0 && s.firstBound
}

// unspecified reports whether ip is the wildcard address (0.0.0.0, ::).
func unspecified(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsUnspecified()
}

// wonAttempt is the attempt that won the race of report, if any.
func wonAttempt(r *messages.EstablishmentReport) *messages.EstablishmentAttempt {
	for _, a := range r.GetAttempts() {
		if a.GetWon() {
			return a
		}
	}
	return nil
}

// sameEndpoint reports whether a and b name the same endpoint: the same
// host name (case and a final dot aside), IP address, port, interface,
// protocol and path. A service name has been turned into its port.
func sameEndpoint(a, b *messages.Endpoint) bool {
	host := func(e *messages.Endpoint) string { return strings.TrimSuffix(e.HostName, ".") }
	return strings.EqualFold(host(a), host(b)) && sameIP(a.IpAddress, b.IpAddress) && a.Port == b.Port &&
		a.Interface == b.Interface && strings.EqualFold(a.Protocol, b.Protocol) && a.Path == b.Path
}

// sameIP compares two IP address literals (an IPv4-mapped IPv6 address is
// its IPv4 address).
func sameIP(a, b string) bool {
	if a == b {
		return true
	}
	x, errA := netip.ParseAddr(a)
	y, errB := netip.ParseAddr(b)
	return errA == nil && errB == nil && x.Unmap() == y.Unmap()
}

// endpointName names an endpoint in errors: "host:port" (as the
// establishment report's labels do), or its path.
func endpointName(e *messages.Endpoint) string {
	if e.Path != "" {
		return e.Path
	}
	host := e.HostName
	if host == "" {
		host = e.IpAddress
	}
	if host == "" && e.Interface != "" {
		host = "%" + e.Interface
	}
	return net.JoinHostPort(host, strconv.Itoa(int(e.Port)))
}
