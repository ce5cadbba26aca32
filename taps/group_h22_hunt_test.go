package taps

import (
	"testing"

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
