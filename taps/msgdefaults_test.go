package taps

import (
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// TestSetPropertyMessageDefaults: a Message Property set on a Connection
// is its default for the Messages it sends afterwards (a MessageContext
// still wins), reads back in GetProperties, is inherited by a later Clone
// and not by the other members of its group; a wrong value is a
// *PropertyError that changes nothing.
func TestSetPropertyMessageDefaults(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	defer s.Abort()
	defer func() { c.AbortGroup(); <-c.Done() }()
	ctx := testCtx(t)

	var pe *PropertyError
	require.ErrorAs(t, c.SetProperty(MsgPriority, "high"), &pe)
	require.ErrorAs(t, c.SetProperty(MsgLifetime, -time.Second), &pe)
	v, _ := c.GetProperties().Properties.Get(MsgPriority)
	require.EqualValues(t, 100, v, "nothing changed")

	// final as the default: the first Message sent without a context is
	// the last one; a context that says otherwise wins
	require.NoError(t, c.SetProperty(Final, true))
	require.NoError(t, c.SetProperty(MsgPriority, 7))
	v, _ = c.GetProperties().Properties.Get(Final)
	require.Equal(t, true, v)
	v, _ = c.GetProperties().Properties.Get(MsgPriority)
	require.EqualValues(t, 7, v)
	require.NoError(t, c.Send(ctx, []byte("not last"), NewMessageContext().Final(false)))
	clone, err := c.Clone(ctx) // before the final Message: a Clone of a connection that ended its stream is refused
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("last"), nil))
	require.ErrorIs(t, c.Send(ctx, []byte("after"), nil), ErrFinalSent)
	for _, want := range []string{"not last", "last"} {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(m.Data))
	}

	// the Clone started with c's defaults
	v, _ = clone.GetProperties().Properties.Get(MsgPriority)
	require.EqualValues(t, 7, v, "a Clone starts with its original's defaults")
	v, _ = clone.GetProperties().Properties.Get(Final)
	require.Equal(t, true, v)
	// ... and its own changes stay its own
	require.NoError(t, clone.SetProperty(Final, false))
	require.NoError(t, clone.Send(ctx, []byte("one"), nil))
	require.NoError(t, clone.Send(ctx, []byte("two"), nil), "final is no longer its default")
	v, _ = c.GetProperties().Properties.Get(Final)
	require.Equal(t, true, v, "the original keeps its own")
}
