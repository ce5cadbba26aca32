package taps

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// GroupedConnections of a member that has ended lists the rest of its
// group, as its doc says ("once it has ended, the others"): it returned
// none once the member's actor had stopped (its listing was asked of that
// actor alone), though the group ran on with the clone.
func TestGroupsH22GroupedConnectionsOfAnEndedMember(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	ctx := testCtx(t)
	c := dial(t, sys, ln, framers.NewLengthPrefix())
	clone, err := c.Clone(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	requireDone(t, c)
	group, err := c.GroupedConnections(ctx)
	require.NoError(t, err)
	require.Equal(t, []*Connection{clone}, group)
	group, err = clone.GroupedConnections(ctx)
	require.NoError(t, err)
	require.Equal(t, []*Connection{clone}, group)
	require.NoError(t, clone.Close())
	requireDone(t, clone)
	for _, m := range []*Connection{c, clone} { // the group has ended
		group, err = m.GroupedConnections(ctx)
		require.NoError(t, err)
		require.Empty(t, group)
	}
}

// A WithResolver lookup that panics is contained: the lookup fails with a
// *PanicError (an establishment's resolution error, as a panicking
// stack's dial is an attempt's), the other family's answer still counts,
// and the process goes on. The lookup ran on a goroutine of the
// resolver's own, and its panic crashed the process.
func TestSupervisionH22ResolverPanicIsContained(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	t.Run("every lookup", func(t *testing.T) {
		pre := NewPreconnection(WithSystem(sys),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("panic.example").WithPort(ap.Port())),
			WithResolver(func(context.Context, string, string) ([]netip.Addr, error) { panic("resolver bug") }))
		_, err := pre.Initiate(testCtx(t))
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonResolutionFailed, ee.Reason)
		var pe *PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "resolver bug", pe.Value)
		require.Equal(t, "WithResolver lookup", pe.Where)
		require.NotEmpty(t, pe.Stack)
	})
	t.Run("one family", func(t *testing.T) {
		pre := NewPreconnection(WithSystem(sys),
			WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("panic.example").WithPort(ap.Port())),
			WithResolver(func(_ context.Context, network, _ string) ([]netip.Addr, error) {
				if network == "ip6" {
					panic("resolver bug")
				}
				return []netip.Addr{ap.Addr()}, nil
			}))
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		requireDone(t, c)
	})
}

// A message sent while the connection re-establishes waits for the new
// transport (WithReestablishment's doc): its msgLifetime runs meanwhile
// (Expired), and it fails with a SendError when the attempts are spent.
func TestReestH22SendDuringReestablishment(t *testing.T) {
	t.Run("lifetime", func(t *testing.T) {
		c, _ := inLongBackoff(t)
		mc := NewMessageContext()
		require.NoError(t, mc.Set(MsgLifetime, 50*time.Millisecond))
		sent := make(chan error, 1)
		c.SendAsync([]byte("late"), mc, func(_ *Connection, err error) { sent <- err })
		err := epAwait(t, testCtx(t), sent, "Expired")
		require.ErrorIs(t, err, ErrExpired)
		require.Equal(t, StateEstablishing, c.State(), "still re-establishing")
		c.Abort()
		requireDone(t, c)
	})
	t.Run("attempts spent", func(t *testing.T) {
		sys := newTestSystem(t)
		ln, r := rawListener(t)
		pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r),
			WithReestablishment(ReestablishPolicy{Initial: 100 * time.Millisecond, MaxAttempts: 1}))
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err)
		ev := watchReest(c)
		peer, err := ln.Accept()
		require.NoError(t, err)
		require.NoError(t, ln.Close()) // the attempt is refused
		require.NoError(t, peer.Close())
		require.Equal(t, "reestablishing", <-ev.ch)
		sent := make(chan error, 1)
		c.SendAsync([]byte("queued"), nil, func(_ *Connection, err error) { sent <- err })
		err = epAwait(t, testCtx(t), sent, "SendError")
		var se *SendError
		require.ErrorAs(t, err, &se)
		requireDone(t, c)
		var ce *ConnectionError
		require.ErrorAs(t, c.Err(), &ce)
		require.Equal(t, []string{"connectionError"}, ev.all())
	})
}
