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

// mtuDiscover reads IP_MTU_DISCOVER (v4) or IPV6_MTU_DISCOVER of c's
// socket.
func mtuDiscover(t *testing.T, c *net.UDPConn, v4 bool) int {
	t.Helper()
	var v int
	require.NoError(t, controlFD(c, func(fd int) error {
		level, name, _ := dfOption(v4)
		var err error
		v, err = unix.GetsockoptInt(fd, level, name)
		return err
	}))
	return v
}

// noFragStacks are the datagram stacks with NoFragDatagrams; UDP-Lite is
// left out on kernels without it.
func noFragStacks(t *testing.T) []Stack {
	out := []Stack{UDP()}
	ln, err := UDPLite().Listen(context.Background(), Options{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	if errors.Is(err, ErrUDPLiteUnsupported) {
		t.Log("no UDP-Lite in this kernel: tested on UDP only")
		return out
	}
	require.NoError(t, err)
	_ = ln.Close()
	return append(out, UDPLite())
}

// TestNoFragSwitchesDF: on loopback (no root), a WriteNoFrag datagram is
// delivered with the socket in IP_PMTUDISC_DO / IPV6_PMTUDISC_DO (DF),
// which stays for the next one; AllowFragmentation (dialled socket) or
// the next plain write (a listener's shared socket) restores the value
// the socket had before, and plain datagrams are delivered with it.
func TestNoFragSwitchesDF(t *testing.T) {
	for _, st := range noFragStacks(t) {
		for _, host := range []string{"127.0.0.1", "::1"} {
			t.Run(st.Name()+"/"+host, func(t *testing.T) {
				local := netip.AddrPortFrom(netip.MustParseAddr(host), 0)
				ln, err := st.Listen(context.Background(), Options{Local: local})
				if err != nil && host == "::1" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				require.NoError(t, err)
				defer ln.Close()
				c, err := st.Dial(context.Background(), ln.Addr().(*net.UDPAddr).AddrPort(), Options{})
				require.NoError(t, err)
				defer c.Close()
				v4 := host == "127.0.0.1"
				cs := udpConnOf(c)
				orig := mtuDiscover(t, cs, v4)
				require.NotEqual(t, unix.IP_PMTUDISC_DO, orig, "a new socket allows fragmentation")

				nf := c.(NoFragDatagrams)
				_, err = nf.WriteNoFrag([]byte("df-1"), 0, false)
				require.NoError(t, err)
				require.Equal(t, unix.IP_PMTUDISC_DO, mtuDiscover(t, cs, v4), "DF while noFragmentation datagrams are sent")
				p, err := ln.Accept()
				require.NoError(t, err)
				defer p.Close()
				buf := make([]byte, 64)
				n, err := p.Read(buf)
				require.NoError(t, err)
				require.Equal(t, "df-1", string(buf[:n]))
				// a TOS byte of its own too (not on a dialled UDP-Lite
				// socket, where WriteMsgUDP says "missing address": the
				// runtime does not know a socket made by FileConn is
				// connected)
				_, err = nf.WriteNoFrag([]byte("df-2"), TOS(10, NotECT), st.Name() == "udp")
				require.NoError(t, err)
				require.Equal(t, unix.IP_PMTUDISC_DO, mtuDiscover(t, cs, v4))
				require.NoError(t, nf.AllowFragmentation())
				require.Equal(t, orig, mtuDiscover(t, cs, v4), "restored")
				_, err = c.Write([]byte("plain"))
				require.NoError(t, err)
				for _, want := range []string{"df-2", "plain"} {
					n, err := p.Read(buf)
					require.NoError(t, err)
					require.Equal(t, want, string(buf[:n]))
				}

				// the accepted peer: the listener's shared socket
				ls := listenerConnOf(ln)
				lorig := mtuDiscover(t, ls, v4)
				_, err = p.(NoFragDatagrams).WriteNoFrag([]byte("back-df"), 0, false)
				require.NoError(t, err)
				require.Equal(t, unix.IP_PMTUDISC_DO, mtuDiscover(t, ls, v4))
				n, err = c.Read(buf)
				require.NoError(t, err)
				require.Equal(t, "back-df", string(buf[:n]))
				_, err = p.Write([]byte("back-plain"))
				require.NoError(t, err)
				require.Equal(t, lorig, mtuDiscover(t, ls, v4), "a plain write restores the shared socket")
				n, err = c.Read(buf)
				require.NoError(t, err)
				require.Equal(t, "back-plain", string(buf[:n]))
			})
		}
	}
}

func udpConnOf(tr Transport) *net.UDPConn {
	switch v := tr.(type) {
	case *udpTransport:
		return v.UDPConn
	case *udpLiteTransport:
		return v.UDPConn
	}
	panic(fmt.Sprintf("%T", tr))
}

func listenerConnOf(ln Listener) *net.UDPConn {
	switch v := ln.(type) {
	case *udpListener:
		return v.conn
	case *udpLiteListener:
		return v.conn
	}
	panic(fmt.Sprintf("%T", ln))
}

// TestNoFragTooLargeInNetns (root): in a namespace whose loopback MTU is
// 1280, a 2000-byte WriteNoFrag fails with a FragmentationError (path MTU
// 1280, EMSGSIZE) and sends nothing, the transport stays usable (a small
// datagram follows), and the same 2000 bytes written plainly arrive whole
// (fragmented and reassembled). IPv4 and IPv6, dialled and accepted side.
func TestNoFragTooLargeInNetns(t *testing.T) {
	ns := stacktest.NewNetns(t, "nf", 237)
	stacktest.IP(t, "-n", ns.NS, "link", "set", "lo", "mtu", "1280")
	stacks := noFragStacks(t)
	ns.Run(t, func() error {
		for _, st := range stacks {
			for _, host := range []string{"127.0.0.1", "::1"} {
				if err := noFragTooLarge(st, netip.MustParseAddr(host)); err != nil {
					return fmt.Errorf("%s %s: %w", st.Name(), host, err)
				}
			}
		}
		return nil
	})
}

func noFragTooLarge(st Stack, host netip.Addr) error {
	ln, err := st.Listen(context.Background(), Options{Local: netip.AddrPortFrom(host, 0)})
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := st.Dial(context.Background(), ln.Addr().(*net.UDPAddr).AddrPort(), Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	big := []byte(strings.Repeat("x", 2000))
	buf := make([]byte, 4096)
	read := func(tr Transport, want string) error {
		_ = tr.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := tr.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != want {
			return fmt.Errorf("read %d bytes %.20q, want %d bytes %.20q", n, buf[:n], len(want), want)
		}
		return nil
	}
	tooLarge := func(tr Transport, wantMTU int) error {
		_, err := tr.(NoFragDatagrams).WriteNoFrag(big, 0, false)
		var fe *FragmentationError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFragmentationNeeded) || !errors.Is(err, unix.EMSGSIZE) {
			return fmt.Errorf("WriteNoFrag of 2000 bytes: %v, want a FragmentationError (EMSGSIZE)", err)
		}
		if fe.Size != 2000 || fe.MTU != wantMTU {
			return fmt.Errorf("FragmentationError %+v, want size 2000 and MTU %d", fe, wantMTU)
		}
		return nil
	}
	if err := tooLarge(c, 1280); err != nil {
		return err
	}
	if _, err := c.(NoFragDatagrams).WriteNoFrag([]byte("small"), 0, false); err != nil {
		return err
	}
	p, err := ln.Accept()
	if err != nil {
		return err
	}
	defer p.Close()
	if err := read(p, "small"); err != nil { // the refused one never left
		return err
	}
	if err := c.(NoFragDatagrams).AllowFragmentation(); err != nil {
		return err
	}
	if _, err := c.Write(big); err != nil {
		return fmt.Errorf("plain write of 2000 bytes: %w", err)
	}
	if err := read(p, string(big)); err != nil {
		return err
	}
	// the accepted side (unconnected socket: no IP_MTU to read)
	if err := tooLarge(p, 0); err != nil {
		return err
	}
	if _, err := p.Write(big); err != nil {
		return fmt.Errorf("peer's plain write of 2000 bytes: %w", err)
	}
	return read(c, string(big))
}
