package taps

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// The UDP port of a QUIC session is free once the Connection whose end
// ended the session is Done, however the session ended: the peer closed
// it (aborted, or as the active closer after this side's FIN), or this
// side waited out the linger of its graceful close; and once
// System.Shutdown has returned, the dialed connections' ports too. A
// client on a fixed local port, or a restarted server, needs no retry.

const quicPortRounds = 30

// freeUDPPort is a UDP port on 127.0.0.1 free now.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	require.NoError(t, pc.Close())
	return port
}

// quicFixedClient is the Preconnection of a QUIC client bound to
// 127.0.0.1:local, of the server at 127.0.0.1:port.
func quicFixedClient(sys *System, pki *testPKI, local, port uint16) *Preconnection {
	tp := NewTransportProperties()
	_ = tp.Require(Multistreaming)
	return NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithSecurityParameters(pki.clientSec()),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(local)),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
}

// quicFixedConnect connects a client on the fixed local port to ln and
// returns the client's Connection and the accepted one.
func quicFixedConnect(t *testing.T, ctx context.Context, sys *System, pki *testPKI, ln *Listener, local uint16) (c, s *Connection) {
	t.Helper()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	c, err := quicFixedClient(sys, pki, local, ap.Port()).Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err = ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	return c, s
}

// readToFinal receives until the peer's end of stream (or an error).
func readToFinal(t *testing.T, ctx context.Context, c *Connection) {
	t.Helper()
	for {
		m, err := c.Receive(ctx)
		if err != nil || (m.Context != nil && m.Context.IsFinal()) {
			return
		}
	}
}

func quicServer(t *testing.T, ctx context.Context, sys *System, pki *testPKI) *Listener {
	t.Helper()
	srvPre, _ := portReleasePre(t, sys, portQUIC, pki)
	ln, err := srvPre(0).Listen(ctx)
	require.NoError(t, err)
	return ln
}

// TestQUICDialedPortFreeAfterPeerEndsSession: the peer ends the session
// of a client on a fixed local port, by an Abort or, as the active
// closer, at once after the client's FIN (the client, the passive closer,
// was lingering); the client's Done is closed once its socket is, and
// its port can be bound at once.
func TestQUICDialedPortFreeAfterPeerEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		graceful bool
	}{{"PeerAborts", false}, {"PeerClosesAsActiveCloser", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pki := newTestPKI(t)
			local := freeUDPPort(t)
			var ln *Listener
			for round := range quicPortRounds {
				if ln == nil || tc.graceful {
					ln = quicServer(t, ctx, sys, pki)
				}
				c, s := quicFixedConnect(t, ctx, sys, pki, ln, local)
				if tc.graceful {
					// the session is not kept for the peer's next
					// stream: the server closes it as the active closer
					ln.Stop()
					require.NoError(t, s.Close())
					readToFinal(t, ctx, c)
					require.NoError(t, c.Close())
				} else {
					s.Abort()
				}
				await(t, ctx, c.Done(), "the client Connection's Done")
				portFree(t, portQUIC, local, round)
				await(t, ctx, s.Done(), "the server Connection's Done")
			}
			ln.Stop()
			await(t, ctx, ln.Done(), "the listener's Done")
		})
	}
}

// TestQUICDialedPortFreeAfterLinger: the client closes as the passive
// closer, and the server keeps the session for the client's next stream
// (its Listener is open): the client's session ends when its linger does;
// Done waits for it, and the port can be bound at once.
func TestQUICDialedPortFreeAfterLinger(t *testing.T) {
	sys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pki := newTestPKI(t)
	local := freeUDPPort(t)
	ln := quicServer(t, ctx, sys, pki)
	for round := range quicPortRounds {
		c, s := quicFixedConnect(t, ctx, sys, pki, ln, local)
		require.NoError(t, s.Close())
		readToFinal(t, ctx, c)
		require.NoError(t, c.Close())
		await(t, ctx, c.Done(), "the client Connection's Done")
		portFree(t, portQUIC, local, round)
		await(t, ctx, s.Done(), "the server Connection's Done")
	}
	ln.Stop()
	await(t, ctx, ln.Done(), "the listener's Done")
}

// TestQUICAcceptedPortFreeAfterPeerEndsSession: the Listener stopped
// with an accepted Connection open; the server closes it as the passive
// closer (the client sent its FIN), and the client, whose both directions
// are then over, ends the session as the active closer: the server
// Connection's Done waits for the session's end, and the Listener's port
// can be bound at once.
func TestQUICAcceptedPortFreeAfterPeerEndsSession(t *testing.T) {
	sys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pki := newTestPKI(t)
	srvPre, cliPre := portReleasePre(t, sys, portQUIC, pki)
	port := uint16(0)
	for round := range quicPortRounds {
		ln, p, c, s := connectOnce(t, ctx, srvPre, cliPre, port)
		port = p
		ln.Stop()
		await(t, ctx, ln.Done(), "the listener's Done")
		require.NoError(t, c.Send(ctx, nil, NewMessageContext().Final(true)))
		readToFinal(t, ctx, s)
		require.NoError(t, s.Close())
		await(t, ctx, s.Done(), "the server Connection's Done")
		portFree(t, portQUIC, port, round)
		if err := c.Close(); err != nil { // the server's end of the session may have ended it
			require.ErrorIs(t, err, ErrClosed)
		}
		await(t, ctx, c.Done(), "the client Connection's Done")
	}
}

// TestQUICDialedPortFreeAfterShutdown: System.Shutdown closes a client's
// Connection as the passive closer (the server closed first and keeps the
// session): Shutdown returns once the client's socket is closed, after
// the linger.
func TestQUICDialedPortFreeAfterShutdown(t *testing.T) {
	srvSys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pki := newTestPKI(t)
	local := freeUDPPort(t)
	ln := quicServer(t, ctx, srvSys, pki)
	for round := range quicPortRounds {
		sys := NewSystem()
		c, s := quicFixedConnect(t, ctx, sys, pki, ln, local)
		require.NoError(t, s.Close())
		readToFinal(t, ctx, c)
		require.NoError(t, sys.Shutdown(ctx))
		portFree(t, portQUIC, local, round)
		await(t, ctx, s.Done(), "the server Connection's Done")
	}
	ln.Stop()
	await(t, ctx, ln.Done(), "the listener's Done")
}

// TestQUICAcceptedPortFreeAfterLinger: the Listener stopped with an
// accepted Connection open; the peer (plain quic-go) sent its FIN and
// leaves the session open, so the server's Close, as the passive closer,
// ends the session after its linger: the server Connection's Done waits
// for it, and the Listener's port can be bound at once.
func TestQUICAcceptedPortFreeAfterLinger(t *testing.T) {
	sys := newTestSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pki := newTestPKI(t)
	srvPre, _ := portReleasePre(t, sys, portQUIC, pki)
	port := uint16(0)
	for round := range quicPortRounds {
		ln, err := srvPre(port).Listen(ctx)
		require.NoError(t, err)
		ap, ok := ln.LocalEndpoints()[0].Addr()
		require.True(t, ok)
		port = ap.Port()
		qc, err := quic.DialAddr(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))),
			&tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", NextProtos: []string{"gotaps-test"}}, nil)
		require.NoError(t, err)
		str, err := qc.OpenStreamSync(ctx)
		require.NoError(t, err)
		_, err = str.Write([]byte("hello"))
		require.NoError(t, err)
		require.NoError(t, str.Close()) // FIN; the session stays open
		s, err := ln.Accept(ctx)
		require.NoError(t, err)
		ln.Stop()
		await(t, ctx, ln.Done(), "the listener's Done")
		readToFinal(t, ctx, s)
		require.NoError(t, s.Close())
		await(t, ctx, s.Done(), "the server Connection's Done")
		portFree(t, portQUIC, port, round)
		select {
		case <-qc.Context().Done(): // the server's CONNECTION_CLOSE ended it
		case <-ctx.Done():
			t.Fatal("the client's session did not end")
		}
	}
}
