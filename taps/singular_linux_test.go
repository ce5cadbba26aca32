package taps

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSingularTransmissionMsgMaxLen reads singularTransmissionMsgMaxLen on
// every stack over loopback (MTU 65536): TCP reports the MSS (which the
// kernel sizes per connection), TLS the MSS less one record's overhead,
// QUIC streams are not applicable. UDP's is
// in TestNoFragmentationTooLargeInNetns and the stacks tests.
func TestSingularTransmissionMsgMaxLen(t *testing.T) {
	sys := newTestSystem(t)
	singular := func(c *Connection) any {
		t.Helper()
		v, ok := c.GetProperties().Get(SingularTransmissionMsgMaxLen)
		require.True(t, ok, "%s: singularTransmissionMsgMaxLen is readable", c.GetProperties().Stack)
		return v
	}

	ln := listenLoopback(t, sys)
	defer ln.Stop()
	tcp := dial(t, sys, ln)
	defer tcp.Abort()
	require.Equal(t, "tcp", tcp.GetProperties().Stack)
	mss, ok := singular(tcp).(int64)
	require.True(t, ok)
	require.Greater(t, mss, int64(1000))
	require.Less(t, mss, int64(65536-40), "the MSS: below the loopback MTU less the headers")

	pki := newTestPKI(t)
	tlsLn := secureListener(t, sys, pki.serverSec(), prohibit(t, Multistreaming))
	defer tlsLn.Stop()
	tlsConn, err := securePre(sys, tlsLn, pki.clientSec(), prohibit(t, Multistreaming)).Initiate(testCtx(t))
	require.NoError(t, err)
	defer tlsConn.Abort()
	require.Equal(t, "tls", tlsConn.GetProperties().Stack)
	tlsMax, ok := singular(tlsConn).(int64)
	require.True(t, ok)
	require.Greater(t, tlsMax, int64(1000), "TLS: the MSS less a record's overhead (stacks TestSingularMsgMaxLenTLS)")
	require.Less(t, tlsMax, int64(65536-40))

	quicProps := NewTransportProperties()
	require.NoError(t, quicProps.Require(Multistreaming))
	quicLn := secureListener(t, sys, pki.serverSec(), quicProps)
	defer quicLn.Stop()
	quicConn, err := securePre(sys, quicLn, pki.clientSec(), quicProps).Initiate(testCtx(t))
	require.NoError(t, err)
	defer quicConn.Abort()
	require.Equal(t, "quic", quicConn.GetProperties().Stack)
	require.Equal(t, NotApplicable, singular(quicConn))
}

// TestCongestionReadBack: a TCP connection reports the congestion control
// its socket runs: the system default here (no Scavenger profile).
func TestCongestionReadBack(t *testing.T) {
	def, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Skipf("no system default congestion control to compare with: %v", err)
	}
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	defer ln.Stop()
	c := dial(t, sys, ln)
	defer c.Abort()
	so := c.GetProperties().Socket
	require.NotNil(t, so)
	require.Equal(t, strings.TrimSpace(string(def)), so.Congestion)
}
