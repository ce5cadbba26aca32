package actors

import (
	"context"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

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

// A message posted to an idle mailbox runs at once without being queued,
// but not while the mailbox is suspended; a panic in it is escalated with
// the message, and the messages posted meanwhile still run in order.
func TestInlineMailboxDirectPost(t *testing.T) {
	m := &inlineMailbox{throughput: 300}
	var got []any
	var escalated []any
	inv := &escalatingInvoker{
		user: func(msg any) {
			got = append(got, msg)
			if msg == "panic" {
				m.PostUserMessage("after") // queued behind the failing message
				panic("boom")
			}
		},
		sys:      func(msg any) { got = append(got, msg) },
		escalate: func(reason, msg any) { escalated = append(escalated, reason, msg) },
	}
	m.invoker = inv
	m.PostUserMessage("a")
	require.Equal(t, []any{"a"}, got)
	require.Zero(t, m.UserMessageCount())

	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostUserMessage("b") // suspended: queued, not run
	require.Equal(t, []any{"a"}, got)
	require.Equal(t, 1, m.UserMessageCount())
	m.PostSystemMessage(&actor.ResumeMailbox{})
	require.Equal(t, []any{"a", "b"}, got)

	m.PostUserMessage("panic")
	require.Equal(t, []any{"boom", "panic"}, escalated)
	require.Equal(t, []any{"a", "b", "panic", "after"}, got, "the mailbox goes on after a failure")
	require.Zero(t, m.UserMessageCount())
	require.Equal(t, mbIdle, m.status.Load())
}

type escalatingInvoker struct {
	user, sys func(any)
	escalate  func(reason, msg any)
}

func (r *escalatingInvoker) InvokeSystemMessage(m any)       { r.sys(m) }
func (r *escalatingInvoker) InvokeUserMessage(m any)         { r.user(m) }
func (r *escalatingInvoker) EscalateFailure(reason, msg any) { r.escalate(reason, msg) }

// fastActor takes fastMsg through receiveFast (fastReceiver) and counts
// what reaches it by which way.
type fastActor struct {
	fast, slow   []any
	self         *actor.PID
	ctxSelf      *actor.PID // what receiveFast's ctx says it is
	stopping     bool
	stoppingSeen chan struct{}
}

type fastMsg struct{ n int }

func (a *fastActor) receiveFast(ctx actor.Context, msg any) bool {
	m, ok := msg.(*fastMsg)
	if !ok || a.stopping {
		return false
	}
	a.fast = append(a.fast, m.n)
	a.ctxSelf = ctx.Self()
	return true
}

func (a *fastActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.self = ctx.Self()
	case *actor.Stopping:
		a.stopping = true
		close(a.stoppingSeen)
	case *actor.Stopped:
	default:
		a.slow = append(a.slow, m)
	}
}

// TestInlineMailboxFastReceiver: an actor's data-path messages reach its
// receiveFast directly, in order with the messages that take protoactor's
// way, with its own context; once it is stopping they take protoactor's
// way again, which drops them once the actor has stopped.
func TestInlineMailboxFastReceiver(t *testing.T) {
	s := NewSystem(Config{})
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	a := &fastActor{stoppingSeen: make(chan struct{})}
	pid := s.AS.Root.Spawn(controlProps(func() actor.Actor { return a }))
	p := NewPoster(s.AS, pid)
	require.NotNil(t, p)
	p.Post(&fastMsg{1})
	p.Post("slow")
	p.Post(&fastMsg{2})
	// control actors run on the poster's goroutine when idle: all three ran
	require.Equal(t, []any{1, 2}, a.fast)
	require.Equal(t, []any{"slow"}, a.slow)
	require.Equal(t, a.self, a.ctxSelf, "receiveFast gets the actor's own context")
	require.NoError(t, s.AS.Root.StopFuture(pid).Wait())
	<-a.stoppingSeen
	p.Post(&fastMsg{3}) // after the stop: protoactor's way, dropped
	require.Equal(t, []any{1, 2}, a.fast)
	require.Equal(t, []any{"slow"}, a.slow)
}
