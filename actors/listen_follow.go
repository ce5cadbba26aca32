package actors

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// A Listener follows its interfaces (Linux). When the interface Selection
// Property Prohibits anything (an interface or a kind of interface, up,
// down or not there at all) and Requires none, Listen binds one listening
// socket per transport protocol to each up interface that is not
// Prohibited, the loopback included (planListen,
// stacks.PathPlan.ListenInterfaces), on each local endpoint that names no
// interface of its own, whatever its address (IPv4, IPv6, or the
// dual-stack wildcard): those sites are followed (followedSite). No socket
// is left unbound: one would take the traffic of a Prohibited interface
// that comes up later, so a Prohibit holds for the listener's whole life.
// When no allowed interface is up at Listen, Listen fails with a
// *stacks.PathError rather than listen unbound. (A client on this host
// reaches the host's own addresses through the loopback, whatever
// interface holds them: the loopback's socket accepts it unless the
// loopback is Prohibited too.)
//
// A listener with at least one followed site registers with its System's
// route monitor (pathwatch.go: the same netlink reader as the
// connections', none of its own) and, after each burst of link,
// address or route changes, plans its sites again from the host's
// interfaces then (pathPlanOf, planListen; the local endpoints resolved at
// Listen are kept, no name is resolved again) and compares (diffListen):
//
//   - a followed site the new plan has and no socket has (an allowed
//     interface that came up or was added) is bound, on the port the
//     sockets of its local endpoint have (the one chosen at Listen for
//     port 0). A site
//     that cannot be bound (its port is taken there) is reported, as a
//     Warn log of the System's logger and a "listener" trace record
//     ListenFailed, and tried again at the next burst; the listener keeps
//     running on its other sockets.
//   - a followed site the new plan no longer has (its interface went
//     down or was removed) has its sockets closed (trace record
//     ListenClosed); their accept goroutines end, the listener does not
//     stop, and the connections accepted through them stay open. A QUIC
//     socket is shared with the sessions accepted on it and closed after
//     the last of them (as when the listener stops): the listener's
//     Released and SocketsClosed (Listener.Done, System.Shutdown) wait
//     for it as for the sockets it closes when it stops. When
//     every allowed interface is down the listener runs on with no socket
//     (but those of its other sites) until one comes up.
//   - a Prohibited interface is never in a plan: when it comes up,
//     nothing listens there (its peers are refused).
//
// Sites of a local endpoint that names its interface (WithInterface) need
// no following: they are bound to the interface on the endpoint's own
// address, or on the wildcard address, which takes the addresses the
// interface gains later and drops those it loses. Listeners with only
// such sites, explicit addresses, Unix paths or the wildcard with no
// interface preference (or only Prefer and Avoid, which do not change a
// passive open) do not register, and cost nothing: their one unbound
// socket per transport protocol is not followed. Required interfaces are
// bound at Listen and not followed either (their list never changes).
// Outside Linux (no route monitor) nothing is followed: the sockets stay
// those bound at Listen, and a Prohibited interface that comes up later
// is not listened on, but an allowed one is not either.
//
// The application sees the sockets through ListenAddrs (ListenerStarted
// .Sockets), which the listener updates after each change.

// listenSocket is what the listener knows of one of its sockets besides
// the socket itself: the site it was planned for, and whether it was
// closed on purpose (its accept goroutine then ends quietly).
type listenSocket struct {
	site    listenSite
	retired *atomic.Bool
}

// listenFollow is a listener's following state.
type listenFollow struct {
	locals   []localAddrs   // planListen's input at Listen
	dynamic  bool           // the plan Requires no interface: its list of interfaces may change
	ports    map[int]uint16 // local endpoint -> the port of its sockets
	watching bool           // registered with the route monitor
	planner  func() ([]listenSite, error)
	// retired: the sockets closed by closeSite that may outlive their
	// Close (QUIC: shared with the sessions accepted on them); the
	// listener's Released and SocketsClosed wait for them as for those it
	// closes when it stops
	retired []socketReleaser
}

// retire notes a socket closeSite closed that may still be open, and
// drops those noted before that are closed by now.
func (f *listenFollow) retire(r socketReleaser) {
	keep := f.retired[:0]
	for _, o := range f.retired {
		select {
		case <-o.Closed():
		default:
			keep = append(keep, o)
		}
	}
	clear(f.retired[len(keep):])
	f.retired = append(keep, r)
}

// setListenPlanner replaces the host's plan of a listener's sites (tests:
// a plan that does not depend on the host's interfaces). It changes
// nothing when the listener follows no site.
type setListenPlanner struct {
	plan func() ([]listenSite, error)
}

// ListenAddrs is where a listener listens now: one address per listening
// socket with the interface it is bound to ("" for none). The listener
// replaces them when it follows its interfaces. The zero value is empty;
// it is safe for concurrent use.
type ListenAddrs struct {
	mu     sync.Mutex
	addrs  []net.Addr
	ifaces []string
}

// Get returns the addresses and, for each, its interface (copies: the
// caller may keep them).
func (v *ListenAddrs) Get() (addrs []net.Addr, ifaces []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]net.Addr(nil), v.addrs...), append([]string(nil), v.ifaces...)
}

func (v *ListenAddrs) set(addrs []net.Addr, ifaces []string) {
	v.mu.Lock()
	v.addrs, v.ifaces = addrs, ifaces
	v.mu.Unlock()
}

// publish shows the current sockets to the application.
func (l *listenerActor) publish() {
	addrs := make([]net.Addr, 0, len(l.lns))
	for _, ln := range l.lns {
		addrs = append(addrs, ln.Addr())
	}
	l.view.set(addrs, append([]string(nil), l.ifaces...))
}

// followed reports whether the listener follows site.
func (l *listenerActor) followed(s listenSite) bool {
	return followedSite(l.follow.locals, l.follow.dynamic, s)
}

// followPorts records the port of each local endpoint's sockets, for the
// sites bound later.
func (l *listenerActor) followPorts() {
	l.follow.ports = map[int]uint16{}
	for i, s := range l.socks {
		if s.site.path != "" {
			continue
		}
		if _, ok := l.follow.ports[s.site.endpoint]; ok {
			continue
		}
		if ap, ok := stacks.AddrPortOf(l.lns[i].Addr()); ok {
			l.follow.ports[s.site.endpoint] = ap.Port()
		}
	}
}

// followStart registers the listener with the route monitor when it
// follows a site, and plans once more at once: an interface that changed
// between the plan and the registration is not missed.
func (l *listenerActor) followStart(ctx actor.Context) {
	follows := false
	for _, s := range l.socks {
		follows = follows || l.followed(s.site)
	}
	if !follows {
		return
	}
	l.follow.watching = watchPaths(l.sys, l.id, ctx.Self())
	if l.follow.watching {
		ctx.Send(ctx.Self(), &pathCheck{})
	}
}

// followStop leaves the route monitor (the listener stops).
func (l *listenerActor) followStop() {
	if l.follow.watching {
		l.follow.watching = false
		unwatchPaths(l.sys, l.id)
	}
}

// followReceive handles this file's messages.
func (l *listenerActor) followReceive(ctx actor.Context, m any) {
	switch m := m.(type) {
	case *setListenPlanner:
		l.follow.planner = m.plan
		if ctx.Sender() != nil {
			ctx.Respond(true)
		}
	case *pathCheck:
		if l.stopped || !l.follow.watching {
			return
		}
		plan := l.follow.planner
		if plan == nil {
			plan = l.replan
		}
		next, err := plan()
		var pe *stacks.PathError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			next = nil // no site left: every interface allowed is down
		default:
			l.sys.Logger.Debug("listener: cannot plan its sites again", "listener", l.id, "error", err.Error())
			return // the interfaces could not be read: keep the sockets
		}
		l.followPlan(ctx, next)
	}
}

// replan plans the listener's sites again from the host's interfaces now.
func (l *listenerActor) replan() ([]listenSite, error) {
	plan, err := pathPlanOf(l.cfg.Properties)
	if err != nil {
		return nil, err
	}
	return planListen(l.follow.locals, plan, hostLookup{}.temporary)
}

// followPlan closes the sockets of the followed sites next no longer has,
// and binds those it has and no socket has.
func (l *listenerActor) followPlan(ctx actor.Context, next []listenSite) {
	cur := make([]listenSite, len(l.socks))
	for i, s := range l.socks {
		cur[i] = s.site
	}
	add, gone := diffListen(cur, next, l.followed)
	if len(add) == 0 && len(gone) == 0 {
		return
	}
	for _, site := range gone {
		l.closeSite(site)
	}
	for _, site := range add {
		l.bindFollowed(ctx, site)
	}
}

// closeSite closes the sockets of site; their accept goroutines end
// without stopping the listener.
func (l *listenerActor) closeSite(site listenSite) {
	keep := 0
	var closed []string // the stacks of the sockets closed
	for i, ln := range l.lns {
		if l.socks[i].site != site {
			l.lns[keep], l.stacks[keep], l.ifaces[keep], l.socks[keep] = ln, l.stacks[i], l.ifaces[i], l.socks[i]
			keep++
			continue
		}
		l.socks[i].retired.Store(true) // before Close: its accept goroutine sees it
		_ = ln.Close()
		if r, ok := ln.(socketReleaser); ok {
			l.follow.retire(r)
		}
		closed = append(closed, l.stacks[i])
	}
	clear(l.lns[keep:])
	clear(l.socks[keep:])
	l.lns, l.stacks, l.ifaces, l.socks = l.lns[:keep], l.stacks[:keep], l.ifaces[:keep], l.socks[:keep]
	l.publish() // before the trace: whoever it wakes sees the sockets as they are
	if l.sys.Tracing() {
		for _, st := range closed {
			l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "ListenClosed", Local: site.String(), Stack: st})
		}
	}
	l.sys.Logger.Debug("listener: stopped listening where the interface is gone", "listener", l.id, "site", site.String())
}

// bindFollowed binds site (one socket per transport protocol) on the port
// of its local endpoint's sockets and starts accepting on it; what cannot
// be bound is reported.
func (l *listenerActor) bindFollowed(ctx actor.Context, site listenSite) {
	opts := l.cfg.StackOptions
	opts.Local, opts.Interface, opts.Path = site.local, site.iface, site.path
	ephemeral := site.local.Port() == 0
	if p, ok := l.follow.ports[site.endpoint]; ephemeral && ok {
		opts.Local = netip.AddrPortFrom(opts.Local.Addr(), p)
	}
	first := len(l.lns)
	port, _, errs := l.bindSite(site, opts)
	if _, ok := l.follow.ports[site.endpoint]; ephemeral && !ok && port != 0 {
		l.follow.ports[site.endpoint] = port
	}
	l.publish() // before the trace: whoever it wakes sees the sockets as they are
	for i := first; i < len(l.lns); i++ {
		l.traceListening(i)
		l.startAccept(ctx, i)
	}
	if len(errs) > 0 {
		err := &ListenFollowError{Site: site.String(), Err: errors.Join(errs...)}
		l.sys.Logger.Warn("listener: cannot listen on an interface that came up", "listener", l.id, "error", err.Error())
		if l.sys.Tracing() {
			l.sys.trace(&messages.TraceRecord{Kind: "listener", Event: "ListenFailed", Local: site.String(), Error: err.Error()})
		}
	}
}

// ListenFollowError: a listener following its interfaces could not bind
// a listening socket on an interface that came up (the listener runs on).
// Err wraps the stacks' errors (syscall.EADDRINUSE when the port is taken
// there).
type ListenFollowError struct {
	Site string // address%interface
	Err  error
}

func (e *ListenFollowError) Error() string {
	return fmt.Sprintf("listen on %s: %v", e.Site, e.Err)
}

func (e *ListenFollowError) Unwrap() error { return e.Err }
