//go:build linux

package taps

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// netnsChildEnv names, in the environment of the test binary re-executed
// inside the client network namespace, the server's namespace.
const netnsChildEnv = "GOTAPS_NETNS_SERVER"

// TestInterfaceBindingInNetns shows that the interface Selection Property
// and LocalEndpoint.WithInterface really bind attempts to an interface:
// in a client network namespace with two uplinks (veth c1 and c2 to a
// server namespace) and a route to the server's 10.9.0.1 through each (c1
// preferred by metric), the server sees the connection come from c1's
// address or from c2's, as asked. It needs root (it creates the two
// namespaces, and re-runs itself inside the client one).
func TestInterfaceBindingInNetns(t *testing.T) {
	if srv := os.Getenv(netnsChildEnv); srv != "" {
		netnsClient(t, srv)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	suffix := strconv.Itoa(os.Getpid())
	cli, srv := "gotaps-c"+suffix, "gotaps-s"+suffix
	run := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return &exec.Error{Name: strings.Join(args, " ") + ": " + strings.TrimSpace(string(out)), Err: err}
		}
		return nil
	}
	for _, ns := range []string{cli, srv} {
		if err := run("ip", "netns", "add", ns); err != nil {
			t.Skipf("cannot create a network namespace: %v", err)
		}
		t.Cleanup(func() { _ = run("ip", "netns", "del", ns) })
	}
	setup := [][]string{
		{"ip", "-n", cli, "link", "add", "c1", "type", "veth", "peer", "name", "s1", "netns", srv},
		{"ip", "-n", cli, "link", "add", "c2", "type", "veth", "peer", "name", "s2", "netns", srv},
		{"ip", "-n", cli, "addr", "add", "10.1.0.1/24", "dev", "c1"},
		{"ip", "-n", cli, "addr", "add", "10.2.0.1/24", "dev", "c2"},
		{"ip", "-n", srv, "addr", "add", "10.1.0.2/24", "dev", "s1"},
		{"ip", "-n", srv, "addr", "add", "10.2.0.2/24", "dev", "s2"},
		{"ip", "-n", srv, "addr", "add", "10.9.0.1/32", "dev", "lo"},
		{"ip", "-n", cli, "link", "set", "lo", "up"},
		{"ip", "-n", srv, "link", "set", "lo", "up"},
		{"ip", "-n", cli, "link", "set", "c1", "up"},
		{"ip", "-n", cli, "link", "set", "c2", "up"},
		{"ip", "-n", srv, "link", "set", "s1", "up"},
		{"ip", "-n", srv, "link", "set", "s2", "up"},
		{"ip", "-n", cli, "route", "add", "10.9.0.1/32", "via", "10.1.0.2", "dev", "c1", "metric", "10"},
		{"ip", "-n", cli, "route", "add", "10.9.0.1/32", "via", "10.2.0.2", "dev", "c2", "metric", "20"},
		// replies through c2 come from an address best routed through c1
		{"ip", "netns", "exec", cli, "sh", "-c", "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done"},
	}
	for _, args := range setup {
		if err := run(args...); err != nil {
			t.Skipf("cannot set the namespaces up (veth?): %v", err)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", cli, os.Args[0],
		"-test.run=^TestInterfaceBindingInNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+srv)
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", cli, out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: TestInterfaceBindingInNetns")
}

// inNetns runs fn on an OS thread switched to the network namespace name:
// sockets fn creates belong to that namespace. The thread is discarded
// afterwards (the goroutine exits locked).
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// netnsClient runs inside the client namespace; srv is the server's.
func netnsClient(t *testing.T, srv string) {
	var ln net.Listener
	require.NoError(t, inNetns(srv, func() (err error) {
		ln, err = net.Listen("tcp4", "10.9.0.1:0")
		return err
	}))
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	peers := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			go func() { // open until the client goes
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	defer func() { ln.Close(); <-done }()

	sys := newTestSystem(t)
	initiate := func(tp *TransportProperties, opts ...PreconnectionOption) (*Connection, error) {
		if tp == nil {
			tp = NewTransportProperties()
		}
		opts = append([]PreconnectionOption{WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("10.9.0.1").WithPort(port))}, opts...)
		return NewPreconnection(opts...).Initiate(testCtx(t))
	}
	for _, tc := range []struct {
		name     string
		tp       *TransportProperties
		local    *LocalEndpoint
		wantPeer string // the source address the server sees
		wantPath string // the interface the winning attempt was bound to
	}{
		{"no preference: the kernel's route (c1)", nil, nil, "10.1.0.1", ""},
		{"Require c2", withInterface(t, "c2", Require), nil, "10.2.0.1", "c2"},
		{"Require c1", withInterface(t, "c1", Require), nil, "10.1.0.1", "c1"},
		{"Require ethernet: both, c1 first", withInterface(t, "ethernet", Require), nil, "10.1.0.1", "c1"},
		{"Prohibit c1: bound to c2 instead", withInterface(t, "c1", Prohibit), nil, "10.2.0.1", "c2"},
		{"Avoid c1: c2 first", withInterface(t, "c1", Avoid), nil, "10.2.0.1", "c2"},
		{"Prefer c2", withInterface(t, "c2", Prefer), nil, "10.2.0.1", "c2"},
		{"Prohibit c2: the kernel's route", withInterface(t, "c2", Prohibit), nil, "10.1.0.1", ""},
		{"local endpoint on c2", nil, NewLocalEndpoint().WithInterface("c2"), "10.2.0.1", "c2"},
	} {
		var opts []PreconnectionOption
		if tc.local != nil {
			opts = append(opts, WithLocalEndpoint(tc.local))
		}
		c, err := initiate(tc.tp, opts...)
		require.NoError(t, err, tc.name)
		select {
		case peer := <-peers:
			require.Equal(t, tc.wantPeer, peer, tc.name)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the server saw no connection", tc.name)
		}
		rep := c.EstablishmentReport()
		won := ""
		for _, a := range rep.Attempts {
			if a.Won {
				won = a.Path
			}
		}
		require.Equal(t, tc.wantPath, won, tc.name)
		local, _ := c.GetProperties().Local.Addr()
		require.Equal(t, tc.wantPeer, local.Addr().String(), tc.name)
		t.Logf("%s: from %s", tc.name, local)
		c.Abort()
		<-c.Done()
	}
	// both uplinks Prohibited: nothing to attempt, no packet
	tp := withInterface(t, "c1", Prohibit)
	require.NoError(t, tp.SetInterface("c2", Prohibit))
	_, err := initiate(tp)
	requireNoPath(t, err, Interface)

	// a listener bound to c2 is reached through c2, not through c1
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(withInterface(t, "c2", Require)),
		WithLocalEndpoint(NewLocalEndpoint().WithPort(0)))
	l, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	ap, _ := l.LocalEndpoints()[0].Addr()
	dial := func(to string) error {
		return inNetns(srv, func() error {
			c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr(to), ap.Port()).String(), 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	require.NoError(t, dial("10.2.0.1"), "through c2")
	require.Error(t, dial("10.1.0.1"), "through c1: the listener is bound to c2")
	s, err := l.Accept(testCtx(t))
	require.NoError(t, err)
	s.Abort()
	l.Stop()
	<-l.Done()
}
