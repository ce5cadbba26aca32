package actors

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// TestPathChangeKernelInNetns: a TCP connection across a veth pair to a
// network namespace the test creates has a PathChange when the kernel's
// path to its peer changes (the veth's MTU is lowered, then raised; a better route through a second veth is added, then removed), and
// none for a change beside its path (another interface, its address and its route):
// the first PathChange's reading is the lowered MTU's, and each change
// fires once (the new reading is kept). It needs root.
func TestPathChangeKernelInNetns(t *testing.T) {
	n := stacktest.NewNetns(t, "pw", 243)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ln net.Listener
	n.Run(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(n.NSIP.String(), "0"))
		return err
	})
	accepted := make(chan net.Conn, 1)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		<-acceptDone
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}()

	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	readings := make(chan stacks.PathReading, 16)
	remote := netip.AddrPortFrom(n.NSIP, uint16(ln.Addr().(*net.TCPAddr).Port))
	pid, link := initiateTCP(t, sys, &messages.ConnectionConfig{Remotes: endpoints(remote)},
		Handlers{PathChange: func(r stacks.PathReading) { readings <- r }})
	defer func() {
		_, _ = Ask(ctx, sys, pid, &messages.AbortConnection{})
		<-link.Done()
	}()
	require.Equal(t, remote, remoteOf(t, ctx, sys, pid)) // and the watch has its first reading
	next := func(what string) stacks.PathReading {
		t.Helper()
		select {
		case r := <-readings:
			return r
		case <-ctx.Done():
			t.Fatalf("no PathChange after %s", what)
			return stacks.PathReading{}
		}
	}

	// an interface beside the path: a veth pair of its own, with an address
	id := os.Getpid() % 100000
	side, peer := fmt.Sprintf("gtpwa%d", id), fmt.Sprintf("gtpwb%d", id)
	stacktest.IP(t, "link", "add", side, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", side).Run() })
	stacktest.IP(t, "addr", "add", "198.18.244.1/30", "dev", side)
	stacktest.IP(t, "link", "set", side, "up")
	stacktest.IP(t, "link", "set", n.HostIf, "mtu", "1280")
	r := next("the MTU was lowered")
	require.Equal(t, 1280, r.RouteMTU, "the first PathChange is the MTU's: the other interface's changes are not on the path")
	require.Equal(t, n.HostIf, r.Interface)
	require.Equal(t, remote, r.Remote)

	stacktest.IP(t, "link", "set", n.HostIf, "mtu", "1500")
	r = next("the MTU was raised again")
	require.Equal(t, 1500, r.RouteMTU, "one PathChange per change: the 1280 reading was kept")

	// a better route to the peer, through a second veth into its namespace
	via := fmt.Sprintf("gtpwr%d", id)
	stacktest.IP(t, "link", "add", via, "type", "veth", "peer", "name", via+"n", "netns", n.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", via).Run() })
	stacktest.IP(t, "addr", "add", "198.18.245.1/30", "dev", via)
	stacktest.IP(t, "link", "set", via, "up")
	stacktest.IP(t, "-n", n.NS, "addr", "add", "198.18.245.2/30", "dev", via+"n")
	stacktest.IP(t, "-n", n.NS, "link", "set", via+"n", "up")
	stacktest.IP(t, "route", "add", n.NSIP.String()+"/32", "via", "198.18.245.2", "dev", via)
	r = next("a better route was added")
	require.Equal(t, via, r.Interface, "the new route changes the path, the veth and its addresses do not")
	require.Equal(t, remote, r.Remote)
	stacktest.IP(t, "route", "del", n.NSIP.String()+"/32", "via", "198.18.245.2", "dev", via)
	r = next("the better route was removed")
	require.Equal(t, n.HostIf, r.Interface)
	require.Empty(t, readings)
}
