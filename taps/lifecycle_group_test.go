package taps

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A member that left its group after a CloneError is in a group of its
// own (RFC 9622 §7.4): its CloseGroup closes it alone, and leaves the
// group it left alone.
func TestCloseGroupOfAMemberThatLeftClosesOnlyIt(t *testing.T) {
	for _, abort := range []bool{false, true} {
		name := "CloseGroup"
		if abort {
			name = "AbortGroup"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			c, clone, cloneErrs := cloneThatCannotFollow(t)
			require.NoError(t, c.SetProperty(ConnCapacityProfile, Scavenger))
			select { // the clone left the group
			case <-cloneErrs:
			case <-ctx.Done():
				t.Fatal("no CloneError")
			}

			// its group is itself: a clone of it cannot join one
			_, err := clone.Clone(ctx)
			var ce *CloneError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, ReasonNotCloneable, ce.Reason)
			members, err := clone.GroupedConnections(ctx)
			require.NoError(t, err)
			require.Len(t, members, 1)
			require.Equal(t, clone.ID(), members[0].ID())

			if abort {
				clone.AbortGroup()
			} else {
				clone.CloseGroup()
			}
			requireDone(t, clone)
			if abort {
				require.ErrorIs(t, clone.Err(), ErrAborted)
			} else {
				require.NoError(t, clone.Err())
			}
			require.Equal(t, StateEstablished, c.State(), "the group the clone left is not its group any more")
			roundTrip(t, c, "still open")
			require.NoError(t, c.Close())
			requireDone(t, c)
		})
	}
}

// requireDone waits (at most 5 s) for c's Done.
func requireDone(t *testing.T, c *Connection) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("connection %d: Done not closed (state %s)", c.ID(), c.State())
	}
}
