package taps

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The port of a stopped Listener is free once the documented signal is
// in (Listener.Done; for a QUIC session that outlived its Listener, the
// Done of the Connection whose close ended it, or System.Shutdown): a
// server restarting its listener on a fixed port needs no retry.

type portKind int

const (
	portTCP portKind = iota
	portUDP
	portQUIC
)

const portReleaseRounds = 50

// portReleasePre sets up the Preconnections of a server on 127.0.0.1:port
// and of a client of it.
func portReleasePre(t *testing.T, sys *System, kind portKind, pki *testPKI) (srv, cli func(port uint16) *Preconnection) {
	t.Helper()
	tp := NewTransportProperties()
	switch kind {
	case portTCP:
		require.NoError(t, tp.Prohibit(Multistreaming))
	case portUDP:
		tp = NewTransportProperties(UnreliableDatagram)
	case portQUIC:
		require.NoError(t, tp.Require(Multistreaming))
	}
	srv = func(port uint16) *Preconnection {
		opts := []PreconnectionOption{WithSystem(sys), WithTransportProperties(tp),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(port))}
		if kind == portQUIC {
			opts = append(opts, WithSecurityParameters(pki.serverSec()))
		}
		return NewPreconnection(opts...)
	}
	cli = func(port uint16) *Preconnection {
		opts := []PreconnectionOption{WithSystem(sys), WithTransportProperties(tp),
			WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port))}
		if kind == portQUIC {
			opts = append(opts, WithSecurityParameters(pki.clientSec()))
		}
		return NewPreconnection(opts...)
	}
	return srv, cli
}

// connectOnce listens on port (0: any), connects a client, and returns
// the listener, the accepted Connection and the client's.
func connectOnce(t *testing.T, ctx context.Context, srvPre, cliPre func(uint16) *Preconnection, port uint16) (*Listener, uint16, *Connection, *Connection) {
	t.Helper()
	ln, err := srvPre(port).Listen(ctx)
	require.NoError(t, err)
	if port == 0 {
		ap, ok := ln.LocalEndpoints()[0].Addr()
		require.True(t, ok)
		port = ap.Port()
	}
	c, err := cliPre(port).Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	m, err := s.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	return ln, port, c, s
}

func await(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
}

// portFree binds the port at once, as a restarted server would.
func portFree(t *testing.T, kind portKind, port uint16, round int) {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 1)
	if kind == portTCP {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: int(port)})
		require.NoError(t, err, "round %d: TCP port %d still in use", round, port)
		require.NoError(t, l.Close())
		return
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: int(port)})
	require.NoError(t, err, "round %d: UDP port %d still in use", round, port)
	require.NoError(t, pc.Close())
}

// TestListenerPortFreeAfterStopThenClose: the Listener stops with one
// accepted Connection open, then both sides close it (the server first,
// and the client closes once it has read the server's end of stream, so
// that the server is the active closer and its Close ends the QUIC
// session).
// Done of the Listener does not wait for the open Connection; the port is
// free once the server Connection's Done is closed (for TCP at
// Listener.Done already; UDP's socket, like QUIC's, is shared with the
// accepted Connection: TestUDPListenerSocketOutlivesStopWithItsConnections).
func TestListenerPortFreeAfterStopThenClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind portKind
	}{{"TCP", portTCP}, {"UDP", portUDP}, {"QUIC", portQUIC}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			srvPre, cliPre := portReleasePre(t, sys, tc.kind, newTestPKI(t))
			port := uint16(0)
			for round := range portReleaseRounds {
				ln, p, c, s := connectOnce(t, ctx, srvPre, cliPre, port)
				port = p
				ln.Stop()
				await(t, ctx, ln.Done(), "the listener's Done")
				if tc.kind == portTCP {
					// the listening socket is closed (UDP's, QUIC's is
					// shared with the accepted Connection still open)
					portFree(t, tc.kind, port, round)
				}
				require.NoError(t, s.Close())
				if tc.kind != portUDP {
					// the server's end of stream comes first: the
					// server is the active closer
					for {
						m, err := c.Receive(ctx)
						if err != nil || (m.Context != nil && m.Context.IsFinal()) {
							break
						}
						require.Empty(t, m.Data)
					}
				}
				require.NoError(t, c.Close())
				await(t, ctx, s.Done(), "the server Connection's Done")
				portFree(t, tc.kind, port, round)
				await(t, ctx, c.Done(), "the client Connection's Done")
			}
		})
	}
}

// TestListenerPortFreeAfterCloseThenStop: both sides close the accepted
// Connection (QUIC: the session stays, kept by the listener for the
// peer's next stream), then the Listener stops: its Done waits for the
// session, which ends after the linger, and the port is free then.
func TestListenerPortFreeAfterCloseThenStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind portKind
	}{{"TCP", portTCP}, {"UDP", portUDP}, {"QUIC", portQUIC}} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newTestSystem(t)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			srvPre, cliPre := portReleasePre(t, sys, tc.kind, newTestPKI(t))
			port := uint16(0)
			for round := range portReleaseRounds {
				ln, p, c, s := connectOnce(t, ctx, srvPre, cliPre, port)
				port = p
				require.NoError(t, c.Close())
				require.NoError(t, s.Close())
				await(t, ctx, s.Done(), "the server Connection's Done")
				await(t, ctx, c.Done(), "the client Connection's Done")
				ln.Stop()
				await(t, ctx, ln.Done(), "the listener's Done")
				portFree(t, tc.kind, port, round)
			}
		})
	}
}

// TestListenerPortFreeAfterShutdown: System.Shutdown with a Listener and
// one accepted Connection open returns once the port is free.
func TestListenerPortFreeAfterShutdown(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind portKind
	}{{"TCP", portTCP}, {"UDP", portUDP}, {"QUIC", portQUIC}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			pki := newTestPKI(t)
			port := uint16(0)
			for round := range portReleaseRounds {
				sys := NewSystem()
				srvPre, cliPre := portReleasePre(t, sys, tc.kind, pki)
				_, p, _, _ := connectOnce(t, ctx, srvPre, cliPre, port)
				port = p
				require.NoError(t, sys.Shutdown(ctx))
				portFree(t, tc.kind, port, round)
			}
		})
	}
}
