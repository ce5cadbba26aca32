package taps

import (
	"testing"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// sendFixPair is a connected pair over loopback for the send-path tests:
// TCP with a length-prefix framer ("tcp+lp") or a "\n" delimiter
// ("tcp+delim"), TLS over TCP ("tls+lp") or a QUIC stream ("quic"), both
// with a length-prefix framer.
func sendFixPair(t *testing.T, sys *System, kind string) (c, s *Connection) {
	t.Helper()
	ctx := testCtx(t)
	switch kind {
	case "tcp+lp":
		return sendRecvHuntPair(t, sys, kind)
	case "tcp+delim":
		nl := func() framers.Framer { return framers.NewDelimiter([]byte("\n")) }
		ln := listenLoopback(t, sys, nl())
		t.Cleanup(ln.Stop)
		return dialAccept(t, sys, ln, nl())
	case "tls+lp", "quic":
		tp := quicOnly(t)
		if kind == "tls+lp" {
			tp = NewTransportProperties()
			require.NoError(t, tp.Prohibit(Multistreaming))
		}
		pki := newTestPKI(t)
		ln := quicListen(t, ctx, sys, pki, tp)
		c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
		require.NoError(t, err)
		// a QUIC server sees the stream once data arrives on it
		require.NoError(t, c.Send(ctx, []byte("hello"), nil))
		s, err = ln.Accept(ctx)
		require.NoError(t, err)
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, "hello", string(m.Data))
		want := "tls"
		if kind == "quic" {
			want = "quic"
		}
		require.Equal(t, want, c.GetProperties().Stack)
		return c, s
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}
