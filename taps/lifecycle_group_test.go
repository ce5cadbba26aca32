package taps

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/stacks"
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

// panickyInfoStack is socketlessStack whose second and later transports
// panic in Info (read by GetProperties) once armed.
type panickyInfoStack struct {
	socketlessStack
	armed atomic.Bool
}

type panickyInfo struct {
	socketless
	armed *atomic.Bool
}

var errLeftMemberBug = errors.New("bug in a member that left its group")

func (p panickyInfo) Info() (stacks.TransportInfo, error) {
	if p.armed.Load() {
		panic(errLeftMemberBug)
	}
	return stacks.TransportInfo{}, nil
}

func (s *panickyInfoStack) Dial(ctx context.Context, r netip.AddrPort, o stacks.Options) (stacks.Transport, error) {
	t, err := s.socketlessStack.Dial(ctx, r, o)
	if sl, ok := t.(socketless); ok && err == nil {
		return panickyInfo{socketless: sl, armed: &s.armed}, nil
	}
	return t, err
}

// A member that left its group after a CloneError is still supervised by
// it: a panic in its connection actor ends it with a ConnectionError
// carrying the *PanicError, as for a member (it was a bare ErrClosed).
func TestPanicOfAMemberThatLeftIsAConnectionErrorWithThePanic(t *testing.T) {
	st := &panickyInfoStack{socketlessStack: socketlessStack{Stack: stacks.TCP()}}
	c, clone, cloneErrs := cloneThatCannotFollowOn(t, st)
	ctx := testCtx(t)
	connErrs := make(chan error, 1)
	clone.OnConnectionError(func(_ *Connection, err error) { connErrs <- err })
	require.NoError(t, c.SetProperty(ConnCapacityProfile, Scavenger))
	select { // the clone left the group
	case <-cloneErrs:
	case <-ctx.Done():
		t.Fatal("no CloneError")
	}
	require.True(t, clone.link.LeftGroup())

	st.armed.Store(true)
	_, _ = clone.GetPropertiesContext(ctx) // the clone's actor panics reading its socket's info
	requireDone(t, clone)
	var pe *PanicError
	require.ErrorAs(t, clone.Err(), &pe, "the panic is kept: %v", clone.Err())
	require.ErrorIs(t, clone.Err(), errLeftMemberBug)
	select {
	case err := <-connErrs:
		require.ErrorAs(t, err, &pe, "the ConnectionError handler gets the panic: %v", err)
	case <-ctx.Done():
		t.Fatal("no ConnectionError event")
	}
	st.armed.Store(false)
	require.Equal(t, StateEstablished, c.State(), "the group it left goes on")
	roundTrip(t, c, "still open")
}
