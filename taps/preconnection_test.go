package taps

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestPreconnectionSnapshotShared: Initiates from an unchanged
// Preconnection share one immutable config; changing an endpoint, adding a
// framer or a remote makes a new one that has the change.
func TestPreconnectionSnapshotShared(t *testing.T) {
	sys := newTestSystem(t)
	r := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(1)
	p := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()), WithRemoteEndpoint(r))

	a, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	b, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.Same(t, a, b, "nothing changed: the config is shared")

	r.WithInterface("lo")
	c, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.NotSame(t, a, c)
	require.Equal(t, "lo", c.Remotes[0].Interface)
	require.Empty(t, a.Remotes[0].Interface, "a config made earlier does not change")

	p.AddFramer(framers.NewLengthPrefix())
	d, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.NotSame(t, c, d)
	require.Len(t, d.Framers, 1)
	require.Empty(t, c.Framers)

	p.AddRemote(NewRemoteEndpoint().WithIPAddress("127.0.0.2").WithPort(1))
	e, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.Len(t, e.Remotes, 2)

	l, _, err := p.snapshot(roleListen)
	require.Error(t, err, "Listen needs a local endpoint: the roles are apart")
	require.Nil(t, l)
}

// TestPreconnectionSnapshotSharedWithTLS: the security parameters are a
// copy taken by NewPreconnection, so a secure snapshot (its TLS
// configuration included) is made once and shared, and changing the
// application's SecurityParameters afterwards changes nothing.
func TestPreconnectionSnapshotSharedWithTLS(t *testing.T) {
	sys := newTestSystem(t)
	sec := NewSecurityParameters().SetALPN("a")
	p := NewPreconnection(WithSystem(sys), WithSecurityParameters(sec),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("localhost").WithPort(443)))
	a, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.NotNil(t, a.StackOptions.TLS)
	sec.SetALPN("b").SetServerName("elsewhere")
	b, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.Same(t, a, b)
	require.Equal(t, []string{"a"}, b.StackOptions.TLS.NextProtos)
	require.Empty(t, b.StackOptions.TLS.ServerName)

	p.AddRemote(NewRemoteEndpoint().WithHostName("localhost").WithPort(444))
	c, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.NotSame(t, a, c, "the endpoints changed: a new snapshot")
	require.Len(t, c.Remotes, 2)
}

// TestPreconnectionStackChoiceFollowsFraming: the stack selection is
// remembered for the same inputs, and made again when they change: a
// framer makes a reliable byte stream preserve message boundaries.
func TestPreconnectionStackChoiceFollowsFraming(t *testing.T) {
	sys := newTestSystem(t)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(PreserveMsgBoundaries, Require))
	p := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()), WithTransportProperties(tp),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(1)))

	_, _, err := p.snapshot(roleInitiate)
	require.ErrorIs(t, err, ErrUnfulfilled, "no plain reliable stack preserves boundaries")
	_, _, err = p.snapshot(roleInitiate)
	require.ErrorIs(t, err, ErrUnfulfilled, "the same inputs, the same answer")

	p.AddFramer(framers.NewLengthPrefix())
	cfg, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.Equal(t, "tcp", cfg.Stacks[0].Name())
}

// TestInitiateWithSendKeepsSharedSnapshot: a safely replayable first
// message asks for early data on its own connection's copy of the config,
// never on the config other Initiates share.
func TestInitiateWithSendKeepsSharedSnapshot(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	p := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	p.AddFramer(framers.NewLengthPrefix())
	shared, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)

	c, err := p.InitiateWithSend(testCtx(t), []byte("hello"), NewMessageContext().SafelyReplayable(true))
	require.NoError(t, err)
	defer c.Abort()
	require.True(t, c.cfg.StackOptions.EarlyData)
	require.False(t, shared.StackOptions.EarlyData)
	again, _, err := p.snapshot(roleInitiate)
	require.NoError(t, err)
	require.Same(t, shared, again)
	require.False(t, again.StackOptions.EarlyData)
}

// BenchmarkInitiate is one Initiate to a loopback TCP listener, up to
// Ready, then Close until Closed (W1's loop, with the close timed too).
func BenchmarkInitiate(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = io.Copy(io.Discard, c); c.Close() })
		}
	})
	sys := NewSystem()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sys.Shutdown(ctx)
	}()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	p := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	p.AddFramer(framers.NewLengthPrefix())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := p.Initiate(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
		<-c.Done()
	}
}
