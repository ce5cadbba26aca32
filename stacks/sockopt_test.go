package stacks

import (
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSocketOptionsReadBack sets DSCP, TCP_USER_TIMEOUT and keep-alive and
// reads them back with getsockopt through Info, on both ends (accepted
// sockets inherit them from the listener). TCP_USER_TIMEOUT only on Linux.
func TestSocketOptionsReadBack(t *testing.T) {
	linux := runtime.GOOS == "linux"
	pki := newTestPKI(t)
	loop6 := netip.AddrPortFrom(netip.IPv6Loopback(), 0)
	cases := []struct {
		name         string
		stack        Stack
		local        netip.AddrPort
		listen, dial Options
		tcp          bool
	}{
		{name: "tcp4", stack: TCP(), local: loopback4, tcp: true},
		{name: "tcp6", stack: TCP(), local: loop6, tcp: true},
		{name: "tls", stack: TLS(), local: loopback4, tcp: true,
			listen: Options{TLS: pki.serverConfig()}, dial: Options{TLS: pki.clientConfig()}},
		{name: "udp4", stack: UDP(), local: loopback4},
		{name: "udp6", stack: UDP(), local: loop6},
		{name: "quic", stack: QUIC(), local: loopback4,
			listen: Options{TLS: pki.serverConfig()}, dial: Options{TLS: pki.clientConfig()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			set := func(o Options) Options {
				o.DSCP = 46 // EF
				if linux {
					o.UserTimeout = 3 * time.Second
				}
				o.KeepAlive = 7 * time.Second
				o.KeepAliveInterval = 2 * time.Second
				return o
			}
			lo := set(tc.listen)
			lo.Local = tc.local
			ln, err := tc.stack.Listen(ctx, lo)
			if err != nil && tc.local.Addr().Is6() {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			require.NoError(t, err)
			defer ln.Close()
			accepted := acceptAsync(ln)
			c, err := tc.stack.Dial(ctx, addrPort(t, ln.Addr()), set(tc.dial))
			require.NoError(t, err)
			_, err = c.Write([]byte("x"))
			require.NoError(t, err)
			r := <-accepted
			require.NoError(t, r.err)
			_, err = io.ReadFull(r.t, make([]byte, 1))
			require.NoError(t, err)
			for _, tr := range []Transport{c, r.t} {
				info, err := tr.(SocketInfo).Info()
				require.NoError(t, err)
				require.Equal(t, uint8(46), info.DSCP)
				if tc.tcp {
					if linux {
						require.Equal(t, 3*time.Second, info.UserTimeout)
					}
					require.True(t, info.KeepAlive)
					require.Equal(t, 7*time.Second, info.KeepAliveIdle)
					require.Equal(t, 2*time.Second, info.KeepAliveInterval)
					require.Equal(t, MaxLen{Unlimited: true}, info.SendMsgMaxLen)
				}
			}
			require.NoError(t, c.Abort())
			require.NoError(t, r.t.Abort())
			waitQUICDone(t, c)
			waitQUICDone(t, r.t)
		})
	}
}

func TestConnTimeoutMapsToUserTimeout(t *testing.T) {
	skipUnlessLinux(t, "TCP_USER_TIMEOUT")
	ctx := testCtx(t)
	ln, err := TCP().Listen(ctx, Options{Local: loopback4})
	require.NoError(t, err)
	defer ln.Close()
	accepted := acceptAsync(ln)
	c, err := TCP().Dial(ctx, addrPort(t, ln.Addr()), Options{ConnTimeout: 1500 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	r := <-accepted
	require.NoError(t, r.err)
	defer r.t.Close()
	info, err := c.(SocketInfo).Info()
	require.NoError(t, err)
	require.Equal(t, 1500*time.Millisecond, info.UserTimeout)
	require.False(t, info.KeepAlive, "keep-alive is off unless asked for")
	require.Equal(t, uint8(0), info.DSCP)
}

func TestDSCPOutOfRange(t *testing.T) {
	_, err := TCP().Listen(testCtx(t), Options{Local: loopback4, DSCP: 64})
	require.ErrorContains(t, err, "DSCP")
}

// TestMPTCP dials and listens with MPTCP. If the kernel refuses MPTCP, Go
// falls back to TCP: the test then checks the fallback works.
func TestMPTCP(t *testing.T) {
	ctx := testCtx(t)
	for _, st := range []Stack{TCP()} {
		ln, err := st.Listen(ctx, Options{Local: loopback4, MPTCP: true})
		require.NoError(t, err)
		accepted := acceptAsync(ln)
		c, err := st.Dial(ctx, addrPort(t, ln.Addr()), Options{MPTCP: true})
		require.NoError(t, err)
		r := <-accepted
		require.NoError(t, r.err)
		_, err = c.Write([]byte("mp"))
		require.NoError(t, err)
		buf := make([]byte, 2)
		_, err = io.ReadFull(r.t, buf)
		require.NoError(t, err)
		ci, err := c.(SocketInfo).Info()
		require.NoError(t, err)
		si, err := r.t.(SocketInfo).Info()
		require.NoError(t, err)
		if ci.MPTCP {
			require.True(t, si.MPTCP, "server side of an MPTCP connection")
			t.Logf("MPTCP in use on both ends")
		} else {
			t.Logf("kernel did not use MPTCP; plain TCP fallback works")
		}
		// Without the option, MPTCP is never used.
		accepted = acceptAsync(ln)
		p, err := st.Dial(ctx, addrPort(t, ln.Addr()), Options{})
		require.NoError(t, err)
		pi, err := p.(SocketInfo).Info()
		require.NoError(t, err)
		require.False(t, pi.MPTCP)
		r2 := <-accepted
		require.NoError(t, r2.err)
		for _, tr := range []Transport{c, r.t, p, r2.t} {
			require.NoError(t, tr.Close())
		}
		require.NoError(t, ln.Close())
	}
}
