package taps

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDefaultSystemLifecycle: Preconnections made without WithSystem share
// DefaultSystem; its Shutdown closes their connections and listeners,
// those Preconnections then fail with ErrSystemShutdown, and the next
// DefaultSystem is a new, working System.
func TestDefaultSystemLifecycle(t *testing.T) {
	shutdown := func(s *System) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	}
	first := DefaultSystem()
	require.Same(t, first, DefaultSystem(), "one default System until it is shut down")

	lpre := NewPreconnection(WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	ln, err := lpre.Listen(testCtx(t))
	require.NoError(t, err)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	cpre := NewPreconnection(WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	c, err := cpre.Initiate(testCtx(t))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, c.Send(testCtx(t), []byte("on the default System"), nil))
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "on the default System", string(m.Data))

	shutdown(first)
	for _, conn := range []*Connection{c, s} {
		select {
		case <-conn.Done():
		default:
			t.Fatalf("connection %d not closed by the default System's Shutdown", conn.ID())
		}
	}
	_, err = cpre.Initiate(testCtx(t))
	require.ErrorIs(t, err, ErrSystemShutdown, "a Preconnection of the shut down System")
	_, err = lpre.Listen(testCtx(t))
	require.ErrorIs(t, err, ErrSystemShutdown)

	second := DefaultSystem()
	require.NotSame(t, first, second, "a shut down default System is replaced")
	t.Cleanup(func() { shutdown(second) })
	require.Same(t, second, DefaultSystem())
	ln2, err := NewPreconnection(WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(testCtx(t))
	require.NoError(t, err)
	ap2, ok := ln2.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	c2, err := NewPreconnection(WithProtocols("tcp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap2.Addr().String()).WithPort(ap2.Port()))).Initiate(testCtx(t))
	require.NoError(t, err, "a Preconnection made after the Shutdown uses the new default System")
	s2, err := ln2.Accept(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, c2.Send(testCtx(t), []byte("again"), nil))
	m, err = s2.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "again", string(m.Data))
}

// TestCloneEndedByShutdownSaysSo: a Clone that the System's Shutdown ends
// (or that comes after it) fails with a CloneError unwrapping to
// ErrSystemShutdown, as an Initiate does.
func TestCloneEndedByShutdownSaysSo(t *testing.T) {
	sys := NewSystem()
	ln := listenLoopback(t, sys)
	c, _ := dialAccept(t, sys, ln)
	failed := make(chan error, 1)
	go func() {
		for {
			cl, err := c.Clone(context.Background())
			if err != nil {
				failed <- err
				return
			}
			_ = cl
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, sys.Shutdown(ctx))
	var err error
	select {
	case err = <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("Clone still succeeding after Shutdown")
	}
	var ce *CloneError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrSystemShutdown, "%v", err)
	_, err = c.Clone(testCtx(t))
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrSystemShutdown, "a Clone after Shutdown: %v", err)
}
