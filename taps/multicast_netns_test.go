//go:build linux

package taps

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
)

// The multicast tests with traffic run in a network namespace of their own
// (stacktest.NewMulticastNetns): the test binary runs the test again
// inside it, so that every socket the System's actors make is there and no
// multicast datagram can leave it. The groups are routed to its veth mc0,
// whose multicast loopback delivers what a sender sends to the members on
// mc0. They need root (they skip, saying so, otherwise).

// mcastNetnsEnv is set in the environment of the test binary run again
// inside the namespace.
const mcastNetnsEnv = "GOTAPS_MCAST_NETNS"

// inMulticastNetns runs the calling (top-level) test again inside a
// multicast namespace made for it, and checks that it passed there: the
// caller then returns (nil). Run inside, it returns the namespace's layout,
// and the caller runs its body.
func inMulticastNetns(t *testing.T, tag string) *stacktest.MulticastNetns {
	t.Helper()
	if os.Getenv(mcastNetnsEnv) != "" {
		return stacktest.MulticastLayout()
	}
	n := stacktest.NewMulticastNetns(t, tag) // skips unless root
	cmd := exec.Command("ip", "netns", "exec", n.NS, os.Args[0],
		"-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mcastNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", n.NS, out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: "+t.Name())
	return nil
}

// mcastFamily is a group the tests use and its two sources.
type mcastFamily struct {
	name, group string
	src         [2]netip.Addr
}

func mcastFamilies(n *stacktest.MulticastNetns) []mcastFamily {
	return []mcastFamily{{"ipv4", "239.1.2.3", n.Src4}, {"ipv6", "ff15::1234", n.Src6}}
}

// joined reports whether the group is joined on the namespace's
// interface.
func joined(t *testing.T, n *stacktest.MulticastNetns, group string) bool {
	t.Helper()
	ok, err := stacktest.Joined(n.If, netip.MustParseAddr(group))
	require.NoError(t, err)
	return ok
}

// mcastSender initiates a Connection that sends to the group from src (an
// ephemeral port), out of iface when it is not "", with the hop limits
// given (none: the default).
func mcastSender(t *testing.T, sys *System, group string, port uint16, src netip.Addr, iface string, hops ...uint8) *Connection {
	t.Helper()
	r := NewRemoteEndpoint().WithMulticastGroupIP(group).WithPort(port)
	for _, h := range hops {
		r.WithHopLimit(h)
	}
	l := NewLocalEndpoint().WithIPAddress(src.String())
	if iface != "" {
		l.WithInterface(iface)
	}
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(r), WithLocalEndpoint(l)).Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(c.Abort)
	return c
}

// mcastListen listens on the group (any-source, or from source when it is
// valid), on iface when it is not "".
func mcastListen(t *testing.T, sys *System, group string, port uint16, source netip.Addr, iface string) *Listener {
	t.Helper()
	l := NewLocalEndpoint().WithPort(port)
	if source.IsValid() {
		l.WithSingleSourceMulticastGroupIP(group, source.String())
	} else {
		l.WithAnySourceMulticastGroupIP(group)
	}
	if iface != "" {
		l.WithInterface(iface)
	}
	ln, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithLocalEndpoint(l)).Listen(testCtx(t))
	require.NoError(t, err)
	return ln
}

// connIDs are the ids of cs' Connections.
func connIDs(cs []*Connection) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.link.ID()
	}
	return out
}

// receiveString receives one Message of c.
func receiveString(t *testing.T, c *Connection) (string, *Message) {
	t.Helper()
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	return string(m.Data), m
}

// TestMulticastListenerGroupsSendersInNetns: a Listener on an any-source
// group joins it on its interface and gives one receive-only Connection
// per sender, with that sender's data and address, all in one Connection
// Group (GroupedConnections of each is both); a sender's later datagram
// goes to its Connection. A multicast Connection cannot be cloned. After a
// CloseGroup a sender heard again joins the same group anew. Stop leaves
// the group at once while the Connection received stays open. IPv4 and
// IPv6.
func TestMulticastListenerGroupsSendersInNetns(t *testing.T) {
	n := inMulticastNetns(t, "mcg")
	if n == nil {
		return
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, fam := range mcastFamilies(n) {
		t.Run(fam.name, func(t *testing.T) {
			const port = 5350
			ln := mcastListen(t, sys, fam.group, port, netip.Addr{}, n.If)
			defer ln.Stop()
			require.True(t, joined(t, n, fam.group), "Listen joins the group")
			var senders, got [2]*Connection
			for i, src := range fam.src {
				senders[i] = mcastSender(t, sys, fam.group, port, src, n.If)
				require.NoError(t, senders[i].Send(ctx, []byte(fmt.Sprintf("hello %d", i)), nil))
				c, err := ln.Accept(ctx)
				require.NoError(t, err)
				got[i] = c
				data, msg := receiveString(t, c)
				require.Equal(t, fmt.Sprintf("hello %d", i), data)
				from := senders[i].GetProperties().Local.String()
				require.Contains(t, from, src.String())
				props := c.GetProperties()
				require.Equal(t, from, props.Remote.String(), "the Connection's remote is its sender")
				re, ok := msg.Context.RemoteEndpoint()
				require.True(t, ok)
				require.Equal(t, from, re.String())
				require.True(t, props.CanReceive)
				require.False(t, props.CanSend, "a multicast Listener's Connections only receive")
				require.True(t, props.Socket.Multicast)
				require.ErrorIs(t, c.Send(ctx, []byte("back"), nil), ErrReceiveOnly)
			}
			for _, c := range got {
				members, err := c.GroupedConnections(ctx)
				require.NoError(t, err)
				require.ElementsMatch(t, connIDs(got[:]), connIDs(members), "one Connection Group for every sender")
			}
			require.NoError(t, senders[0].Send(ctx, []byte("again"), nil))
			data, _ := receiveString(t, got[0])
			require.Equal(t, "again", data, "a sender's later datagram goes to its Connection")

			_, err := got[0].Clone(ctx)
			var ce *CloneError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, ReasonNotCloneable, ce.Reason)

			got[0].CloseGroup()
			<-got[0].Done()
			<-got[1].Done()
			require.NoError(t, senders[1].Send(ctx, []byte("back again"), nil))
			c3, err := ln.Accept(ctx)
			require.NoError(t, err)
			data, _ = receiveString(t, c3)
			require.Equal(t, "back again", data)
			require.Equal(t, got[0].group.String(), c3.group.String(), "the sender heard again joins the Listener's group")
			members, err := c3.GroupedConnections(ctx)
			require.NoError(t, err)
			require.Equal(t, connIDs([]*Connection{c3}), connIDs(members))

			ln.Stop()
			<-ln.Done()
			require.False(t, joined(t, n, fam.group), "Stop leaves the group")
			require.Equal(t, StateEstablished, c3.State(), "the Connection received stays open")
			require.NoError(t, c3.Close())
			<-c3.Done()
		})
	}
}

// TestMulticastSenderInNetns: Initiate to a group gives a send-only
// Connection (Receive fails with ErrSendOnly) whose socket carries the hop
// limit asked for, 1 by default (read back with getsockopt), and sends to
// the group without joining it. IPv4 and IPv6.
func TestMulticastSenderInNetns(t *testing.T) {
	n := inMulticastNetns(t, "mct")
	if n == nil {
		return
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, fam := range mcastFamilies(n) {
		t.Run(fam.name, func(t *testing.T) {
			const port = 5351
			for _, tc := range []struct {
				hops []uint8
				want uint8
			}{{nil, 1}, {[]uint8{9}, 9}, {[]uint8{0}, 0}} {
				s := mcastSender(t, sys, fam.group, port, fam.src[0], n.If, tc.hops...)
				require.False(t, joined(t, n, fam.group), "a sender does not join the group")
				props := s.GetProperties()
				require.NotNil(t, props.Socket)
				require.True(t, props.Socket.Multicast)
				require.Equal(t, tc.want, props.Socket.MulticastHopLimit, "hop limit %v", tc.hops)
				require.True(t, props.CanSend)
				require.False(t, props.CanReceive, "a multicast sender only sends")
				require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr(fam.group), port).String(), props.Remote.String())
				_, err := s.Receive(ctx)
				require.ErrorIs(t, err, ErrSendOnly)
				require.NoError(t, s.Close())
				<-s.Done()
			}
			// what it sends reaches a member
			ln := mcastListen(t, sys, fam.group, port, netip.Addr{}, "")
			s := mcastSender(t, sys, fam.group, port, fam.src[1], "", 3)
			require.NoError(t, s.Send(ctx, []byte("to the group"), nil))
			c, err := ln.Accept(ctx)
			require.NoError(t, err)
			data, _ := receiveString(t, c)
			require.Equal(t, "to the group", data)
			ln.Stop()
			<-ln.Done()
			c.Abort()
		})
	}
}

// TestMulticastSourceSpecificInNetns: a Listener on a source-specific
// group receives its source only: a datagram of another source, sent
// first, never becomes a Connection. The check: after the other source's
// second datagram, a second sender of the right source (a new port, so a
// new Connection, queued after any Connection of the other source) is the
// next Connection, and nothing else is waiting. With an any-source group
// (the control) the other source's Connection comes first. The any-source
// Listener is left to the System's Shutdown, which ends its group.
func TestMulticastSourceSpecificInNetns(t *testing.T) {
	n := inMulticastNetns(t, "mcs")
	if n == nil {
		return
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, fam := range mcastFamilies(n) {
		for _, ssm := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/ssm=%v", fam.name, ssm), func(t *testing.T) {
				port := uint16(5352)
				source := fam.src[0]
				if !ssm {
					port, source = 5353, netip.Addr{}
				}
				ln := mcastListen(t, sys, fam.group, port, source, "")
				if ssm {
					defer ln.Stop()
				}
				other := mcastSender(t, sys, fam.group, port, fam.src[1], "")
				good := mcastSender(t, sys, fam.group, port, fam.src[0], "")
				require.NoError(t, other.Send(ctx, []byte("not you"), nil))
				require.NoError(t, good.Send(ctx, []byte("you"), nil))
				c, err := ln.Accept(ctx)
				require.NoError(t, err)
				if !ssm {
					require.Equal(t, other.GetProperties().Local.String(), c.GetProperties().Remote.String(),
						"any-source: the other source is heard first")
					c, err = ln.Accept(ctx)
					require.NoError(t, err)
				}
				require.Equal(t, good.GetProperties().Local.String(), c.GetProperties().Remote.String())
				data, _ := receiveString(t, c)
				require.Equal(t, "you", data)

				require.NoError(t, other.Send(ctx, []byte("still not you"), nil))
				barrier := mcastSender(t, sys, fam.group, port, fam.src[0], "")
				require.NoError(t, barrier.Send(ctx, []byte("barrier"), nil))
				next, err := ln.Accept(ctx)
				require.NoError(t, err)
				require.Equal(t, barrier.GetProperties().Local.String(), next.GetProperties().Remote.String(),
					"ssm=%v: the next Connection is the source's second sender", ssm)
				data, _ = receiveString(t, next)
				require.Equal(t, "barrier", data)
				past, cancel := context.WithCancel(ctx)
				cancel()
				_, err = ln.Accept(past)
				require.ErrorIs(t, err, context.Canceled, "nothing else is waiting")
			})
		}
	}
}

// TestMulticastRendezvousInNetns: RendezvousMulticast gives a sender to
// the group and a Listener joined to it (on the interface of the local
// endpoint's address, named by neither peer) that delivers the other
// members' datagrams but not its own sender's: peer a sends first, and the
// first Connection a's Listener gives is b's, whose datagram b sent only
// after b had received a's. Peer a sends from the group's port (mDNS
// style: the local endpoint's port), which its Listener binds as well; b
// from an ephemeral one. Stop leaves the group while the sender stays
// open. IPv4 and IPv6.
func TestMulticastRendezvousInNetns(t *testing.T) {
	n := inMulticastNetns(t, "mcr")
	if n == nil {
		return
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	for _, fam := range mcastFamilies(n) {
		t.Run(fam.name, func(t *testing.T) {
			const port = 5354
			type peer struct {
				c  *Connection
				ln *Listener
			}
			var peers [2]peer
			for i, src := range fam.src {
				l := NewLocalEndpoint().WithIPAddress(src.String())
				if i == 0 {
					l.WithPort(port)
				}
				pre := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)), WithLocalEndpoint(l),
					WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP(fam.group).WithPort(port).WithHopLimit(2)))
				c, ln, err := pre.RendezvousMulticast(ctx)
				require.NoError(t, err, "peer %d", i)
				t.Cleanup(c.Abort)
				t.Cleanup(ln.Stop)
				peers[i] = peer{c, ln}
				props := c.GetProperties()
				require.True(t, props.CanSend)
				require.False(t, props.CanReceive, "the Connection sends only")
				require.Equal(t, uint8(2), props.Socket.MulticastHopLimit)
				require.Contains(t, props.Local.String(), src.String())
			}
			require.True(t, joined(t, n, fam.group), "the Listeners join the group on the interface of their address")
			require.Equal(t, netip.AddrPortFrom(fam.src[0], port).String(), peers[0].c.GetProperties().Local.String(),
				"peer a sends from its local endpoint's port, the group's")

			a, b := peers[0], peers[1]
			require.NoError(t, a.c.Send(ctx, []byte("from a"), nil))
			got, err := b.ln.Accept(ctx)
			require.NoError(t, err)
			data, _ := receiveString(t, got)
			require.Equal(t, "from a", data)
			require.Equal(t, a.c.GetProperties().Local.String(), got.GetProperties().Remote.String())
			require.False(t, got.GetProperties().CanSend, "a received Connection only receives")

			require.NoError(t, b.c.Send(ctx, []byte("from b"), nil))
			got, err = a.ln.Accept(ctx)
			require.NoError(t, err)
			require.Equal(t, b.c.GetProperties().Local.String(), got.GetProperties().Remote.String(),
				"a's own datagram, sent first, is not delivered to a's Listener")
			data, _ = receiveString(t, got)
			require.Equal(t, "from b", data)

			for _, p := range peers {
				p.ln.Stop()
				<-p.ln.Done()
			}
			require.False(t, joined(t, n, fam.group), "Stop leaves the group")
			require.NoError(t, a.c.Send(ctx, []byte("still sending"), nil), "the sender outlives the Listener")
		})
	}
}

// TestMulticastSenderInterfaceInNetns: a sender's datagrams to an IPv4
// group leave by the interface its local endpoint names (IP_MULTICAST_IF
// and the binding; Linux's getsockopt of IP_MULTICAST_IF gives an address,
// not the interface, so the check is the interfaces' transmit counters):
// named mc1, which no multicast route names, they all go out of mc1 and
// not of mc0, where the route sends the group; named mc0, the other way
// round.
func TestMulticastSenderInterfaceInNetns(t *testing.T) {
	n := inMulticastNetns(t, "mci")
	if n == nil {
		return
	}
	sys := newTestSystem(t)
	ctx := testCtx(t)
	txPackets := func(ifname string) int {
		b, err := os.ReadFile("/sys/class/net/" + ifname + "/statistics/tx_packets")
		require.NoError(t, err)
		var v int
		_, err = fmt.Sscan(string(b), &v)
		require.NoError(t, err)
		return v
	}
	const count = 20
	for _, tc := range []struct{ via, other string }{{n.Peer, n.If}, {n.If, n.Peer}} {
		c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
			WithRemoteEndpoint(NewRemoteEndpoint().WithMulticastGroupIP("239.1.2.3").WithPort(5355)),
			WithLocalEndpoint(NewLocalEndpoint().WithInterface(tc.via))).Initiate(ctx)
		require.NoError(t, err, tc.via)
		via0, other0 := txPackets(tc.via), txPackets(tc.other)
		for range count {
			require.NoError(t, c.Send(ctx, []byte("which way?"), nil))
		}
		via1, other1 := txPackets(tc.via), txPackets(tc.other)
		require.GreaterOrEqual(t, via1-via0, count, "the datagrams leave by %s", tc.via)
		require.Less(t, other1-other0, count/2, "not by %s (a few packets of its own, at most)", tc.other)
		require.NoError(t, c.Close())
		<-c.Done()
	}
}
