package actors

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// A connection's PathChange event (RFC 9622 §8.3.2): its path changed
// while it stays open. Besides a QUIC migration (conn_endpoints.go: this
// side's, or on the accepting side the peer's, peerWatch), two things
// raise it:
//
//   - a new transport on another path: when a connection is Ready again
//     (re-establishment, or a switch after the endpoint in use was removed
//     from its endpoint sets, conn_endpoints.go) with another local IP
//     address or another remote address and port than its previous
//     transport, PathChange follows Reestablished. On every system.
//   - the kernel's path to the peer changed under the transport (Linux):
//     while at least one connection of a System has a PathChange handler,
//     the System runs one route monitor (stacks.RouteMonitor, a netlink
//     socket subscribed to link, address and route changes, and one to the
//     MPTCP path manager's subflow events where CAP_NET_ADMIN allows) on
//     one goroutine. After each burst of changes (every message then queued
//     is read first: one re-read per burst, no timer) each watched
//     Established connection reads its path again (stacks.ReadPath: the
//     route to its peer, its outgoing interface, preferred source and
//     MTU, the socket's path MTU, and MPTCP's subflow count where the
//     kernel offers MPTCP_INFO); a reading that differs from the last one
//     (taken when the connection became Established, or at the previous
//     PathChange) raises PathChange once and becomes the last one. The
//     goroutine ends when no watched connection is left (each leaves at
//     its terminal event or when its handler is removed).
//
// The same route monitor guards the path of every initiated connection
// with a re-establishment policy, with or without a PathChange handler:
// after a burst of changes, a transport whose path is gone
// (stacks.PathLost: its local address is no longer on an interface that
// is up, or its bound interface has no route to the peer left) is
// replaced at once, Reestablishing carrying ErrPathLost, rather than when
// traffic or keep-alive would find it dead (an idle connection would
// otherwise stay on a dead path until then). The usable addresses are
// read once per burst (stacks.UsableAddrs) for all the connections, and
// only when one of them guards its path.

// pathState is a connection's PathChange state, made when first needed: at
// the first Ready of a connection with a re-establishment policy or a
// PathChange handler.
type pathState struct {
	addrs   stacks.PathReading // the addresses of the current transport
	last    stacks.PathReading // the last full reading (while watched)
	watched bool               // registered with the System's route monitor
	// peerStop ends the watch of the QUIC peer's address on transport
	// peerOf (peerWatch)
	peerStop func()
	peerOf   stacks.Transport
}

// connection actor messages of this file
type (
	// pathCheck: the route monitor saw a burst of changes; usable are the
	// addresses of the interfaces up after it (nil: unknown, or not read
	// because no watcher guards its path)
	pathCheck struct{ usable map[netip.Addr]bool }
	// pathHandlerChanged: the PathChange handler was set or removed.
	pathHandlerChanged struct{}
)

// pathEstablished runs when the connection becomes Established (Ready, or
// Ready again after re-establishment: again), after that event was
// emitted: a new transport on other addresses is a PathChange, and the
// watch takes its first reading.
func (c *connActor) pathEstablished(again bool) {
	want := c.link.hasPathChange()
	p := c.path
	if p == nil {
		if !want && !c.guardsPath() {
			return // never on another path, nobody asks
		}
		p = &pathState{}
		c.path = p
	}
	addrs := stacks.AddrReading(c.local, c.remote)
	moved := again && p.addrs.Remote.IsValid() && len(stacks.PathDiff(p.addrs, addrs)) > 0
	p.addrs = addrs
	r := addrs
	if want {
		p.last = stacks.ReadPath(c.t, c.local, c.remote)
		r = p.last // the new path's full reading, the one the watch keeps
	}
	if want || c.guardsPath() {
		c.pathWatch(true)
	}
	c.peerWatch(want) // the new transport's session, if any
	if moved {
		c.pathChanged(r, "new transport")
	}
}

// pathChanged emits PathChange (with the reading that raised it).
func (c *connActor) pathChanged(r stacks.PathReading, why string) {
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "path", Event: "PathChange", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
			Stack: c.stack, Error: why})
	}
	c.logger().Debug("path change", "why", why, "remote", r.Remote.String(), "interface", r.Interface)
	c.link.emitPathChange(r)
}

// pathWatch registers the connection with its System's route monitor (on)
// or leaves it.
func (c *connActor) pathWatch(on bool) {
	p := c.path
	if p == nil || p.watched == on {
		return
	}
	if on {
		p.watched = watchPathsFor(c.sys, pathWatcher{pid: c.spec.self, guards: c.guardsPath()}, c.spec.id)
		return
	}
	p.watched = false
	unwatchPaths(c.sys, c.spec.id)
}

// pathStop leaves the route monitor and the peer's watch (the connection
// ended).
func (c *connActor) pathStop() {
	c.pathWatch(false)
	c.peerWatch(false)
}

// peerWatch starts (on) or stops the watch of the peer's address on a QUIC
// session this side accepted (stacks.PeerMoveWatcher): a connection with a
// PathChange handler is told when the peer migrates the session
// (sessionMigrated, peer), reads its addresses again and raises
// PathChange (refreshAddrs). Any stream of the session that reads or
// writes tells every connection on it, so the group's members learn of
// the move together. Nothing is watched on other transports.
func (c *connActor) peerWatch(on bool) {
	p := c.path
	if p == nil || (on && p.peerStop != nil && p.peerOf == c.t) {
		return
	}
	if p.peerStop != nil {
		p.peerStop()
		p.peerStop, p.peerOf = nil, nil
	}
	w, ok := c.t.(stacks.PeerMoveWatcher)
	if !on || c.state != Established || !ok {
		return
	}
	root, self := c.sys.AS.Root, c.spec.self
	stop, ok := w.WatchPeerMoves(func() { root.Send(self, &sessionMigrated{peer: true}) })
	if !ok {
		return // this side dialed the session: its peer does not migrate
	}
	p.peerStop, p.peerOf = stop, c.t
	root.Send(self, &sessionMigrated{peer: true}) // a move before the watch began
}

// guardsPath tells whether the route monitor replaces this connection's
// transport when its path is gone: an initiated connection with a
// re-establishment policy.
func (c *connActor) guardsPath() bool {
	return c.spec.cfg.Reestablish != nil && c.spec.passive == nil
}

// pathReceive handles this file's messages.
func (c *connActor) pathReceive(ctx actor.Context, m any) {
	switch m := m.(type) {
	case *pathHandlerChanged:
		c.peerWatch(c.link.hasPathChange())
		if !c.link.hasPathChange() {
			if !c.guardsPath() {
				c.pathWatch(false)
			}
			return
		}
		if c.state != Established || c.t == nil {
			return // pathEstablished starts the watch
		}
		if c.path != nil && c.path.watched && c.path.last.Remote.IsValid() {
			return // watched with a full reading already (a handler replaced)
		}
		if c.path == nil {
			c.path = &pathState{addrs: stacks.AddrReading(c.local, c.remote)}
			c.peerWatch(true)
		}
		// the first full reading, also when the path was already guarded
		// (watched without one)
		c.path.last = stacks.ReadPath(c.t, c.local, c.remote)
		c.pathWatch(true)
	case *pathCheck:
		p := c.path
		if p == nil || !p.watched || c.state != Established || c.t == nil {
			return
		}
		c.refreshAddrs(ctx, "QUIC session migrated") // conn_endpoints.go
		want, guard := c.link.hasPathChange(), c.guardsPath()
		bound := ""
		if guard {
			bound = stacks.BoundDevice(c.t)
		}
		var r stacks.PathReading
		if want || bound != "" {
			r = stacks.ReadPath(c.t, c.local, c.remote)
		} else {
			r = stacks.AddrReading(c.local, c.remote) // no system call
		}
		if want {
			if d := stacks.PathDiff(p.last, r); len(d) > 0 {
				p.last = r
				c.pathChanged(r, "kernel path: "+strings.Join(d, ", "))
			}
		}
		if !guard {
			return
		}
		if why, lost := stacks.PathLost(r, bound, guardUsable(r, m.usable, onLoopbackNet)); lost {
			if c.migratingNow(ctx) {
				return // the migration under way leaves the path (or fails: re-establishment)
			}
			err := fmt.Errorf("%w: %s", ErrPathLost, why)
			if c.migrate(ctx, c.endpoints(ctx), m.usable, &migrateDone{lost: err}) {
				c.logger().Debug("path lost: migrating the QUIC session", "why", why)
				return // conn_endpoints.go
			}
			c.logger().Debug("path lost: re-establishing", "why", why)
			// a loss as any other: with no attempt left in the policy's
			// row (a transport lost before it stayed up StableAfter) the
			// connection ends with a ConnectionError
			c.fail(ctx, err)
		}
	case *migrateDone: // conn_endpoints.go
		c.migrated(ctx, m)
	case *sessionMigrated:
		why := "QUIC session migrated by another member of the group"
		if m.peer {
			why = "the peer migrated the QUIC session"
		}
		c.refreshAddrs(ctx, why)
	}
}

// guardUsable is the usable set the path guard judges the reading r
// with: usable, or nil (the local address is not judged) when r's local
// address is missing from it but onLoopback finds it local all the same.
// usable lists the interfaces' addresses, while Linux makes the whole
// prefix of a loopback interface's address local: a connection bound to
// 127.0.0.2 (127.0.0.1/8 on lo), as a QUIC session migrated there, was
// taken for lost at every burst of the route monitor and re-established
// (after its policy's backoff) from a path that works. onLoopback runs
// only then (two netlink dumps).
func guardUsable(r stacks.PathReading, usable map[netip.Addr]bool, onLoopback func(netip.Addr) bool) map[netip.Addr]bool {
	a := r.Local.Unmap().WithZone("")
	if usable != nil && a.IsValid() && !a.IsUnspecified() && !usable[a] && onLoopback(a) {
		return nil
	}
	return usable
}

// onLoopbackNet tells whether a is in the prefix of an address of a
// loopback interface that is up and running (the kernel routes all of it
// locally over that interface).
func onLoopbackNet(a netip.Addr) bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 || ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagRunning == 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, x := range addrs {
			n, ok := x.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			ones, bits := n.Mask.Size()
			if !ok || bits == 0 {
				continue
			}
			if bits == 32 {
				ip = ip.Unmap()
			}
			if p, err := ip.Prefix(ones); err == nil && ip.BitLen() == bits && p.Contains(a) {
				return true
			}
		}
	}
	return false
}

// pathMoved: the transport's addresses changed under it (a QUIC
// migration, conn_endpoints.go): PathChange, with a new reading.
func (c *connActor) pathMoved(why string) {
	want := c.link.hasPathChange()
	p := c.path
	if p == nil {
		if !want {
			return
		}
		p = &pathState{}
		c.path = p
	}
	p.addrs = stacks.AddrReading(c.local, c.remote)
	r := p.addrs
	if want {
		p.last = stacks.ReadPath(c.t, c.local, c.remote)
		r = p.last
	}
	c.pathChanged(r, why)
}

// pathMonitor is a System's route monitor and the connections it watches
// (and the listeners that follow their interfaces, listen_follow.go: they
// register by their id, from the same id space, and get the same
// pathCheck).
type pathMonitor struct {
	sys   *System
	mon   *stacks.RouteMonitor
	conns map[uint64]pathWatcher // by connection id (its spec is replaced when its endpoints change); under pathMonitors.mu
}

// pathWatcher is one connection (or listener) a route monitor tells of
// each burst of changes; guards: it needs the usable addresses then (a
// connection that guards its path, see connActor.guardsPath).
type pathWatcher struct {
	pid    *actor.PID
	guards bool
}

// burstTargets lists the watchers to tell of a burst into pids (reused)
// and tells whether any of them needs the usable addresses: they are read
// (two netlink dumps) only then.
func burstTargets(ws map[uint64]pathWatcher, pids []*actor.PID) ([]*actor.PID, bool) {
	pids = pids[:0]
	guards := false
	for _, w := range ws {
		pids = append(pids, w.pid)
		guards = guards || w.guards
	}
	return pids, guards
}

// pathMonitors are the running monitors, one per System at most (none
// while no connection of it is watched).
var pathMonitors struct {
	mu sync.Mutex
	m  map[*System]*pathMonitor
}

// watchPaths adds a connection (or a listener) to its System's route
// monitor, starting it when it is the first; false when no monitor can run
// (outside Linux, or the netlink socket could not be opened: logged).
func watchPaths(sys *System, id uint64, pid *actor.PID) bool {
	return watchPathsFor(sys, pathWatcher{pid: pid}, id)
}

// newRouteMonitor is stacks.NewRouteMonitor; a test under synctest that
// does not need the monitor replaces it (its netlink reads are not
// durably blocking, so fake time would never advance).
var newRouteMonitor = stacks.NewRouteMonitor

// watchPathsFor is watchPaths for a watcher that may guard its path.
func watchPathsFor(sys *System, w pathWatcher, id uint64) bool {
	pathMonitors.mu.Lock()
	defer pathMonitors.mu.Unlock()
	pm := pathMonitors.m[sys]
	if pm == nil {
		if sys.IsShutdown() {
			return false
		}
		mon, err := newRouteMonitor()
		if err != nil {
			sys.Logger.Debug("no route monitor: PathChange only on a new transport", "error", err.Error())
			return false
		}
		pm = &pathMonitor{sys: sys, mon: mon, conns: map[uint64]pathWatcher{}}
		if pathMonitors.m == nil {
			pathMonitors.m = map[*System]*pathMonitor{}
		}
		pathMonitors.m[sys] = pm
		go pm.run()
	}
	pm.conns[id] = w
	return true
}

// PathMonitorRunning reports whether s runs a route monitor now: some
// connection of it has a PathChange handler or guards its path, or some
// Listener of it follows its interfaces (Linux only).
func (s *System) PathMonitorRunning() bool {
	pathMonitors.mu.Lock()
	defer pathMonitors.mu.Unlock()
	return pathMonitors.m[s] != nil
}

// unwatchPaths removes a connection from its System's route monitor; the
// last one stops it (its goroutine ends).
func unwatchPaths(sys *System, id uint64) {
	pathMonitors.mu.Lock()
	defer pathMonitors.mu.Unlock()
	pm := pathMonitors.m[sys]
	if pm == nil {
		return
	}
	delete(pm.conns, id)
	if len(pm.conns) == 0 {
		pm.stopLocked()
	}
}

// stopLocked closes the monitor (its goroutine ends) and forgets it.
func (pm *pathMonitor) stopLocked() {
	if pathMonitors.m[pm.sys] == pm {
		delete(pathMonitors.m, pm.sys)
	}
	_ = pm.mon.Close()
}

// run waits for bursts of changes and tells each watched connection to read
// its path again; it ends when the monitor is closed or the System shuts
// down.
func (pm *pathMonitor) run() {
	var pids []*actor.PID
	for {
		if _, err := pm.mon.Next(); err != nil {
			return // closed
		}
		pathMonitors.mu.Lock()
		if pm.sys.IsShutdown() {
			pm.stopLocked()
			pathMonitors.mu.Unlock()
			return
		}
		var guards bool
		pids, guards = burstTargets(pm.conns, pids)
		pathMonitors.mu.Unlock()
		var usable map[netip.Addr]bool
		if guards {
			var err error
			if usable, err = stacks.UsableAddrs(); err != nil { // once for all the connections
				usable = nil
			}
		}
		for _, pid := range pids {
			pm.sys.AS.Root.Send(pid, &pathCheck{usable: usable})
		}
	}
}
