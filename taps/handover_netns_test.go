//go:build linux

package taps

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// handoverLab is a network namespace joined to the test's namespace by two
// veth pairs (two links, two subnets): link 1 is 198.18.246.0/30 (host
// side if1, address l1), link 2 is 198.18.247.0/30 (if2, l2). A raw TCP
// echo server in the namespace listens on srv (198.18.248.1, on the
// namespace's loopback), reachable through both links: the host routes it
// through link 1 (metric 10) and through link 2 (metric 20).
type handoverLab struct {
	ns       *stacktest.Netns
	if1, if2 string
	l1, l2   netip.Addr
	srv      netip.AddrPort
	peers    chan netip.AddrPort // the source address of each connection the server accepts
}

func newHandoverLab(t *testing.T) *handoverLab {
	t.Helper()
	n := stacktest.NewNetns(t, "ho", 246) // link 1: if1 198.18.246.1 <-> 198.18.246.2
	id := os.Getpid() % 100000
	lab := &handoverLab{ns: n, if1: n.HostIf, if2: fmt.Sprintf("gthoa%d", id), l1: n.HostIP,
		l2: netip.MustParseAddr("198.18.247.1"), peers: make(chan netip.AddrPort, 16)}
	nsIf2 := fmt.Sprintf("gthob%d", id)
	// link 2 (removed with the namespace too, should the process die)
	stacktest.IP(t, "link", "add", lab.if2, "type", "veth", "peer", "name", nsIf2, "netns", n.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", lab.if2).Run() })
	stacktest.IP(t, "addr", "add", lab.l2.String()+"/30", "dev", lab.if2)
	stacktest.IP(t, "link", "set", lab.if2, "up")
	stacktest.IP(t, "-n", n.NS, "addr", "add", "198.18.247.2/30", "dev", nsIf2)
	stacktest.IP(t, "-n", n.NS, "link", "set", nsIf2, "up")
	// the server's address, through both links
	srv := netip.MustParseAddr("198.18.248.1")
	stacktest.IP(t, "-n", n.NS, "addr", "add", srv.String()+"/32", "dev", "lo")
	stacktest.IP(t, "route", "add", srv.String()+"/32", "via", n.NSIP.String(), "dev", lab.if1, "metric", "10")
	stacktest.IP(t, "route", "add", srv.String()+"/32", "via", "198.18.247.2", "dev", lab.if2, "metric", "20")

	var ln net.Listener
	n.Run(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(srv, 0).String())
		return err
	})
	lab.srv = ln.Addr().(*net.TCPAddr).AddrPort()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			lab.peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			wg.Add(1)
			go func() { // echo the byte stream: length-prefixed messages come back as sent
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lab
}

// nextPeer is the source address of the server's next accepted connection.
func (lab *handoverLab) nextPeer(t *testing.T, ctx context.Context) netip.AddrPort {
	t.Helper()
	select {
	case p := <-lab.peers:
		return p
	case <-ctx.Done():
		t.Fatal("the server in the namespace accepted no connection")
		return netip.AddrPort{}
	}
}

// initiate initiates a TCP connection to the server from both local
// endpoints (l1 on if1 first, l2 on if2: two branches of the race) with a
// re-establishment policy; connTimeout (TCP_USER_TIMEOUT) makes a send on a
// dead path fail in about a second.
func (lab *handoverLab) initiate(t *testing.T, sys *System) *Connection {
	t.Helper()
	return lab.initiateWith(t, sys, ReestablishPolicy{Initial: 50 * time.Millisecond, MaxAttempts: 5})
}

// initiateWith is initiate with the re-establishment policy pol.
func (lab *handoverLab) initiateWith(t *testing.T, sys *System, pol ReestablishPolicy) *Connection {
	t.Helper()
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(ConnTimeout, time.Second))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(lab.srv)),
		WithLocalEndpoint(
			NewLocalEndpoint().WithIPAddress(lab.l1.String()).WithInterface(lab.if1),
			NewLocalEndpoint().WithIPAddress(lab.l2.String()).WithInterface(lab.if2)),
		WithReestablishment(pol))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	return c
}

// connect initiates (initiate) in a System of its own, with a context
// that ends with the test (at most 20 s).
func (lab *handoverLab) connect(t *testing.T) (*System, context.Context, *Connection) {
	t.Helper()
	sys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return sys, ctx, lab.initiate(t, sys)
}

// echoFirst round-trips a message over link 1 (from l1) and checks that
// the server saw the connection come from there; it returns the local
// address in use.
func (lab *handoverLab) echoFirst(t *testing.T, ctx context.Context, c *Connection) netip.AddrPort {
	t.Helper()
	first := echoFrom(t, ctx, c, "over link 1", lab.l1)
	require.Equal(t, first, lab.nextPeer(t, ctx), "the server sees the connection from l1")
	return first
}

// connEvent is one event of a connection, as its handlers saw it.
type connEvent struct {
	kind    string             // "Reestablishing", "Reestablished", "PathChange"
	err     error              // Reestablishing's
	reading stacks.PathReading // PathChange's: the reading that raised it
	same    bool               // PathChange's: the handler was given this Connection
}

// recordEvents sets c's Reestablishing, Reestablished and PathChange
// handlers (the public ones) and returns the channel of their events, in
// the order the connection's event goroutine ran them. PathChange's
// reading, which the public handler does not carry, is taken by a wrapper
// around the handler OnPathChange installed.
func recordEvents(t *testing.T, ctx context.Context, c *Connection) <-chan connEvent {
	t.Helper()
	events := make(chan connEvent, 64)
	c.OnReestablishing(func(_ *Connection, err error, _ int) { events <- connEvent{kind: "Reestablishing", err: err} })
	c.OnReestablished(func(*Connection, int) { events <- connEvent{kind: "Reestablished"} })
	var cur stacks.PathReading // set and read on the event goroutine only
	c.OnPathChange(func(got *Connection) { events <- connEvent{kind: "PathChange", reading: cur, same: got == c} })
	c.updateHandlers(func(h *actors.Handlers) {
		public := h.PathChange
		require.NotNil(t, public)
		h.PathChange = func(r stacks.PathReading) { cur = r; public(r) }
	})
	_, err := c.GetPropertiesContext(ctx) // the actor has seen the handler: the watch has its first reading
	require.NoError(t, err)
	require.True(t, pathMonitorRunning(c.sys), "a PathChange handler on Linux runs the System's route monitor")
	return events
}

// awaitEvent returns the next event of the kind, and the events before it.
func awaitEvent(t *testing.T, ctx context.Context, events <-chan connEvent, kind string) (connEvent, []connEvent) {
	t.Helper()
	var before []connEvent
	for {
		select {
		case e := <-events:
			if e.kind == kind {
				return e, before
			}
			before = append(before, e)
		case <-ctx.Done():
			t.Fatalf("no %s event (events seen: %v)", kind, kinds(before))
			return connEvent{}, nil
		}
	}
}

func kinds(es []connEvent) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.kind)
	}
	return out
}

// echoFrom sends text and checks it comes back, and that the connection
// runs from the local address want.
func echoFrom(t *testing.T, ctx context.Context, c *Connection, text string, want netip.Addr) netip.AddrPort {
	t.Helper()
	epEcho(t, ctx, c, text)
	local := epAddr(t, ctx, c, true)
	require.Equal(t, want, local.Addr(), "the local address in use")
	return local
}

// TestHandoverOnLinkDownInNetns: a connection with two local endpoints
// (one per link) and a re-establishment policy runs over link 1 (its first
// local endpoint); link 1 goes down while the connection is idle. The
// route monitor finds the transport's path gone (its local address's link
// is down) and replaces it at once, without waiting for traffic to fail:
// Reestablishing (ErrPathLost), over link 2 (l1's branch of the race has
// no route left), Reestablished, then PathChange with the new path's
// reading (local l2, the same remote, interface if2); a message
// round-trips from l2, and the server saw the new connection come from
// l2. It needs root.
func TestHandoverOnLinkDownInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	_, ctx, c := lab.connect(t)
	events := recordEvents(t, ctx, c)
	lab.echoFirst(t, ctx, c)
	require.Equal(t, lab.srv, epAddr(t, ctx, c, false))
	require.Empty(t, events, "no event while the path stands")

	stacktest.IP(t, "link", "set", lab.if1, "down") // nothing is sent

	e, before := awaitEvent(t, ctx, events, "Reestablishing")
	require.ErrorIs(t, e.err, ErrPathLost, "Reestablishing says why the transport was replaced")
	for _, b := range before { // the kernel's route under the old transport went away
		require.Equal(t, "PathChange", b.kind)
		require.Equal(t, lab.l1, b.reading.Local, "a PathChange before the switch is the old transport's")
		require.NotEqual(t, lab.if2, b.reading.Interface, "the old transport's socket is bound to if1: it never runs over if2")
	}
	_, before = awaitEvent(t, ctx, events, "Reestablished")
	for _, b := range before {
		require.Contains(t, []string{"Reestablishing", "PathChange"}, b.kind, "before Reestablished: %v", kinds(before))
		if b.kind == "PathChange" {
			require.Equal(t, lab.l1, b.reading.Local, "no PathChange to the new path before Reestablished")
		}
	}
	require.Equal(t, StateEstablished, c.State())
	pc, before := awaitEvent(t, ctx, events, "PathChange")
	require.Empty(t, before, "PathChange follows Reestablished")
	require.True(t, pc.same, "the handler is given the connection")
	require.Equal(t, lab.l2, pc.reading.Local, "PathChange: the new local address")
	require.Equal(t, lab.srv, pc.reading.Remote, "PathChange: the same remote")
	require.Equal(t, lab.if2, pc.reading.Interface, "PathChange: the new path's interface")

	second := echoFrom(t, ctx, c, "over link 2", lab.l2)
	require.Equal(t, second, lab.nextPeer(t, ctx), "the server sees the new connection from l2")
	require.Equal(t, lab.srv, epAddr(t, ctx, c, false))
	rep := c.EstablishmentReport()
	won := ""
	for _, a := range rep.Attempts {
		if a.Won {
			won = a.Path
		}
	}
	require.Equal(t, lab.if2, won, "the re-establishment's winning branch is l2's, on if2")
	select {
	case e := <-events:
		t.Fatalf("unexpected %s after the handover (reading %+v)", e.kind, e.reading)
	default:
	}

	// link 1 comes back, with its better route: the connection's socket is
	// bound to if2 (its local endpoint's interface), so its path is the
	// same; then link 2's route gets an MTU of 1400, which is its path: the
	// next PathChange is that one (the route monitor handles the changes in
	// order), with nothing before it
	stacktest.IP(t, "link", "set", lab.if1, "up")
	stacktest.IP(t, "route", "add", lab.srv.Addr().String()+"/32", "via", lab.ns.NSIP.String(), "dev", lab.if1, "metric", "10")
	stacktest.IP(t, "route", "change", lab.srv.Addr().String()+"/32", "via", "198.18.247.2", "dev", lab.if2, "metric", "20", "mtu", "1400")
	pc, before = awaitEvent(t, ctx, events, "PathChange")
	require.Empty(t, before)
	require.Equal(t, lab.if2, pc.reading.Interface, "link 1's better route is not this socket's path (bound to if2)")
	require.Equal(t, 1400, pc.reading.RouteMTU, "the PathChange is link 2's new MTU")
	require.Equal(t, lab.l2, pc.reading.Local)
	require.Equal(t, second, echoFrom(t, ctx, c, "still over link 2", lab.l2), "the same transport")
	requireSamePath(t, events, lab.l2, lab.if2, 1400)
}

// TestPathLostReestablishesWithoutHandlerInNetns: the route monitor
// guards the path of a connection with a re-establishment policy that has
// no PathChange handler: link 1 going down replaces its idle transport
// (ErrPathLost) over link 2. It needs root.
func TestPathLostReestablishesWithoutHandlerInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	sys, ctx, c := lab.connect(t)
	reestablishing := make(chan error, 4)
	reestablished := make(chan struct{}, 4)
	c.OnReestablishing(func(_ *Connection, err error, _ int) { reestablishing <- err })
	c.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })
	lab.echoFirst(t, ctx, c)
	require.True(t, pathMonitorRunning(sys), "the policy alone runs the route monitor")

	stacktest.IP(t, "link", "set", lab.if1, "down")
	select {
	case err := <-reestablishing:
		require.ErrorIs(t, err, ErrPathLost)
	case <-ctx.Done():
		t.Fatal("the idle connection was not re-established when its link went down")
	}
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, lab.l2, echoFrom(t, ctx, c, "over link 2", lab.l2).Addr())
	require.Equal(t, lab.l2, lab.nextPeer(t, ctx).Addr(), "the server sees the new connection from l2")
}

// TestPathLostWithTheRowSpentEndsInNetns: a path lost when the policy has
// no attempt left in its row ends the connection with a ConnectionError
// (ErrPathLost), as any other loss then does: the route monitor's guard
// re-established only while the policy allowed it and otherwise did
// nothing, so a connection whose re-established transport had not yet
// stayed up StableAfter (the row goes on) stayed Established on a path
// known to be gone. Link 1 going down uses the one attempt of MaxAttempts
// 1 (over link 2); link 2 then goes down. It needs root.
func TestPathLostWithTheRowSpentEndsInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c := lab.initiateWith(t, newTestSystem(t), ReestablishPolicy{Initial: 50 * time.Millisecond, MaxAttempts: 1, StableAfter: time.Hour})
	reestablishing := make(chan error, 4)
	reestablished := make(chan struct{}, 4)
	ended := make(chan error, 1)
	c.OnReestablishing(func(_ *Connection, err error, _ int) { reestablishing <- err })
	c.OnReestablished(func(*Connection, int) { reestablished <- struct{}{} })
	c.OnConnectionError(func(_ *Connection, err error) { ended <- err })
	lab.echoFirst(t, ctx, c)

	stacktest.IP(t, "link", "set", lab.if1, "down")
	require.ErrorIs(t, epAwait(t, ctx, reestablishing, "Reestablishing"), ErrPathLost)
	epAwait(t, ctx, reestablished, "Reestablished")
	require.Equal(t, lab.l2, echoFrom(t, ctx, c, "over link 2", lab.l2).Addr())
	require.Equal(t, lab.l2, lab.nextPeer(t, ctx).Addr())

	stacktest.IP(t, "link", "set", lab.if2, "down") // within StableAfter: the row is spent
	err := epAwait(t, ctx, ended, "ConnectionError: the connection stayed on a path that is gone")
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrPathLost)
	require.Empty(t, reestablishing, "no attempt left in the row")
	requireDone(t, c)
}

// TestHandoverOnSilentPathInNetns: a failure the host cannot see (the
// peer's side drops everything to l1, link 1 stays up) leaves the route
// monitor nothing to find: the next message goes unacknowledged, the
// transport fails (connTimeout) and the connection is re-established over
// link 2 (l1's branch gets no answer). The Reestablishing cause is then
// not ErrPathLost. It needs root.
func TestHandoverOnSilentPathInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	_, ctx, c := lab.connect(t)
	events := recordEvents(t, ctx, c)
	lab.echoFirst(t, ctx, c)

	stacktest.IP(t, "-n", lab.ns.NS, "route", "add", "blackhole", lab.l1.String()+"/32")
	require.NoError(t, c.Send(ctx, []byte("lost on the silent path"), nil))
	e, before := awaitEvent(t, ctx, events, "Reestablishing")
	require.Empty(t, before, "link 1 stands: no PathChange before the failure")
	require.Error(t, e.err)
	require.NotErrorIs(t, e.err, ErrPathLost, "traffic found the path dead, not the route monitor")
	awaitEvent(t, ctx, events, "Reestablished")
	require.Equal(t, lab.l2, echoFrom(t, ctx, c, "over link 2", lab.l2).Addr())
	require.Equal(t, lab.l2, lab.nextPeer(t, ctx).Addr(), "the server sees the new connection from l2")
}

// requireSamePath checks that the events left are PathChanges of the same
// path alone: a later burst of changes (IPv6 address configuration on a
// link that came up) may find the socket's own path MTU caught up with
// its route's.
func requireSamePath(t *testing.T, events <-chan connEvent, local netip.Addr, iface string, mtu int) {
	t.Helper()
	for {
		select {
		case e := <-events:
			require.Equal(t, "PathChange", e.kind, "no other event (reading %+v)", e.reading)
			require.Equal(t, local, e.reading.Local)
			require.Equal(t, iface, e.reading.Interface)
			require.Equal(t, mtu, e.reading.RouteMTU)
		default:
			return
		}
	}
}

// TestPathChangeOnRouteMTUInNetns: the route the connection uses (link 1)
// gets an MTU of 1300 (ip route change ... mtu 1300): PathChange fires with
// the new route MTU, on the same path (local l1, interface if1), without a
// new transport (no Reestablished; the same local port); raising it back
// to 1500 fires it again with 1500. It needs root.
func TestPathChangeOnRouteMTUInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	_, ctx, c := lab.connect(t)
	events := recordEvents(t, ctx, c)
	local := lab.echoFirst(t, ctx, c)

	route := []string{"route", "change", lab.srv.Addr().String() + "/32", "via", lab.ns.NSIP.String(), "dev", lab.if1, "metric", "10"}
	prev := 1500
	for _, mtu := range []int{1300, 1500} {
		stacktest.IP(t, append(route, "mtu", fmt.Sprint(mtu))...)
		for {
			pc, before := awaitEvent(t, ctx, events, "PathChange")
			require.Empty(t, before, "no re-establishment: the transport stays")
			require.True(t, pc.same)
			require.Equal(t, lab.l1, pc.reading.Local)
			require.Equal(t, lab.srv, pc.reading.Remote)
			require.Equal(t, lab.if1, pc.reading.Interface)
			if pc.reading.RouteMTU == mtu {
				break // PathChange: the route's new MTU
			}
			// an earlier burst of changes (another interface's) found the
			// socket's own path MTU caught up with the previous route MTU
			require.Equal(t, prev, pc.reading.RouteMTU, "only a reading of the previous route MTU may come first")
			require.Equal(t, prev, pc.reading.PMTU)
		}
		prev = mtu
		require.Equal(t, local, echoFrom(t, ctx, c, fmt.Sprintf("after mtu %d", mtu), lab.l1), "the same transport")
	}
	require.Equal(t, StateEstablished, c.State())
	requireSamePath(t, events, lab.l1, lab.if1, 1500)
}

// TestPathChangeOnMPTCPSubflowInNetns: an MPTCP connection over link 1
// gets a second subflow over link 2 when an MPTCP endpoint on l2 is added
// (the kernel path manager joins it; no link, address or route changes).
// The route monitor follows the path manager's subflow events, so the
// PathChange comes with the new subflow count. It needs root (the MPTCP
// event group needs CAP_NET_ADMIN).
func TestPathChangeOnMPTCPSubflowInNetns(t *testing.T) {
	lab := newHandoverLab(t)
	mon, err := stacks.NewRouteMonitor()
	require.NoError(t, err)
	events := mon.MPTCPEvents()
	require.NoError(t, mon.Close())
	if !events {
		t.Skip("no MPTCP path manager events on this kernel")
	}
	// no IPv6 on the links: no late address configuration, so that
	// nothing but the subflow events prompts a re-read after the join
	for _, ifname := range []string{lab.if1, lab.if2} {
		require.NoError(t, os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644))
	}
	sys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stacktest.IP(t, "-n", lab.ns.NS, "mptcp", "limits", "set", "subflows", "4", "add_addr_accepted", "4")
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, MultipathActive))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(lab.srv)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(lab.l1.String())))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	require.True(t, c.GetProperties().Socket.MPTCP, "the connection runs MPTCP")
	echoFrom(t, ctx, c, "one subflow", lab.l1)
	lab.nextPeer(t, ctx)
	changes := recordEvents(t, ctx, c)

	const id = "77"
	stacktest.IP(t, "mptcp", "endpoint", "add", lab.l2.String(), "dev", lab.if2, "id", id, "subflow")
	t.Cleanup(func() { _ = exec.Command("ip", "mptcp", "endpoint", "delete", "id", id).Run() })
	pc, others := awaitEvent(t, ctx, changes, "PathChange")
	require.Empty(t, others)
	require.Positive(t, pc.reading.Subflows, "the PathChange reads the joined subflow")
	require.Equal(t, lab.l1, pc.reading.Local, "the same connection")
	echoFrom(t, ctx, c, "two subflows", lab.l1)
}
