package stacks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The multicast tests run in a namespace of their own
// (stacktest.NewMulticastNetns): sockets are made on a thread inside it,
// and the groups are routed to its veth mc0, whose multicast loopback
// delivers what a socket sends to the members on mc0.

// mcastFamilies are the groups the tests use, with their sources.
func mcastFamilies(n *stacktest.MulticastNetns) []struct {
	name  string
	group netip.Addr
	src   [2]netip.Addr
} {
	return []struct {
		name  string
		group netip.Addr
		src   [2]netip.Addr
	}{
		{"ipv4", netip.MustParseAddr("239.1.2.3"), n.Src4},
		{"ipv6", netip.MustParseAddr("ff15::1234"), n.Src6},
	}
}

// udpListenerOf is the demultiplexing listener under ln (UDP or UDP-Lite).
func udpListenerOf(ln Listener) *udpListener {
	if l, ok := ln.(*udpLiteListener); ok {
		return l.udpListener
	}
	return ln.(*udpListener)
}

// acceptPeer takes the next peer of ln, failing the test after 5 s.
func acceptPeer(t *testing.T, ln Listener) *udpPeer {
	t.Helper()
	select {
	case p := <-udpListenerOf(ln).accept:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no peer accepted")
		return nil
	}
}

// readPeer reads one datagram of p, failing the test after 5 s.
func readPeer(t *testing.T, p *udpPeer) string {
	t.Helper()
	require.NoError(t, p.SetReadDeadline(time.Now().Add(5*time.Second)))
	b := make([]byte, 100)
	n, err := p.Read(b)
	require.NoError(t, err)
	return string(b[:n])
}

// TestMulticastDialSetsHopLimitAndInterface: a Dial to a group sets the
// hop limit asked for (1 by default, 0 for a negative value) and, with an
// interface, the outgoing multicast interface (read back where the kernel
// tells it: IPV6_MULTICAST_IF), and does not join the group.
func TestMulticastDialSetsHopLimitAndInterface(t *testing.T) {
	n := stacktest.NewMulticastNetns(t, "mcd")
	ifi := 0
	n.Run(t, func() error {
		i, err := net.InterfaceByName(n.If)
		if err == nil {
			ifi = i.Index
		}
		return err
	})
	for _, st := range noFragStacks(t) {
		for _, fam := range mcastFamilies(n) {
			for _, tc := range []struct {
				hops, want int
				iface      string
			}{{0, 1, ""}, {7, 7, n.If}, {-1, 0, ""}, {255, 255, n.If}} {
				var tr Transport
				n.Run(t, func() (err error) {
					tr, err = st.Dial(context.Background(), netip.AddrPortFrom(fam.group, 4242),
						Options{MulticastHopLimit: tc.hops, Interface: tc.iface})
					return err
				})
				info, err := tr.(SocketInfo).Info()
				require.NoError(t, err)
				require.True(t, info.Multicast, "%s %s", st.Name(), fam.name)
				require.Equal(t, tc.want, info.MulticastHopLimit, "%s %s hops %d", st.Name(), fam.name, tc.hops)
				if fam.group.Is6() {
					got := 0
					require.NoError(t, controlFD(udpConnOf(tr), func(fd int) (err error) {
						got, err = unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF)
						return err
					}))
					want := 0
					if tc.iface != "" {
						want = ifi
					}
					require.Equal(t, want, got, "IPV6_MULTICAST_IF")
				}
				n.Run(t, func() error {
					joined, err := stacktest.Joined(n.If, fam.group)
					if joined {
						err = errors.New("the sender joined the group")
					}
					return err
				})
				require.NoError(t, tr.Close())
			}
		}
	}
	n.Run(t, func() error {
		_, err := UDP().Dial(context.Background(), netip.MustParseAddrPort("239.1.2.3:4242"), Options{MulticastHopLimit: 256})
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			return fmt.Errorf("hop limit 256: %v", err)
		}
		return nil
	})
}

// TestMulticastListenerOnePeerPerSender: a Listen on a group joins it
// (any-source), every sender to it becomes one peer with its own address
// and datagrams, and Close leaves the group at once while an accepted
// peer keeps the socket open.
func TestMulticastListenerOnePeerPerSender(t *testing.T) {
	n := stacktest.NewMulticastNetns(t, "mcl")
	for _, st := range noFragStacks(t) {
		for _, fam := range mcastFamilies(n) {
			group := netip.AddrPortFrom(fam.group, 4243)
			var ln Listener
			var senders [2]Transport
			n.Run(t, func() (err error) {
				if ln, err = st.Listen(context.Background(), Options{Local: group, Interface: n.If}); err != nil {
					return err
				}
				if joined, err := stacktest.Joined(n.If, fam.group); !joined || err != nil {
					return fmt.Errorf("group not joined after Listen (%v)", err)
				}
				for i, src := range fam.src {
					if senders[i], err = st.Dial(context.Background(), group, Options{Local: netip.AddrPortFrom(src, 0)}); err != nil {
						return err
					}
				}
				return nil
			})
			var peers [2]*udpPeer
			for i, s := range senders {
				_, err := s.Write([]byte("hello from " + fam.src[i].String()))
				require.NoError(t, err)
				peers[i] = acceptPeer(t, ln)
				require.Equal(t, s.LocalAddr().String(), peers[i].RemoteAddr().String(), "%s %s", st.Name(), fam.name)
				require.Equal(t, "hello from "+fam.src[i].String(), readPeer(t, peers[i]))
				info, err := peers[i].Info()
				require.NoError(t, err)
				require.True(t, info.Multicast)
			}
			_, err := senders[0].Write([]byte("again"))
			require.NoError(t, err)
			require.Equal(t, "again", readPeer(t, peers[0]), "the first sender's next datagram goes to its peer")

			require.NoError(t, ln.Close())
			n.Run(t, func() error {
				if joined, err := stacktest.Joined(n.If, fam.group); joined || err != nil {
					return fmt.Errorf("group still joined after Close (%v)", err)
				}
				return nil
			})
			select {
			case <-udpListenerOf(ln).sockClosed:
				t.Fatal("the socket closed with peers left")
			default:
			}
			for i := range senders {
				require.NoError(t, senders[i].Close())
				require.NoError(t, peers[i].Close())
			}
			<-udpListenerOf(ln).done
		}
	}
}

// TestMulticastListenerSourceSpecific: a source-specific Listen (SSM)
// receives the datagrams of its source only: a datagram from the other
// source, sent first, never makes a peer. With any-source (the control)
// both do.
func TestMulticastListenerSourceSpecific(t *testing.T) {
	n := stacktest.NewMulticastNetns(t, "mcs")
	for _, st := range noFragStacks(t) {
		for _, fam := range mcastFamilies(n) {
			for _, ssm := range []bool{true, false} {
				group := netip.AddrPortFrom(fam.group, 4244)
				opts := Options{Local: group}
				if ssm {
					opts.MulticastSource = fam.src[0]
				}
				var ln Listener
				var good, other Transport
				n.Run(t, func() (err error) {
					if ln, err = st.Listen(context.Background(), opts); err != nil {
						return err
					}
					if other, err = st.Dial(context.Background(), group, Options{Local: netip.AddrPortFrom(fam.src[1], 0)}); err != nil {
						return err
					}
					good, err = st.Dial(context.Background(), group, Options{Local: netip.AddrPortFrom(fam.src[0], 0)})
					return err
				})
				_, err := other.Write([]byte("not you"))
				require.NoError(t, err)
				_, err = good.Write([]byte("you"))
				require.NoError(t, err)
				p := acceptPeer(t, ln)
				if !ssm && p.RemoteAddr().String() == other.LocalAddr().String() {
					// any-source: the other source's datagram is there too
					require.Equal(t, "not you", readPeer(t, p))
					require.NoError(t, p.Close())
					p = acceptPeer(t, ln)
				}
				require.Equal(t, good.LocalAddr().String(), p.RemoteAddr().String(), "%s %s ssm=%v", st.Name(), fam.name, ssm)
				require.Equal(t, "you", readPeer(t, p))
				// one more from each, the source's last: once it is read,
				// the other's (sent before it) would have been delivered
				_, err = other.Write([]byte("not you"))
				require.NoError(t, err)
				_, err = good.Write([]byte("you again"))
				require.NoError(t, err)
				require.Equal(t, "you again", readPeer(t, p))
				l := udpListenerOf(ln)
				l.mu.Lock()
				_, heard := l.peers[udpPeerKey{remote: netip.MustParseAddrPort(other.LocalAddr().String())}]
				l.mu.Unlock()
				require.Equal(t, !ssm, heard, "%s %s ssm=%v: a peer for the other source", st.Name(), fam.name, ssm)
				require.NoError(t, ln.Close())
				require.NoError(t, p.Close())
				require.NoError(t, good.Close())
				require.NoError(t, other.Close())
				<-l.done
			}
		}
	}
}

// TestMulticastListenOptionErrors: a source without a group, or of the
// other family, fails the Listen.
func TestMulticastListenOptionErrors(t *testing.T) {
	_, err := UDP().Listen(context.Background(), Options{Local: netip.MustParseAddrPort("127.0.0.1:0"),
		MulticastSource: netip.MustParseAddr("127.0.0.1")})
	require.ErrorContains(t, err, "without a multicast group")
	n := stacktest.NewMulticastNetns(t, "mco")
	n.Run(t, func() error {
		_, err := UDP().Listen(context.Background(), Options{Local: netip.MustParseAddrPort("239.1.2.3:4245"),
			MulticastSource: n.Src6[0]})
		if err == nil || !strings.Contains(err.Error(), "different families") {
			return fmt.Errorf("source of the other family: %v", err)
		}
		return nil
	})
}

// TestMulticastListenerTakesOnlyTheGroup: a Listen on a group binds the
// group's own address (not the port's wildcard, as net.ListenPacket would),
// so a unicast datagram to the port never makes a peer, and a sender bound
// to a unicast address and the group's port (a multicast rendezvous on the
// group's port) can bind beside it. The sender named by MulticastIgnore is
// dropped unseen. The check: the unicast datagram and the ignored sender's
// are sent first, and the next peer is the sender that comes after them.
// UDP and UDP-Lite, IPv4 and IPv6.
func TestMulticastListenerTakesOnlyTheGroup(t *testing.T) {
	n := stacktest.NewMulticastNetns(t, "mcu")
	for _, st := range noFragStacks(t) {
		for _, fam := range mcastFamilies(n) {
			name := st.Name() + " " + fam.name
			const port = 4244
			group := netip.AddrPortFrom(fam.group, port)
			var ln Listener
			var unicast, ignored, good Transport
			n.Run(t, func() (err error) {
				// ignored binds the group's port on a unicast address
				if ignored, err = st.Dial(context.Background(), group, Options{Local: netip.AddrPortFrom(fam.src[0], port)}); err != nil {
					return err
				}
				ignoredAt, _ := AddrPortOf(ignored.LocalAddr())
				if ln, err = st.Listen(context.Background(), Options{Local: group, Interface: n.If, MulticastIgnore: ignoredAt}); err != nil {
					return fmt.Errorf("listen beside a sender on the group's port: %w", err)
				}
				if unicast, err = st.Dial(context.Background(), netip.AddrPortFrom(fam.src[0], port), Options{Local: netip.AddrPortFrom(fam.src[1], 0)}); err != nil {
					return err
				}
				good, err = st.Dial(context.Background(), group, Options{Local: netip.AddrPortFrom(fam.src[1], 0)})
				return err
			})
			require.Equal(t, group.String(), ln.Addr().String(), "%s: bound to the group itself", name)
			for _, s := range []Transport{unicast, ignored, good} {
				_, err := s.Write([]byte("from " + s.LocalAddr().String()))
				require.NoError(t, err, name)
			}
			p := acceptPeer(t, ln)
			require.Equal(t, good.LocalAddr().String(), p.RemoteAddr().String(),
				"%s: neither the unicast datagram nor the ignored sender's made a peer", name)
			require.Equal(t, "from "+good.LocalAddr().String(), readPeer(t, p), name)
			require.NoError(t, ln.Close())
			for _, s := range []Transport{unicast, ignored, good, p} {
				require.NoError(t, s.Close())
			}
			<-udpListenerOf(ln).done
		}
	}
}
