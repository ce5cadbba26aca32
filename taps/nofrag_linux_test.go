package taps

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/stacks/stacktest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// socketFD finds this process's socket of type typ bound to local through
// /proc/self/fd (the public API does not hand out its sockets).
func socketFD(t *testing.T, typ int, local netip.AddrPort) int {
	t.Helper()
	return findSocket(t, typ, local, nil)
}

// findSocket returns the first socket of this process of type typ bound to
// local for which match (nil: any) is true; the test fails without one.
func findSocket(t *testing.T, typ int, local netip.AddrPort, match func(fd int) bool) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		if st, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || st != typ {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil || sockaddrAddrPort(sa) != local {
			continue
		}
		if match == nil || match(fd) {
			return fd
		}
	}
	t.Fatalf("no socket bound to %s", local)
	return -1
}

// sockaddrAddrPort is an IP socket address as a netip.AddrPort (IPv4-mapped
// addresses unmapped; the zero value for other families).
func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// socketOption reads an int option of the socket socketFD finds.
func socketOption(t *testing.T, typ int, local netip.AddrPort, level, name int) int {
	t.Helper()
	v, err := unix.GetsockoptInt(socketFD(t, typ, local), level, name)
	require.NoError(t, err)
	return v
}

// TestNoFragmentationUDPSetsDF: a UDP connection on loopback (no root)
// sends a noFragmentation message with its socket in IP_PMTUDISC_DO (DF
// set); the next message without the property is sent after the socket
// went back to the value it had (fragmentation allowed, IP_PMTUDISC_WANT
// by default); both arrive. IPv4 and, when ::1 works, IPv6
// (IPV6_MTU_DISCOVER).
func TestNoFragmentationUDPSetsDF(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			level, name := unix.IPPROTO_IP, unix.IP_MTU_DISCOVER
			if host == "::1" {
				level, name = unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER
			}
			sys := newTestSystem(t)
			sln, err := stacks.UDP().Listen(testCtx(t), stacks.Options{Local: netip.AddrPortFrom(netip.MustParseAddr(host), 0)})
			if err != nil && host == "::1" {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			require.NoError(t, err)
			defer sln.Close()
			c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
				WithRemoteEndpoint(loopbackRemote(sln.Addr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
			require.NoError(t, err)
			defer c.Abort()

			require.NoError(t, c.Send(testCtx(t), []byte("no fragments"), NewMessageContext().NoFragmentation(true)))
			peer, err := sln.Accept()
			require.NoError(t, err)
			defer peer.Close()
			buf := make([]byte, 64)
			n, err := peer.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "no fragments", string(buf[:n]))
			local := peer.RemoteAddr().(*net.UDPAddr).AddrPort()
			local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
			require.Equal(t, unix.IP_PMTUDISC_DO, socketOption(t, unix.SOCK_DGRAM, local, level, name),
				"DF after a noFragmentation message")

			require.NoError(t, c.Send(testCtx(t), []byte("may fragment"), nil))
			n, err = peer.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "may fragment", string(buf[:n]))
			require.Equal(t, unix.IP_PMTUDISC_WANT, socketOption(t, unix.SOCK_DGRAM, local, level, name),
				"the default (fragmentation allowed) after a message without the property")
		})
	}
}

// TestNoFragmentationTCPKeepsDF: a TCP socket with path MTU discovery off
// (IP_PMTUDISC_DONT, as net.ipv4.ip_no_pmtu_disc=1 makes it) is switched
// to IP_PMTUDISC_WANT (DF set) by the first noFragmentation message; the
// message arrives.
func TestNoFragmentationTCPKeepsDF(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	sys := newTestSystem(t)
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"),
		WithRemoteEndpoint(loopbackRemote(ln.Addr().(*net.TCPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()
	fd := socketFD(t, unix.SOCK_STREAM, peer.RemoteAddr().(*net.TCPAddr).AddrPort()) // c's socket
	require.NoError(t, unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT))

	require.NoError(t, c.Send(testCtx(t), []byte("no fragments"), NewMessageContext().NoFragmentation(true)))
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 12)
	_, err = io.ReadFull(peer, buf)
	require.NoError(t, err)
	require.Equal(t, "no fragments", string(buf))
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
	require.NoError(t, err)
	require.Equal(t, unix.IP_PMTUDISC_WANT, v, "path MTU discovery (DF) back on")
}

// TestNoFragmentationTooLargeInNetns (root): the path to a peer in a
// network namespace has MTU 1280 (both ends of the veth pair): a
// 2000-byte noFragmentation message gets a SendError (ErrFragmentationNeeded)
// and the connection stays usable: the next small message arrives, and the
// same 2000 bytes without the property arrive whole (fragmented and
// reassembled).
func TestNoFragmentationTooLargeInNetns(t *testing.T) {
	lab := stacktest.NewNetns(t, "nt", 238)
	stacktest.IP(t, "link", "set", lab.HostIf, "mtu", "1280")
	stacktest.IP(t, "-n", lab.NS, "link", "set", lab.NSIf, "mtu", "1280")
	var pc *net.UDPConn
	lab.Run(t, func() error {
		var err error
		pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.NSIP, 0)))
		return err
	})
	defer pc.Close()
	sys := newTestSystem(t)
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(datagramProps(t)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer c.Abort()
	big := []byte(strings.Repeat("x", 2000))

	err = c.Send(testCtx(t), big, NewMessageContext().NoFragmentation(true))
	var se *SendError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, stacks.ErrFragmentationNeeded)
	var fe *stacks.FragmentationError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 1280, fe.MTU)
	require.Equal(t, StateEstablished, c.State())
	v, ok := c.GetProperties().Get(SingularTransmissionMsgMaxLen)
	require.True(t, ok)
	require.EqualValues(t, 1280-20-8, v, "singularTransmissionMsgMaxLen: the path MTU less the IPv4 and UDP headers")
	// noSegmentation: one packet, so never fragmented either
	err = c.Send(testCtx(t), big, NewMessageContext().NoSegmentation(true))
	require.ErrorIs(t, err, stacks.ErrFragmentationNeeded)

	require.NoError(t, c.Send(testCtx(t), []byte("small"), NewMessageContext().NoFragmentation(true)))
	require.NoError(t, c.Send(testCtx(t), big, nil))
	buf := make([]byte, 4096)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := pc.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "small", string(buf[:n]), "the refused message never left")
	n, err = pc.Read(buf)
	require.NoError(t, err)
	require.Equal(t, 2000, n, "fragmented and reassembled")
}
