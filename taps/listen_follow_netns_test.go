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
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// followLab is a network namespace joined to the test's namespace by one
// veth pair (link 1: host side if1 198.18.250.1, namespace side
// 198.18.250.2); addLink2 adds a second one after the test started (link
// 2: if2 198.18.251.1 <-> nsIf2 198.18.251.2), with a route in the
// namespace to link 1's subnet through link 2 that only a socket bound to
// nsIf2 takes (the connected route through link 1 wins otherwise).
type followLab struct {
	ns         *stacktest.Netns
	if1, nsIf1 string
	if2, nsIf2 string
	l1         netip.Addr // the host's address on link 1
	traces     chan *TraceRecord
	sys        *System
}

func newFollowLab(t *testing.T) *followLab {
	t.Helper()
	n := stacktest.NewNetns(t, "lf", 250) // skips unless root can create namespaces
	id := os.Getpid() % 100000
	lab := &followLab{ns: n, if1: n.HostIf, nsIf1: n.NSIf, if2: fmt.Sprintf("gtlfa%d", id), nsIf2: fmt.Sprintf("gtlfb%d", id),
		l1: n.HostIP, traces: make(chan *TraceRecord, 1024)}
	lab.sys = newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "listener" {
			select {
			case lab.traces <- r:
			default: // only the awaited records matter
			}
		}
	}))
	return lab
}

// addLink2 adds link 2 (removed with the namespace, or at the end).
func (lab *followLab) addLink2(t *testing.T) {
	t.Helper()
	stacktest.IP(t, "link", "add", lab.if2, "type", "veth", "peer", "name", lab.nsIf2, "netns", lab.ns.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", lab.if2).Run() })
	stacktest.IP(t, "addr", "add", "198.18.251.1/30", "dev", lab.if2)
	stacktest.IP(t, "-n", lab.ns.NS, "addr", "add", "198.18.251.2/30", "dev", lab.nsIf2)
	stacktest.IP(t, "-n", lab.ns.NS, "link", "set", lab.nsIf2, "up")
	stacktest.IP(t, "link", "set", lab.if2, "up")
	stacktest.IP(t, "-n", lab.ns.NS, "route", "add", "198.18.250.0/30", "via", "198.18.251.1", "dev", lab.nsIf2, "metric", "100")
}

// awaitTrace waits (bounded by ctx) for the listener's trace record event
// at local.
func (lab *followLab) awaitTrace(t *testing.T, ctx context.Context, event, local string) {
	t.Helper()
	for {
		select {
		case r := <-lab.traces:
			if r.Event == event && r.Local == local {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %s trace record for %s", event, local)
		}
	}
}

// dial connects from the namespace to to (IPv4 or IPv6), through dev
// (SO_BINDTODEVICE; "": the namespace's routes).
func (lab *followLab) dial(to netip.AddrPort, dev string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(lab.ns.NS, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if dev != "" {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		network := "tcp4"
		if to.Addr().Is6() {
			network = "tcp6"
		}
		var err error
		c, err = d.Dial(network, to.String())
		return err
	})
	return c, err
}

// echo checks that a received connection and the peer's socket still talk
// both ways.
func echo(t *testing.T, ctx context.Context, server *Connection, client net.Conn) {
	t.Helper()
	_, err := client.Write([]byte("ping"))
	require.NoError(t, err)
	var got []byte
	for len(got) < 4 {
		m, err := server.Receive(ctx)
		require.NoError(t, err)
		got = append(got, m.Data...)
	}
	require.Equal(t, "ping", string(got))
	require.NoError(t, server.Send(ctx, []byte("pong"), nil))
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 4)
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf))
}

// acceptFrom dials the listener from the namespace through dev and returns
// both ends (closed when the test ends).
func (lab *followLab) acceptFrom(t *testing.T, ctx context.Context, l *Listener, to netip.AddrPort, dev string) (*Connection, net.Conn) {
	t.Helper()
	client, err := lab.dial(to, dev)
	require.NoError(t, err, "dial %s through %q", to, dev)
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { server.Abort(); <-server.Done() })
	return server, client
}

// ifacesOf lists the interfaces of the Listener's sockets now.
func ifacesOf(l *Listener) []string {
	var out []string
	for _, le := range l.LocalEndpoints() {
		out = append(out, le.Interface())
	}
	return out
}

// TestListenerFollowsInterfacesInNetns: a Listener whose interface
// property Prohibits an interface that is up listens on each other up
// interface, and follows them: an interface added and brought up after
// Listen gets a socket on the Listener's port (a client reaches it
// through that interface), an interface that goes down has its socket
// closed (the port is free there again) while the Listener serves on, and
// the connection accepted through it stays open; when it comes back up
// it gets a socket again, on the same port. It needs root (it creates a
// network namespace and veth links).
func TestListenerFollowsInterfacesInNetns(t *testing.T) {
	lab := newFollowLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	tp := NewTransportProperties()
	require.NoError(t, tp.SetInterface("loopback", Prohibit)) // lo is up: one socket per other up interface
	pre := NewPreconnection(WithSystem(lab.sys), WithProtocols("tcp"), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(lab.l1.String())))
	l, err := pre.Listen(ctx)
	require.NoError(t, err)
	defer func() {
		l.Stop()
		<-l.Done()
		require.False(t, lab.sys.s.PathMonitorRunning(), "a stopped Listener leaves the route monitor")
	}()
	require.True(t, lab.sys.s.PathMonitorRunning(), "the Listener follows its interfaces")
	require.Contains(t, ifacesOf(l), lab.if1)
	require.NotContains(t, ifacesOf(l), lab.if2)
	port := listenerAddr(t, l).Port()
	to := netip.AddrPortFrom(lab.l1, port)
	site := func(iface string) string { return to.String() + "%" + iface }

	c1, client1 := lab.acceptFrom(t, ctx, l, to, "") // through link 1
	echo(t, ctx, c1, client1)

	// an interface that comes up after Listen is listened on, on the same port
	lab.addLink2(t)
	lab.awaitTrace(t, ctx, "Listening", site(lab.if2))
	require.Contains(t, ifacesOf(l), lab.if2)
	c2, client2 := lab.acceptFrom(t, ctx, l, to, lab.nsIf2)
	echo(t, ctx, c2, client2)

	// an interface that goes down has its socket closed: the port is free there
	stacktest.IP(t, "link", "set", lab.if1, "down")
	lab.awaitTrace(t, ctx, "ListenClosed", netip.AddrPortFrom(lab.l1, 0).String()+"%"+lab.if1)
	require.NotContains(t, ifacesOf(l), lab.if1)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, lab.if1)
		}); err != nil {
			return err
		}
		return serr
	}}
	free, err := lc.Listen(ctx, "tcp4", to.String())
	require.NoError(t, err, "the socket on %s is closed", lab.if1)
	require.NoError(t, free.Close())
	// the Listener serves on through link 2
	c3, client3 := lab.acceptFrom(t, ctx, l, to, lab.nsIf2)
	echo(t, ctx, c3, client3)

	// back up: listened on again, on the same port; the connection
	// accepted through link 1 before has stayed open
	stacktest.IP(t, "link", "set", lab.if1, "up")
	lab.awaitTrace(t, ctx, "Listening", site(lab.if1))
	echo(t, ctx, c1, client1)
	c4, client4 := lab.acceptFrom(t, ctx, l, to, "")
	echo(t, ctx, c4, client4)
	require.Equal(t, port, listenerAddr(t, l).Port())
	for _, le := range l.LocalEndpoints() {
		ap, ok := le.Addr()
		require.True(t, ok)
		require.Equal(t, to, ap, "every socket on the Listener's address and port")
	}
}

// TestListenerOnInterfaceTakesNewAddressesInNetns: a Listener on a local
// endpoint that names an interface and no address is one socket on the
// wildcard address bound to that interface: an address the interface
// gains after Listen is reached through it at once, and the Listener
// serves on through it when the first address is removed, without the
// route monitor (nothing to follow). It needs root.
func TestListenerOnInterfaceTakesNewAddressesInNetns(t *testing.T) {
	lab := newFollowLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pre := NewPreconnection(WithSystem(lab.sys), WithProtocols("tcp"),
		WithLocalEndpoint(NewLocalEndpoint().WithInterface(lab.if1)))
	l, err := pre.Listen(ctx)
	require.NoError(t, err)
	defer func() { l.Stop(); <-l.Done() }()
	require.False(t, lab.sys.s.PathMonitorRunning(), "nothing to follow")
	require.Equal(t, []string{lab.if1}, ifacesOf(l))
	port := listenerAddr(t, l).Port()

	c1, client1 := lab.acceptFrom(t, ctx, l, netip.AddrPortFrom(lab.l1, port), "")
	echo(t, ctx, c1, client1)

	// a second address, added after Listen (the namespace gets one on its
	// subnet too, so that it does not depend on the first one)
	added := netip.MustParseAddr("198.18.252.1")
	stacktest.IP(t, "addr", "add", added.String()+"/24", "dev", lab.if1)
	stacktest.IP(t, "-n", lab.ns.NS, "addr", "add", "198.18.252.2/24", "dev", lab.nsIf1)
	c2, client2 := lab.acceptFrom(t, ctx, l, netip.AddrPortFrom(added, port), "")
	echo(t, ctx, c2, client2)

	// the first address removed: the Listener serves on through the second
	stacktest.IP(t, "addr", "del", lab.l1.String()+"/30", "dev", lab.if1)
	c3, client3 := lab.acceptFrom(t, ctx, l, netip.AddrPortFrom(added, port), "")
	echo(t, ctx, c3, client3)
	require.Equal(t, []string{lab.if1}, ifacesOf(l), "still the one socket")
}

// TestListenerProhibitedDownAtListenInNetns: a Prohibit holds for the
// Listener's whole life, also when the Prohibited interface is down at
// Listen. The Listener then listens on each other up interface and
// follows them, as when the Prohibited interface is up: no socket is left
// unbound, so when the Prohibited interface comes up nothing listens
// there (a client dialing through it is refused, over IPv4 and, on the
// dual-stack wildcard, IPv6), while an allowed interface that comes up is
// listened on and accepts. Both for a local endpoint with the Prohibited
// interface's own address and for the wildcard. It needs root (it creates
// a network namespace and veth links).
func TestListenerProhibitedDownAtListenInNetns(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wildcard bool
	}{
		{name: "the Prohibited interface's address"},
		{name: "the wildcard", wildcard: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := newFollowLab(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stacktest.IP(t, "link", "set", lab.if1, "down")

			tp := NewTransportProperties()
			require.NoError(t, tp.SetInterface(lab.if1, Prohibit))
			local := NewLocalEndpoint().WithIPAddress(lab.l1.String())
			if tc.wildcard {
				local = NewLocalEndpoint()
			}
			pre := NewPreconnection(WithSystem(lab.sys), WithProtocols("tcp"), WithTransportProperties(tp),
				WithLocalEndpoint(local))
			l, err := pre.Listen(ctx)
			require.NoError(t, err)
			defer func() { l.Stop(); <-l.Done() }()
			// assert, not require: the dials below show what an unbound socket does
			assert.True(t, lab.sys.s.PathMonitorRunning(), "the Listener follows its interfaces")
			assert.NotContains(t, ifacesOf(l), "", "no socket left unbound")
			assert.NotContains(t, ifacesOf(l), lab.if1)
			port := listenerAddr(t, l).Port()
			site := netip.AddrPortFrom(listenerAddr(t, l).Addr(), port).String()

			refused := func(to netip.AddrPort) {
				t.Helper()
				c, err := lab.dial(to, lab.nsIf1)
				if err == nil {
					c.Close()
				}
				require.ErrorIs(t, err, syscall.ECONNREFUSED, "a dial to %s through the Prohibited interface", to)
			}

			// the Prohibited interface comes up: nothing listens there
			stacktest.IP(t, "link", "set", lab.if1, "up")
			require.Eventually(t, func() bool { return isUp(lab.if1) }, 10*time.Second, 10*time.Millisecond)
			prohibited := []netip.AddrPort{netip.AddrPortFrom(lab.l1, port)}
			if tc.wildcard {
				v6 := netip.MustParseAddr("2001:2:0:fa::1")
				stacktest.IP(t, "addr", "add", v6.String()+"/64", "dev", lab.if1, "nodad")
				stacktest.IP(t, "-n", lab.ns.NS, "addr", "add", "2001:2:0:fa::2/64", "dev", lab.nsIf1, "nodad")
				prohibited = append(prohibited, netip.AddrPortFrom(v6, port))
			}
			for _, to := range prohibited {
				refused(to)
			}

			// an allowed interface that comes up is listened on, on the same port
			lab.addLink2(t)
			lab.awaitTrace(t, ctx, "Listening", site+"%"+lab.if2)
			require.Contains(t, ifacesOf(l), lab.if2)
			allowed := []netip.AddrPort{netip.AddrPortFrom(lab.l1, port)} // the namespace's route through link 2
			if tc.wildcard {
				v6 := netip.MustParseAddr("2001:2:0:fb::1")
				stacktest.IP(t, "addr", "add", v6.String()+"/64", "dev", lab.if2, "nodad")
				stacktest.IP(t, "-n", lab.ns.NS, "addr", "add", "2001:2:0:fb::2/64", "dev", lab.nsIf2, "nodad")
				allowed = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("198.18.251.1"), port),
					netip.AddrPortFrom(v6, port)}
			}
			for _, to := range allowed {
				c, client := lab.acceptFrom(t, ctx, l, to, lab.nsIf2)
				echo(t, ctx, c, client)
			}

			// the plan that bound link 2 saw link 1 up: still nothing there
			require.NotContains(t, ifacesOf(l), lab.if1)
			for _, to := range prohibited {
				refused(to)
			}
		})
	}
}

// isUp reports whether the interface ifname is up and running.
func isUp(ifname string) bool {
	ifs, err := stacks.Interfaces()
	if err != nil {
		return false
	}
	for _, ifi := range ifs {
		if ifi.Name == ifname {
			return ifi.Up
		}
	}
	return false
}
