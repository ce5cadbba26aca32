package taps

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refusedLoopbackPort is a port of 127.0.0.1 on which nothing listens,
// neither UDP nor TCP: the port of sockets of both kinds just closed.
func refusedLoopbackPort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = udp.Close()
		if err != nil {
			continue // the TCP port is taken: another one
		}
		_ = tcp.Close()
		return uint16(port)
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// initiateRefused initiates pre, which has nothing to reach, and returns
// its EstablishmentError and how long Initiate took.
func initiateRefused(t *testing.T, pre *Preconnection) (*EstablishmentError, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	c, err := pre.Initiate(ctx)
	took := time.Since(start)
	if c != nil {
		c.Abort()
	}
	require.NoError(t, ctx.Err(), "failed by its attempts, not by the deadline")
	t.Logf("after %v: %v", took, err)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	return ee, took
}

// refusedBy tells whether an attempt of stack failed with
// syscall.ECONNREFUSED.
func refusedBy(ee *EstablishmentError, stack string) bool {
	for _, a := range ee.Attempts {
		if a.Stack == stack && errors.Is(a.Err, syscall.ECONNREFUSED) {
			return true
		}
	}
	return false
}

// TestQUICInitiateToAClosedPortIsRefusedAtOnce: a QUIC-only Initiate to a
// UDP port where nothing listens fails on the ICMP port unreachable, as
// TCP's dial fails on the RST, rather than by its handshake timeout.
func TestQUICInitiateToAClosedPortIsRefusedAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ICMP errors of a QUIC handshake are read on Linux only")
	}
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()),
		WithTransportProperties(quicOnly(t)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(refusedLoopbackPort(t))))
	ee, took := initiateRefused(t, pre)
	require.Less(t, took, 2*time.Second, "the refused QUIC attempt waited for its handshake timeout")
	require.True(t, refusedBy(ee, "quic"), "the QUIC attempt is refused: %v", ee)
	require.ErrorIs(t, ee, syscall.ECONNREFUSED)
}

// TestSecureInitiateToAClosedPortIsRefusedAtOnce: with security needed,
// TLS and QUIC race; to a host where nothing listens on either port both
// are refused at once, so is the Initiate.
func TestSecureInitiateToAClosedPortIsRefusedAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ICMP errors of a QUIC handshake are read on Linux only")
	}
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.clientSec()), WithSecurityNeeded(true),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(refusedLoopbackPort(t))))
	ee, took := initiateRefused(t, pre)
	require.Less(t, took, 2*time.Second, "the refused QUIC attempt waited for its handshake timeout")
	require.True(t, refusedBy(ee, "tls"), "the TLS attempt is refused: %v", ee)
	require.True(t, refusedBy(ee, "quic"), "the QUIC attempt is refused: %v", ee)
}

// TestQUICInitiateToALiveListenerStillWorks: the watch for ICMP errors
// leaves a QUIC handshake that succeeds, and its connection, alone.
func TestQUICInitiateToALiveListenerStillWorks(t *testing.T) {
	ln, pre := quicPair(t)
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "quic", c.GetProperties().Stack)
	roundTrip(t, c, "over QUIC")
	roundTrip(t, c, "and again")
	c.Abort()
	requireDone(t, c)
	ln.Stop()
}
