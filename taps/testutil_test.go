package taps

import (
	"context"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// newTestSystem returns a System shut down (and checked) when t ends.
func newTestSystem(t *testing.T, opts ...SystemOption) *System {
	t.Helper()
	sys := NewSystem(opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, sys.Shutdown(ctx))
	})
	return sys
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// listenLoopback starts a Listener on 127.0.0.1 with the given framers.
func listenLoopback(t *testing.T, sys *System, fs ...framers.Framer) *Listener {
	t.Helper()
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	return ln
}

// dialTCP initiates a TCP connection (the tcp stack only) to a listener
// on loopback.
func dialTCP(t *testing.T, sys *System, ln *Listener) *Connection {
	t.Helper()
	c, err := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln)))).Initiate(testCtx(t))
	require.NoError(t, err)
	return c
}

// dial initiates a connection to the listener.
func dial(t *testing.T, sys *System, ln *Listener, fs ...framers.Framer) *Connection {
	t.Helper()
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	pre := NewPreconnection(WithSystem(sys),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	for _, f := range fs {
		pre.AddFramer(f)
	}
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	return c
}

// dialAccept dials ln (with fs) and returns the connection and the
// Listener's connection for it.
func dialAccept(t *testing.T, sys *System, ln *Listener, fs ...framers.Framer) (c, s *Connection) {
	t.Helper()
	c = dial(t, sys, ln, fs...)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	return c, s
}
