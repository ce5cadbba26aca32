package taps_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// Two peers that know each other's address (from a signalling channel)
// meet with Rendezvous: each listens on its local endpoint and connects to
// the other's at the same time, and both get the same single connection.
func ExamplePreconnection_Rendezvous() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	alicePort, bobPort := freePort(), freePort()
	peer := func(local, remote uint16) *taps.Preconnection {
		pre := taps.NewPreconnection(taps.WithSystem(sys),
			taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(local)))
		pre.AddRemote(taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(remote)) // learned by signalling
		pre.AddFramer(framers.NewLengthPrefix())
		return pre
	}
	alice, bob := peer(alicePort, bobPort), peer(bobPort, alicePort)

	var wg sync.WaitGroup
	conns := make([]*taps.Connection, 2)
	for i, pre := range []*taps.Preconnection{alice, bob} {
		wg.Go(func() {
			c, err := pre.Rendezvous(ctx) // RendezvousDone: Established, no Ready event
			if err != nil {
				fmt.Println(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if conns[0] == nil || conns[1] == nil {
		return
	}
	for i, name := range []string{"alice", "bob"} {
		if err := conns[i].Send(ctx, []byte("hello from "+name), nil); err != nil {
			fmt.Println(err)
			return
		}
	}
	for i, name := range []string{"alice", "bob"} {
		m, err := conns[i].Receive(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s got: %s\n", name, m.Data)
	}
	a, b := conns[0].GetProperties(), conns[1].GetProperties()
	fmt.Println("one connection:", a.Local.String() == b.Remote.String() && a.Remote.String() == b.Local.String())
	for _, c := range conns {
		c.Close()
		<-c.Done()
	}
	// Output:
	// alice got: hello from bob
	// bob got: hello from alice
	// one connection: true
}

// Resolve binds early: the wildcard local endpoint becomes this host's
// addresses, and remote host names become addresses.
func ExamplePreconnection_Resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)
	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithInterface("lo").WithIPAddress("0.0.0.0").WithPort(9000)),
		taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithIPAddress("192.0.2.1").WithPort(443)))
	locals, remotes, err := pre.Resolve(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(locals[0], remotes[0])
	// Output: 127.0.0.1:9000 192.0.2.1:443
}
