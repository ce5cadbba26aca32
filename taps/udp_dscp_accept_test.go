//go:build linux

package taps

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tosClient is a plain UDP (or UDP-Lite) socket that reports the TOS byte
// of each datagram it receives (IP_RECVTOS / IPV6_RECVTCLASS), parsed
// from the control message here, not by the stacks package under test.
type tosClient struct {
	t    *testing.T
	conn *net.UDPConn
	v6   bool
}

// newTOSClient opens a client socket on the loopback address ip; proto is
// unix.IPPROTO_UDP or unix.IPPROTO_UDPLITE.
func newTOSClient(t *testing.T, ip string, proto int) *tosClient {
	t.Helper()
	addr := netip.MustParseAddr(ip)
	var domain int
	var sa unix.Sockaddr
	if addr.Is6() {
		domain, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: addr.As16()}
	} else {
		domain, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: addr.As4()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if proto == unix.IPPROTO_UDPLITE && err != nil {
		t.Skip("kernel without UDP-Lite: ", err)
	}
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "tos-client")
	defer f.Close() // FilePacketConn dups it
	require.NoError(t, unix.Bind(fd, sa))
	if addr.Is6() {
		require.NoError(t, unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1))
	} else {
		require.NoError(t, unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1))
	}
	pc, err := net.FilePacketConn(f)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	return &tosClient{t: t, conn: pc.(*net.UDPConn), v6: addr.Is6()}
}

func (c *tosClient) send(to netip.AddrPort, b string) {
	c.t.Helper()
	_, err := c.conn.WriteToUDPAddrPort([]byte(b), to)
	require.NoError(c.t, err)
}

// read returns the next datagram's payload and TOS byte (failing the test
// when the kernel gave no TOS control message).
func (c *tosClient) read() (string, uint8) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf, oob := make([]byte, 2048), make([]byte, 128)
	n, oobn, _, _, err := c.conn.ReadMsgUDP(buf, oob)
	require.NoError(c.t, err)
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	require.NoError(c.t, err)
	for _, m := range msgs {
		switch {
		case !c.v6 && m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			return string(buf[:n]), m.Data[0]
		case c.v6 && m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			return string(buf[:n]), uint8(binary.NativeEndian.Uint32(m.Data[:4]))
		}
	}
	c.t.Fatalf("datagram %q came without a TOS control message", buf[:n])
	return "", 0
}

// TestUDPAcceptedConnCapacityProfilePerConnection: connCapacityProfile set
// on one connection a UDP (or UDP-Lite) Listener accepted marks every
// later datagram of that connection with its DSCP (a per-datagram control
// message: the Listener's socket is shared), never a sibling's datagrams
// or the shared socket (a noFragmentation message included); a message's
// own msgCapacityProfile still wins for that message; the ECN bits stay Not-ECT; GetProperties reads the new
// profile and DSCP back. Setting the profile back to one equal to the
// Listener's socket DSCP (here Default over a CapacitySeeking Listener)
// is honoured too.
func TestUDPAcceptedConnCapacityProfilePerConnection(t *testing.T) {
	for _, tc := range []struct {
		name, ip, proto string
		sock            int
	}{
		{"udp4", "127.0.0.1", "udp", unix.IPPROTO_UDP},
		{"udp6", "::1", "udp", unix.IPPROTO_UDP},
		{"udplite4", "127.0.0.1", "udplite", unix.IPPROTO_UDPLITE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newTOSClient(t, tc.ip, tc.sock), newTOSClient(t, tc.ip, tc.sock)
			sys := newTestSystem(t)
			tp := datagramProps(t)
			require.NoError(t, tp.Set(ConnCapacityProfile, CapacitySeeking)) // DSCP 10 on the Listener's socket
			if tc.proto == "udplite" {
				require.NoError(t, tp.Set(FullChecksumSend, NoPreference))
				require.NoError(t, tp.Set(FullChecksumRecv, NoPreference))
			}
			srv := NewPreconnection(WithSystem(sys), WithProtocols(tc.proto), WithTransportProperties(tp),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress(tc.ip).WithPort(0)))
			ln, err := srv.Listen(testCtx(t))
			if tc.proto == "udplite" && errors.Is(err, stacks.ErrUDPLiteUnsupported) {
				t.Skip("kernel without UDP-Lite")
			}
			require.NoError(t, err)
			accepted := acceptAll(t, ln)
			lap := listenerAddr(t, ln)
			a.send(lap, "a-hello")
			sa := <-accepted
			defer func() { sa.Abort(); <-sa.Done() }()
			b.send(lap, "b-hello")
			sb := <-accepted
			defer func() { sb.Abort(); <-sb.Done() }()
			require.Equal(t, tc.proto, sa.GetProperties().Stack)

			sendAll := func(c *Connection, msgs ...string) {
				t.Helper()
				for _, m := range msgs {
					var mc *MessageContext
					switch m {
					case "a-own-scavenger":
						mc = NewMessageContext().CapacityProfile(Scavenger)
					case "a-nofrag":
						mc = NewMessageContext().NoFragmentation(true) // WriteNoFrag without a TOS
					}
					require.NoError(t, c.Send(testCtx(t), []byte(m), mc))
				}
			}
			expect := func(c *tosClient, want map[string]uint8, n int) {
				t.Helper()
				for range n {
					data, tos := c.read()
					d, ok := want[data]
					require.True(t, ok, "unexpected datagram %q", data)
					require.Equal(t, d, stacks.DSCPOf(tos), "DSCP of %q", data)
					require.Equal(t, stacks.NotECT, stacks.ECNOf(tos), "ECN bits of %q", data)
				}
			}

			// before: both follow the Listener's socket
			sendAll(sa, "a-before")
			sendAll(sb, "b-before")
			expect(a, map[string]uint8{"a-before": 10}, 1)
			expect(b, map[string]uint8{"b-before": 10}, 1)

			require.NoError(t, sa.SetProperty(ConnCapacityProfile, LowLatencyInteractive))
			sendAll(sa, "a-ef-1", "a-own-scavenger", "a-nofrag", "a-ef-2")
			sendAll(sb, "b-after")
			expect(a, map[string]uint8{"a-ef-1": 46, "a-own-scavenger": 1, "a-nofrag": 46, "a-ef-2": 46}, 4)
			expect(b, map[string]uint8{"b-after": 10}, 1)

			pa, pb := sa.GetProperties(), sb.GetProperties()
			v, _ := pa.Get(ConnCapacityProfile)
			require.Equal(t, LowLatencyInteractive, v)
			require.NotNil(t, pa.Socket)
			require.Equal(t, uint8(46), pa.Socket.DSCP, "the connection's own DSCP read back")
			v, _ = pb.Get(ConnCapacityProfile)
			require.Equal(t, CapacitySeeking, v, "the sibling keeps its profile")
			require.Equal(t, uint8(10), pb.Socket.DSCP, "the sibling's DSCP is the shared socket's")
			kl := sockOf(t, unix.SOCK_DGRAM, lap, netip.AddrPort{})
			require.Equal(t, uint8(10), kl.dscp(), "the shared socket keeps its DSCP")

			// Default (DSCP 0) differs from the shared socket's 10: it is
			// marked per datagram too
			require.NoError(t, sa.SetProperty(ConnCapacityProfile, CapacityDefault))
			sendAll(sa, "a-default")
			sendAll(sb, "b-last")
			expect(a, map[string]uint8{"a-default": 0}, 1)
			expect(b, map[string]uint8{"b-last": 10}, 1)
			v, _ = sa.GetProperties().Get(ConnCapacityProfile)
			require.Equal(t, CapacityDefault, v)
			require.Zero(t, sa.GetProperties().Socket.DSCP)
		})
	}
}

// TestQUICAcceptedConnCapacityProfileNotApplicable: a QUIC connection a
// Listener accepted shares the Listener's socket, and quic-go has no
// per-connection TOS: SetProperty(connCapacityProfile) fails with
// stacks.ErrNotApplicable and changes nothing.
// So it is on the initiating side (SetProperty's doc said accepted only):
// the session's socket gets its DSCP when it is dialed, and quic-go writes
// each packet's TOS byte itself (ECN) on a socket dialed without one.
func TestQUICAcceptedConnCapacityProfileNotApplicable(t *testing.T) {
	sys := newTestSystem(t)
	c, s, _ := quicHuntPair(t, sys, quicOnly(t))
	for _, conn := range []*Connection{s, c} {
		err := conn.SetProperty(ConnCapacityProfile, LowLatencyInteractive)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		require.ErrorIs(t, err, stacks.ErrNotApplicable)
		v, _ := conn.GetProperties().Get(ConnCapacityProfile)
		require.Equal(t, CapacityDefault, v, "refused: nothing changed")
		require.Equal(t, StateEstablished, conn.State())
	}
}
