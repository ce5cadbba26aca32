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

// freeUDPPort returns a UDP port that was free on 127.0.0.1 a moment ago.
func freeUDPPort() uint16 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// Over UDP, Rendezvous runs STUN connectivity checks with the peer and
// is done once the path works both ways; each datagram is one Message.
func ExamplePreconnection_Rendezvous_udp() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	alicePort, bobPort := freeUDPPort(), freeUDPPort()
	peer := func(local, remote uint16) *taps.Preconnection {
		return taps.NewPreconnection(taps.WithSystem(sys),
			taps.WithTransportProperties(taps.NewTransportProperties(taps.UnreliableDatagram)),
			taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(local)),
			taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(remote)))
	}
	var wg sync.WaitGroup
	conns := make([]*taps.Connection, 2)
	for i, pre := range []*taps.Preconnection{peer(alicePort, bobPort), peer(bobPort, alicePort)} {
		wg.Go(func() {
			c, err := pre.Rendezvous(ctx)
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
	if err := conns[0].Send(ctx, []byte("datagram from alice"), nil); err != nil {
		fmt.Println(err)
		return
	}
	m, err := conns[1].Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("bob got: %s over %s\n", m.Data, conns[1].GetProperties().Stack)
	for _, c := range conns {
		c.Close()
		<-c.Done()
	}
	// Output: bob got: datagram from alice over udp
}

// Peers of a group chat meet on an any-source multicast group (RFC 9622
// §6.1.1): RendezvousMulticast gives each a Connection that sends to the
// group and a Listener that has joined it and delivers one Connection per
// other member (its own datagrams are left out). The example is compiled,
// not run: it needs a network whose routes carry the group.
func ExamplePreconnection_RendezvousMulticast() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer sys.Shutdown(ctx)

	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithTransportProperties(taps.NewTransportProperties(taps.UnreliableDatagram)),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithInterface("eth0")),
		taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5350).WithHopLimit(4)))
	send, members, err := pre.RendezvousMulticast(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer send.Close()
	defer members.Stop()
	if err := send.Send(ctx, []byte("hello, group"), nil); err != nil {
		fmt.Println(err)
		return
	}
	member, err := members.Accept(ctx) // the first other member heard
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := member.Receive(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s says %s\n", member.GetProperties().Remote, m.Data)
}
