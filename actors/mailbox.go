package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// inlineMailbox is the mailbox of connection and framer actors: it runs the
// actor on the goroutine that posts to it when the actor is idle (what
// protoactor's synchronized dispatcher does with its default mailbox), and
// it does so without allocating per message: protoactor's default mailbox
// allocates a closure per schedule and a queue node per system message,
// which on the data path (several hops per message) was a large part of
// the garbage per message.
//
// Semantics are the default mailbox's: system messages first, user
// messages in order, suspension, a panic escalated to the supervisor, and
// the poster yields the processor after throughput messages.
type inlineMailbox struct {
	mu   sync.Mutex
	user fifo
	sys  fifo

	status     atomic.Int32 // idle or running
	userN      atomic.Int32
	sysN       atomic.Int32
	suspended  atomic.Bool
	invoker    actor.MessageInvoker
	throughput int
}

const (
	mbIdle int32 = iota
	mbRunning
)

// inlineMailboxProducer makes one inlineMailbox per actor.
func inlineMailboxProducer() actor.Mailbox { return &inlineMailbox{} }

func (m *inlineMailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userN.Add(1)
	m.schedule()
}

func (m *inlineMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.sys.push(msg)
	m.mu.Unlock()
	m.sysN.Add(1)
	m.schedule()
}

func (m *inlineMailbox) RegisterHandlers(invoker actor.MessageInvoker, d actor.Dispatcher) {
	m.invoker = invoker
	m.throughput = d.Throughput()
}

func (m *inlineMailbox) Start() {}

func (m *inlineMailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *inlineMailbox) schedule() {
	if m.status.CompareAndSwap(mbIdle, mbRunning) {
		m.process()
	}
}

func (m *inlineMailbox) process() {
	for {
		m.run()
		m.status.Store(mbIdle)
		if m.sysN.Load() == 0 && (m.suspended.Load() || m.userN.Load() == 0) {
			return
		}
		if !m.status.CompareAndSwap(mbIdle, mbRunning) {
			return // another poster runs it now
		}
	}
}

func (m *inlineMailbox) pop(q *fifo, n *atomic.Int32) any {
	m.mu.Lock()
	msg := q.pop()
	m.mu.Unlock()
	if msg != nil {
		n.Add(-1)
	}
	return msg
}

func (m *inlineMailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	for i := 0; ; i++ {
		if m.throughput > 0 && i > m.throughput {
			i = 0
			runtime.Gosched()
		}
		if msg = m.pop(&m.sys, &m.sysN); msg != nil {
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		if msg = m.pop(&m.user, &m.userN); msg == nil {
			return
		}
		m.invoker.InvokeUserMessage(msg)
	}
}

// fifo is a queue on a slice that reuses its array once drained.
type fifo struct {
	q    []any
	head int
}

func (f *fifo) push(x any) {
	if len(f.q) == cap(f.q) && f.head > 0 {
		// full, with popped slots at the front: move the rest down
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, x)
}

func (f *fifo) pop() any {
	if f.head == len(f.q) {
		return nil
	}
	x := f.q[f.head]
	f.q[f.head] = nil
	f.head++
	if f.head == len(f.q) {
		if cap(f.q) > 1024 {
			f.q = nil // a burst: do not keep its array
		} else {
			f.q = f.q[:0]
		}
		f.head = 0
	}
	return x
}
