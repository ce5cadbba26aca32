package actors

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The mailbox queue keeps order across interleaved pushes and pops, also
// when it compacts its array (a queue never fully drained must not grow
// with the number of messages it has carried).
func TestFifoOrderAndBoundedArray(t *testing.T) {
	var f fifo
	next, want := 0, 0
	f.push(next) // one message always waits: the queue never drains
	next++
	for round := 0; round < 10000; round++ {
		f.push(next)
		next++
		require.Equal(t, want, f.pop())
		want++
	}
	require.Less(t, cap(f.q), 64, "array bounded by what is queued, not by what passed")
	for want < next {
		require.Equal(t, want, f.pop())
		want++
	}
	require.Nil(t, f.pop())
	require.Zero(t, f.head)
}

// Messages posted to an inline mailbox run in order on the poster's
// goroutine; a message posted while the actor runs is run by the same
// goroutine before it returns.
func TestInlineMailboxRunsOnThePoster(t *testing.T) {
	m := &inlineMailbox{throughput: 300}
	var got []int
	inv := &recordingInvoker{}
	inv.user = func(msg any) {
		got = append(got, msg.(int))
		if msg.(int) == 1 {
			m.PostUserMessage(2) // re-entrant post: queued, run after 1
			require.Equal(t, []int{1}, got, "not run inside the running message")
		}
	}
	m.invoker = inv
	m.PostUserMessage(1)
	require.Equal(t, []int{1, 2}, got)
	m.PostUserMessage(3)
	require.Equal(t, []int{1, 2, 3}, got)
	require.Zero(t, m.UserMessageCount())
}

type recordingInvoker struct{ user func(any) }

func (r *recordingInvoker) InvokeSystemMessage(any)  {}
func (r *recordingInvoker) InvokeUserMessage(m any)  { r.user(m) }
func (r *recordingInvoker) EscalateFailure(any, any) {}
