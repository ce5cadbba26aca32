package stacks

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMPTCPListenerGivesAcceptedSocketsTheUserTimeout: a TCP or TLS
// listener with MPTCP (what a Listener's default multipath, Passive,
// asks for) and a connTimeout must give the plain TCP sockets it accepts
// from peers without MPTCP that TCP_USER_TIMEOUT, as a plain TCP listener
// does. The MPTCP listening socket refuses the option (setUserTimeout
// skips it), so nothing was inherited: the accepted sockets ran with the
// system default (0) while the connection read connTimeout back as set.
func TestMPTCPListenerGivesAcceptedSocketsTheUserTimeout(t *testing.T) {
	skipUnlessLinux(t, "TCP_USER_TIMEOUT")
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name         string
		stack        Stack
		listen, dial Options
	}{
		{"tcp", TCP(), Options{}, Options{}},
		{"tls", TLS(), Options{TLS: pki.serverConfig()}, Options{TLS: pki.clientConfig()}},
	} {
		for _, mptcp := range []bool{true, false} {
			for _, uto := range []struct{ conn, user time.Duration }{{7 * time.Second, 0}, {0, 9 * time.Second}, {7 * time.Second, 9 * time.Second}} {
				ctx := testCtx(t)
				lo := tc.listen
				lo.Local, lo.MPTCP, lo.ConnTimeout, lo.UserTimeout = loopback4, mptcp, uto.conn, uto.user
				want := userTimeout(lo)
				ln, err := tc.stack.Listen(ctx, lo)
				require.NoError(t, err)
				accepted := acceptAsync(ln)
				c, err := tc.stack.Dial(ctx, addrPort(t, ln.Addr()), tc.dial) // a peer without MPTCP
				require.NoError(t, err)
				_, err = c.Write([]byte("x"))
				require.NoError(t, err)
				r := <-accepted
				require.NoError(t, r.err)
				b := make([]byte, 1)
				_, err = io.ReadFull(r.t, b)
				require.NoError(t, err)
				info, err := r.t.(SocketInfo).Info()
				require.NoError(t, err)
				require.False(t, info.MPTCP, "a peer without MPTCP: plain TCP")
				require.Equal(t, want, info.UserTimeout, "%s, MPTCP listener %v, %+v: the accepted socket's TCP_USER_TIMEOUT", tc.name, mptcp, uto)
				for _, tr := range []Transport{c, r.t} {
					require.NoError(t, tr.Close())
				}
				require.NoError(t, ln.Close())
			}
		}
	}
}
