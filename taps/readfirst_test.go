package taps

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestActiveReadBeforeSendListenerWritesFirst: with activeReadBeforeSend
// Required on both sides, a secure Preconnection that could race QUIC and
// TLS gets TLS, on which the Listener hands the connection on before the
// initiator sends anything, so the server speaks first. On QUIC (which the
// default multistreaming Prefer would put first) the server would see
// nothing until the client's first stream data: neither side would ever
// send.
func TestActiveReadBeforeSendListenerWritesFirst(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ctx := testCtx(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(ActiveReadBeforeSend))
	srv := NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec()), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	srv.AddFramer(framers.NewLengthPrefix())
	ln, err := srv.Listen(ctx)
	require.NoError(t, err)
	defer ln.Stop()
	sent := make(chan error, 1)
	ln.OnConnectionReceived(func(_ *Listener, s *Connection) {
		sent <- s.Send(ctx, []byte("server first"), nil)
	})

	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	props := c.GetProperties()
	require.Equal(t, "tls", props.Stack)
	require.True(t, props.Selected[ActiveReadBeforeSend], "read back: the stack lets the listener write first")
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "server first", string(m.Data))
	require.NoError(t, <-sent)
}

// TestActiveReadBeforeSendRequiredRulesOutQUICAndUDP: a QUIC-only or UDP
// Preconnection that Requires activeReadBeforeSend fails to Initiate and to
// Listen before any packet, with ErrUnfulfilled; Prefer still selects QUIC
// when nothing else is allowed, and Prohibit rules nothing out.
func TestActiveReadBeforeSendRequiredRulesOutQUICAndUDP(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ctx := testCtx(t)
	pc := rawUDP(t) // the remote of the Initiates: it must receive nothing
	remote := loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort())

	quicProps := func(level func(*TransportProperties, Property) error) *TransportProperties {
		tp := NewTransportProperties()
		require.NoError(t, level(tp, ActiveReadBeforeSend))
		return tp
	}
	req := (*TransportProperties).Require
	for _, tc := range []struct {
		name string
		pre  *Preconnection
	}{
		{"quic initiate", NewPreconnection(WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(pki.clientSec()),
			WithTransportProperties(quicProps(req)), WithRemoteEndpoint(remote))},
		{"udp initiate", NewPreconnection(WithSystem(sys), WithTransportProperties(func() *TransportProperties {
			tp := datagramProps(t)
			require.NoError(t, tp.Require(ActiveReadBeforeSend))
			return tp
		}()), WithRemoteEndpoint(remote))},
	} {
		_, err := tc.pre.Initiate(ctx)
		require.ErrorIs(t, err, ErrUnfulfilled, tc.name)
		var ee *EstablishmentError
		require.True(t, errors.As(err, &ee), tc.name)
	}
	_, err := NewPreconnection(WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(pki.serverSec()),
		WithTransportProperties(quicProps(req)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
	require.ErrorIs(t, err, ErrUnfulfilled, "quic listen")
	// loopback delivers a datagram as it is sent: one would be queued now
	require.NoError(t, pc.SetReadDeadline(time.Now()))
	_, _, err = pc.ReadFrom(make([]byte, 1500))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "a datagram was sent before the failure")

	// Prefer: QUIC is the only stack allowed, so it is selected
	for _, level := range []func(*TransportProperties, Property) error{(*TransportProperties).Prefer, (*TransportProperties).Prohibit} {
		ln, err := NewPreconnection(WithSystem(sys), WithProtocols("quic"), WithSecurityParameters(pki.serverSec()),
			WithTransportProperties(quicProps(level)),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
		require.NoError(t, err)
		ln.Stop()
	}
}

// TestSelectedReadsBackEverySelectionProperty: a TCP connection reads
// back every Selection Property that tells anything about it as a
// Boolean (RFC 9622 §8), activeReadBeforeSend and, on Linux,
// useTemporaryLocalAddress (a loopback address is not temporary) too.
func TestSelectedReadsBackEverySelectionProperty(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	defer s.Abort()
	defer c.Abort()
	for _, conn := range []*Connection{c, s} {
		sel := conn.GetProperties().Selected
		for _, p := range []Property{Reliability, PreserveOrder, ActiveReadBeforeSend} {
			v, ok := sel[p]
			require.True(t, ok && v, "%s", p)
		}
		tmp, ok := sel[UseTemporaryLocalAddress]
		if runtime.GOOS == "linux" {
			require.True(t, ok, "useTemporaryLocalAddress read back")
		}
		require.False(t, tmp)
	}
}
