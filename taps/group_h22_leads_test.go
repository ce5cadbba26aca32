package taps

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// groupHolder is a System whose group actors can be held busy: once armed,
// the next group record traced (a member joining, say) blocks the group's
// turn, on the goroutine running it, until released. held is closed when
// that turn is held.
type groupHolder struct {
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func newGroupHolder(t *testing.T) (*System, *groupHolder) {
	h := &groupHolder{held: make(chan struct{}), release: make(chan struct{})}
	sys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		if r.Kind == "group" && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
	}))
	t.Cleanup(h.let)
	return sys, h
}

// let releases a held group (once).
func (h *groupHolder) let() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// CloseGroup and AbortGroup called on a member that has ended return once
// every other member of the group is Closing, as their doc says, also when
// the group is busy as they are called: the call waited for the group's
// answer or the end of the member it was called on, and that member had
// ended already, so it returned before the group had taken the request in.
func TestGroupsH22EndGroupOfAnEndedMemberWaitsForTheGroup(t *testing.T) {
	for _, abort := range []bool{false, true} {
		name := "CloseGroup"
		if abort {
			name = "AbortGroup"
		}
		t.Run(name, func(t *testing.T) {
			sys, h := newGroupHolder(t)
			ln := listenLoopback(t, sys, framers.NewLengthPrefix())
			echoServer(t, ln)
			ctx := testCtx(t)
			c := dial(t, sys, ln, framers.NewLengthPrefix())
			clone, err := c.Clone(ctx)
			require.NoError(t, err)
			require.NoError(t, c.Close())
			requireDone(t, c)
			<-c.link.Gone()
			// the group is held in a turn of its own (a third member joins)
			h.armed.Store(true)
			third := make(chan error, 1)
			go func() {
				cl, err := clone.Clone(ctx)
				if err == nil {
					cl.Abort()
					<-cl.Done()
				}
				third <- err
			}()
			<-h.held
			returned := make(chan ConnectionState, 1)
			go func() {
				if abort {
					c.AbortGroup()
				} else {
					c.CloseGroup()
				}
				returned <- clone.State() // as it returns
			}()
			var st ConnectionState
			select {
			case st = <-returned: // returned while the group was held
			case <-time.After(100 * time.Millisecond): // waiting for the group, as it should
				h.let()
				st = <-returned
			}
			h.let()
			require.GreaterOrEqual(t, st, StateClosing, "%s returned before the group's other member was Closing (%s)", name, st)
			<-third
			requireDone(t, clone)
		})
	}
}
