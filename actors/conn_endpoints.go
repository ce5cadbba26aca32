package actors

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/ctxext"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
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
// is aborted with an *EndpointRemovedError. An initiated QUIC connection
// whose local endpoint in use is removed migrates its session instead
// when it can (see migrate, below).

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
	// migrating: a QUIC migration of transport generation migratingGen
	// runs (conn_migrate.go)
	migrating    bool
	migratingGen uint64
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
	c.refreshAddrs(ctx, "QUIC session migrated") // the sets and the info follow a migration
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
		removedErr := &EndpointRemovedError{Endpoint: endpointName(inUse), Local: m.Local}
		if m.Local && c.migrate(ctx, s, nil, &migrateDone{removed: removedErr}) {
			return // a QUIC session moves to the next local endpoint (migrateDone)
		}
		if m.Local && c.migratingNow(ctx) {
			return // the migration under way leaves the endpoint
		}
		c.switchPath(ctx, removedErr)
	}
}

// switchPath follows the removal of the endpoint in use: a connection
// with a re-establishment policy is established again over its remaining
// endpoints at once (a switch is no failure: no backoff wait); any other
// is aborted. A Reason already in err (a failed migration) comes first.
func (c *connActor) switchPath(ctx actor.Context, err *EndpointRemovedError) {
	pre := err.Reason
	reason := func(r string) string {
		if pre != "" {
			return pre + "; " + r
		}
		return r
	}
	switch {
	case c.spec.passive != nil:
		err.Reason = reason("a received connection is not re-established")
	case c.spec.cfg.Reestablish == nil:
		err.Reason = reason("no re-establishment policy")
	default:
		sw := *err
		sw.Reason = reason("switching to the other endpoints")
		// no failure: the application's switch starts a row of attempts
		// of its own, whatever the row that brought up this transport
		// (StableAfter) had spent
		c.attempts = 0
		if c.reestablish(ctx, &sw) {
			c.closeGen++ // the backoff timer's reestablishNow is now stale
			ctx.Send(ctx.Self(), &reestablishNow{gen: c.closeGen})
			return
		}
		err.Reason = reason("re-establishment not possible")
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
// protocol and path. A service name has been turned into its port, but
// for a host name's service with no IANA port (port 0, its port to come
// from its SRV records): then the services are compared (case aside, as
// DNS labels).
func sameEndpoint(a, b *messages.Endpoint) bool {
	host := func(e *messages.Endpoint) string { return strings.TrimSuffix(e.HostName, ".") }
	return strings.EqualFold(host(a), host(b)) && sameIP(a.IpAddress, b.IpAddress) && a.Port == b.Port &&
		(a.Port != 0 || strings.EqualFold(a.Service, b.Service)) &&
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
	return net.JoinHostPort(host, endpointPort(e))
}

// QUIC connection migration (RFC 9000 §9). When the local endpoint in use
// is removed (and another local endpoint is in the set), or the route
// monitor finds the path lost (and another local endpoint of the set has
// a usable address), an initiated connection on a QUIC session moves the
// session to the next local endpoint instead of being re-established or
// aborted: a goroutine opens a UDP socket bound to it (with the socket
// options of the original), probes the new path and switches to it
// (stacks.Migrator), and reports with a migrateDone. Every stream of the
// session, so every member of the group sharing it, carries on: no
// message is lost, there is no Reestablishing event, and PathChange
// reports the new local address. The connection stays Established and
// keeps sending on the old path while the new one is probed; when the
// migration fails it falls back to what it would have done without it
// (switchPath; re-establishment after a path loss). The other members of
// the group read their addresses again (sessionMigrated) and raise
// PathChange too; their endpoint sets are their own and do not change.
// The accepting side cannot migrate (quic-go: a server cannot); when its
// peer migrates, its connections with a PathChange handler are told
// (peerWatch, pathwatch.go: at the session's next read or write after
// quic-go switched to the new path) and raise PathChange with the peer's
// new address; the others see it when they next read their addresses
// (refreshAddrs: ConnectionInfo, Endpoints, a route monitor burst).

// migration is a connection's migration goroutine, made with its first.
type migration struct {
	cancel context.CancelFunc // of the one running (or the last)
	wg     sync.WaitGroup
}

// migrateTimeout bounds a whole migration (resolution, bind, probe).
const migrateTimeout = 10 * time.Second

// connection actor messages of the migration
type (
	// migrateDone: the migration goroutine ended.
	migrateDone struct {
		tgen   uint64
		target *messages.Endpoint // the local endpoint migrated to
		local  net.Addr           // the new local address (nil: failed)
		err    error
		// what started it, and so what to do when it fails: the removal
		// of the local endpoint in use (switchPath), or a lost path
		// (re-establishment)
		removed *EndpointRemovedError
		lost    error
	}
	// sessionMigrated: a member of the group migrated its QUIC session,
	// which this member's stream may belong to; or (peer) the peer
	// migrated the session this member's stream belongs to
	// (pathwatch.go, peerWatch).
	sessionMigrated struct{ peer bool }
)

func (m *migrateDone) transportGen() uint64 { return m.tgen }

// migratingNow tells whether a migration of the current transport runs.
func (c *connActor) migratingNow(ctx actor.Context) bool {
	s, ok := ctx.Get(endpointsExtID).(*endpointSets)
	return ok && s.migrating && s.migratingGen == c.tgen
}

// migrate starts the migration of an initiated connection's QUIC session
// to the first local endpoint of the set it can move to (not the current
// address, the remote's family; with usable, after a path loss: an IP
// address in usable); false when there is none or the transport cannot
// migrate. done says what started it.
func (c *connActor) migrate(ctx actor.Context, s *endpointSets, usable map[netip.Addr]bool, done *migrateDone) bool {
	if c.state != Established || c.t == nil || c.spec.passive != nil || c.closeAsked || c.migratingNow(ctx) {
		return false
	}
	mg, ok := c.t.(stacks.Migrator)
	if !ok || !mg.CanMigrate() {
		return false
	}
	cur, _ := stacks.AddrPortOf(c.local)
	rem, ok := stacks.AddrPortOf(c.remote)
	if !ok {
		return false
	}
	lost := done.lost != nil
	var target *messages.Endpoint
	for _, e := range s.locals {
		if migrationTarget(e, cur.Addr(), rem.Addr(), usable, lost) {
			target = e
			break
		}
	}
	if target == nil {
		return false
	}
	s.migrating, s.migratingGen = true, c.tgen
	done.tgen, done.target = c.tgen, target
	resolver := c.spec.cfg.Resolver
	root, self := ctx.ActorSystem().Root, ctx.Self()
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "path", Event: "Migrating", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
			Stack: c.stack, Local: endpointName(target)})
	}
	// the actor's stop cancels it and waits for it (no goroutine outlives
	// the connection)
	mctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	if c.mig == nil {
		c.mig = new(migration)
	}
	c.mig.cancel = cancel
	c.mig.wg.Add(1)
	go func() {
		local, err := migrationAddr(mctx, resolver, target, rem.Addr())
		if err == nil {
			done.local, err = mg.Migrate(mctx, local, target.Interface)
		}
		cancel()
		done.err = err
		// counted only until it reports: the Send may run the actor on
		// this goroutine (inlineMailbox), as far as its Stopped, which
		// waits for the count
		c.mig.wg.Done()
		root.Send(self, done)
	}()
	return true
}

// migrationTarget tells whether a connection on cur to remote may migrate
// to the local endpoint e: an IP address of remote's family other than
// cur (after a path loss: one in usable), a host name (resolved then; not
// after a path loss) or an interface alone.
func migrationTarget(e *messages.Endpoint, cur, remote netip.Addr, usable map[netip.Addr]bool, lost bool) bool {
	switch {
	case e.Path != "":
		return false
	case e.IpAddress != "":
		a, err := netip.ParseAddr(e.IpAddress)
		if err != nil || a.Unmap().Is4() != remote.Unmap().Is4() {
			return false
		}
		a = a.Unmap()
		if a == cur.Unmap().WithZone("") {
			return false
		}
		return !lost || (usable != nil && usable[a])
	case e.HostName != "":
		return !lost
	}
	return e.Interface != "" && !lost
}

// migrationAddr is the address to bind for the local endpoint e: its
// address, or its host name's first address of remote's family, with its
// port; none for an interface alone.
func migrationAddr(ctx context.Context, r stacks.Resolver, e *messages.Endpoint, remote netip.Addr) (netip.AddrPort, error) {
	port := uint16(e.Port)
	switch {
	case e.IpAddress != "":
		a, err := netip.ParseAddr(e.IpAddress)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if e.Interface != "" && a.Is6() && a.IsLinkLocalUnicast() {
			a = a.WithZone(e.Interface)
		}
		return netip.AddrPortFrom(a.Unmap(), port), nil
	case e.HostName != "":
		as, err := r.Resolve(ctx, e.HostName)
		if err != nil {
			return netip.AddrPort{}, err
		}
		for _, a := range as {
			if a.Unmap().Is4() == remote.Unmap().Is4() {
				return netip.AddrPortFrom(a.Unmap(), port), nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("%s has no address of the remote's family", e.HostName)
	}
	return netip.AddrPortFrom(netip.Addr{}, port), nil
}

// migrated handles migrateDone (of the current transport: the message is
// dropped otherwise).
func (c *connActor) migrated(ctx actor.Context, m *migrateDone) {
	s := c.endpoints(ctx)
	s.migrating = false
	if c.state != Established || c.t == nil {
		return // closing: the path does not matter any more
	}
	if m.err != nil {
		c.logger().Debug("migration failed", "to", endpointName(m.target), "error", m.err.Error())
		if c.sys.Tracing() {
			c.sys.trace(&messages.TraceRecord{Kind: "path", Event: "MigrationFailed", ConnectionId: c.spec.id,
				GroupId: c.spec.groupID, Stack: c.stack, Local: endpointName(m.target), Error: m.err.Error()})
		}
		switch {
		case m.removed != nil && c.localInSet(s):
			// the application added the endpoint in use back meanwhile:
			// the connection stays on it
			c.logger().Debug("migration failed: the local endpoint in use is in the set again")
		case m.removed != nil:
			m.removed.Reason = "migration to " + endpointName(m.target) + " failed (" + m.err.Error() + ")"
			c.switchPath(ctx, m.removed)
		case m.lost != nil:
			c.fail(ctx, m.lost) // re-established, or ended when the policy's row is spent
		}
		return
	}
	c.local = m.local
	s.firstBound = len(s.locals) > 0 && sameEndpoint(s.locals[0], m.target)
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "path", Event: "Migrated", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
			Stack: c.stack, Local: c.local.String()})
	}
	c.pathMoved("QUIC migration to " + c.local.String())
	c.tellGroupMigrated(ctx)
	if !slices.ContainsFunc(s.locals, func(e *messages.Endpoint) bool { return sameEndpoint(e, m.target) }) {
		// the application removed the target while the migration ran: the
		// endpoint now in use is gone too, and the connection decides
		// again, as for any removal of it (changeEndpoints)
		removed := &EndpointRemovedError{Endpoint: endpointName(m.target), Local: true}
		if !c.migrate(ctx, s, nil, &migrateDone{removed: removed}) {
			c.switchPath(ctx, removed)
		}
	}
}

// localInSet tells whether the local endpoint in use is in the local set.
func (c *connActor) localInSet(s *endpointSets) bool {
	for i := range s.locals {
		if c.endpointInUse(s, true, i) {
			return true
		}
	}
	return false
}

// tellGroupMigrated tells the other members of the group that the
// session they may share moved (sessionMigrated).
func (c *connActor) tellGroupMigrated(ctx actor.Context) {
	if c.left {
		return // a group of one
	}
	f := ctx.RequestFuture(c.spec.group, &messages.ListGroupMembers{}, 5*time.Second)
	ctx.ReenterAfter(f, func(res any, err error) {
		gm, ok := res.(*GroupMembers)
		if err != nil || !ok {
			return
		}
		for _, mb := range gm.Members {
			if !mb.PID.Equal(ctx.Self()) {
				ctx.Send(mb.PID, &sessionMigrated{})
			}
		}
	})
}

// refreshAddrs reads the addresses of a QUIC transport again: a
// migration moved its session (this side's, made by another member of
// the group; or, on the accepting side, the peer's). A change updates the
// connection's addresses (a received connection's remote set: its peer)
// and raises PathChange.
func (c *connActor) refreshAddrs(ctx actor.Context, why string) {
	if c.state != Established || c.t == nil {
		return
	}
	if _, ok := c.t.(stacks.Migrator); !ok {
		return
	}
	local, remote := c.t.LocalAddr(), c.t.RemoteAddr()
	if sameAddr(local, c.local) && sameAddr(remote, c.remote) {
		return
	}
	if c.spec.passive != nil && c.remote != nil && !sameAddr(remote, c.remote) {
		s := c.endpoints(ctx) // made from the old peer address, if not yet
		old := endpointOf(c.remote)
		if i := slices.IndexFunc(s.remotes, func(e *messages.Endpoint) bool { return sameEndpoint(e, old) }); i >= 0 {
			rs := slices.Clone(s.remotes) // replies share the old array
			rs[i] = endpointOf(remote)
			s.remotes = rs
		}
	}
	c.local, c.remote = local, remote
	c.pathMoved(why)
}

func sameAddr(a, b net.Addr) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}
