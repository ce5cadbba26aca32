package taps

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Bug: a nil endpoint given to WithRemoteEndpoint, WithLocalEndpoint or
// AddRemote made Initiate, Listen and Resolve panic (nil dereference)
// instead of failing with an *EndpointError before any packet.
func TestNilEndpointIsEndpointError(t *testing.T) {
	sys := newTestSystem(t)
	ref := refusedAddr(t)
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		require.Error(t, err, what)
		var ep *EndpointError
		require.ErrorAs(t, err, &ep, what)
		require.ErrorIs(t, err, ErrInvalidEndpoint, what)
		var ee *EstablishmentError
		if errors.As(err, &ee) {
			require.Empty(t, ee.Attempts, "%s: nothing was attempted", what)
		}
	}
	noPanic := func(t *testing.T, what string, fn func() error) {
		t.Helper()
		var err error
		require.NotPanics(t, func() { err = fn() }, what)
		check(t, what, err)
	}
	noPanic(t, "Initiate, nil remote", func() error {
		_, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(nil)).Initiate(testCtx(t))
		return err
	})
	noPanic(t, "Initiate, nil remote among others", func() error {
		_, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(ref), nil)).Initiate(testCtx(t))
		return err
	})
	noPanic(t, "Initiate, AddRemote(nil)", func() error {
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(ref)))
		pre.AddRemote(nil)
		_, err := pre.Initiate(testCtx(t))
		return err
	})
	noPanic(t, "Initiate, nil local", func() error {
		_, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(ref)), WithLocalEndpoint(nil)).Initiate(testCtx(t))
		return err
	})
	noPanic(t, "Listen, nil local", func() error {
		_, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(nil)).Listen(testCtx(t))
		return err
	})
	noPanic(t, "Resolve, nil local", func() error {
		_, _, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(nil)).Resolve(testCtx(t))
		return err
	})
	noPanic(t, "Resolve, nil remote", func() error {
		_, _, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(nil)).Resolve(testCtx(t))
		return err
	})
}

// Bug: an endpoint given a port by service name (WithService) worked for
// the first Initiate only: converting it marked the endpoint's port as set
// without storing the port, so the second use of the same Preconnection
// (which "can be used again") failed with "no port".
func TestServicePortPreconnectionReusable(t *testing.T) {
	sys := newTestSystem(t)
	r := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService("http")
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(r))
	for i := range 3 {
		cfg, _, err := pre.snapshot(roleInitiate)
		require.NoError(t, err, "snapshot %d", i)
		require.EqualValues(t, 80, cfg.Remotes[0].Port, "snapshot %d", i)
	}
	require.Equal(t, "127.0.0.1:http", r.String(), "using the endpoint does not change it")

	// the same through Resolve and Listen (a service for a local endpoint)
	for i := range 2 {
		_, rs, err := pre.Resolve(testCtx(t))
		require.NoError(t, err, "Resolve %d", i)
		require.Len(t, rs, 1)
		require.Equal(t, "127.0.0.1:80", rs[0].String())
	}
}

// TestInitiateCtxEndListsAttempts: the *EstablishmentError of an Initiate
// whose ctx ends during racing lists every attempt, as a
// WithEstablishmentTimeout does (it listed none: the racer was stopped
// with them).
func TestInitiateCtxEndListsAttempts(t *testing.T) {
	sys := newTestSystem(t)
	refused, dead := refusedAddr(t), deadListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithAttemptDelay(10*time.Millisecond),
		WithRemoteEndpoint(remote(refused), remote(dead)))
	_, err := pre.Initiate(ctx)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, ee.Attempts, 2, "every attempt is listed: %v", err)
	require.ErrorIs(t, ee.Attempts[0].Err, syscall.ECONNREFUSED)
}

// handshakeFramer is a framer whose handshake never completes: it never
// calls MakeConnectionReady (a peer that does not answer).
type handshakeFramer struct{ framers.Framer }

func (handshakeFramer) Start(*framers.Instance)              {}
func (f handshakeFramer) Clone() framers.Framer              { return f }
func (handshakeFramer) HandleReceivedData(*framers.Instance) {}

// TestEstablishmentTimeoutCoversFramerHandshake: WithEstablishmentTimeout
// bounds the whole establishment, a framer handshake that never completes
// (RFC 9623 §6, Ready waits for MakeConnectionReady) included (it was
// bounded by ctx only: the timer lived in the preconnection actor, which
// ends with the race).
func TestEstablishmentTimeoutCoversFramerHandshake(t *testing.T) {
	sys := newTestSystem(t)
	live := drainListener(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithEstablishmentTimeout(200*time.Millisecond),
		WithRemoteEndpoint(remote(live)))
	pre.AddFramer(handshakeFramer{framers.NewLengthPrefix()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pre.Initiate(ctx)
	if c != nil {
		c.Abort()
	}
	require.ErrorIs(t, err, ErrEstablishmentTimeout, "the establishment timeout fired, not ctx")
	require.NoError(t, ctx.Err())
}
