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
// the poster yields the processor after throughput messages. A user
// message posted to an idle mailbox with nothing queued is run at once,
// without entering the queue, and an empty queue is never locked: a hop
// into an idle actor costs one compare-and-swap and a few loads.
type inlineMailbox struct {
	// what a post into an idle mailbox touches first (one cache line)
	status     atomic.Int32 // idle or running
	userN      atomic.Int32
	sysN       atomic.Int32
	suspended  atomic.Bool
	throughput int
	invoker    actor.MessageInvoker
	// fast, when the actor has one, takes its data-path messages without
	// protoactor's per-message work (fastReceiver); invoker is then the
	// actor's context
	fast fastReceiver

	mu   sync.Mutex
	user fifo
	sys  fifo
}

const (
	mbIdle int32 = iota
	mbRunning
)

// inlineMailboxProducer makes one inlineMailbox per actor.
func inlineMailboxProducer() actor.Mailbox { return &inlineMailbox{} }

func (m *inlineMailbox) PostUserMessage(msg any) {
	if m.status.CompareAndSwap(mbIdle, mbRunning) {
		// The poster runs the actor. With nothing queued (no system
		// message, no earlier user message) and the mailbox not
		// suspended, msg is invoked at once: it never enters the queue
		// (what most hops on the data path do, into an idle actor).
		if m.sysN.Load() == 0 && m.userN.Load() == 0 && !m.suspended.Load() {
			m.process(msg)
			return
		}
		m.pushUser(msg)
		m.process(nil)
		return
	}
	m.pushUser(msg)
	m.schedule()
}

func (m *inlineMailbox) pushUser(msg any) {
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userN.Add(1)
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
	if ctx, ok := invoker.(actor.Context); ok {
		if f, ok := ctx.Actor().(fastReceiver); ok {
			m.fast = f
		}
		if u, ok := ctx.Actor().(mailboxUser); ok {
			u.setMailbox(m)
		}
	}
}

// fastReceiver is an actor whose data-path messages its inline mailbox
// hands over directly, in order with the others and under the same
// mailbox rules (one message at a time, system messages first,
// suspension, a panic escalated), but without what protoactor's
// InvokeUserMessage does per message (its stopped check, receive timeout
// and metrics lookups, the context's current message, the
// auto-receive checks): on the data path, several hops per message, that
// was a large part of each hop. receiveFast reports false for any message
// it does not take, or when the actor may be stopping: the message then
// goes through InvokeUserMessage as usual. The actor must not use a
// receive timeout, middleware, or ctx.Message() / Sender / Respond in
// what receiveFast runs.
type fastReceiver interface {
	receiveFast(ctx actor.Context, msg any) bool
}

// mailboxUser is an actor told its inline mailbox (to see whether
// messages wait in it: empty).
type mailboxUser interface {
	setMailbox(m *inlineMailbox)
}

// empty tells whether no message waits in the mailbox (the one its actor
// handles now is not counted). Called by the actor itself.
func (m *inlineMailbox) empty() bool {
	return m.sysN.Load() == 0 && m.userN.Load() == 0
}

// invokeUser runs one user message.
func (m *inlineMailbox) invokeUser(msg any) {
	if m.fast == nil || !m.fast.receiveFast(m.invoker.(actor.Context), msg) {
		m.invoker.InvokeUserMessage(msg)
	}
}

func (m *inlineMailbox) Start() {}

func (m *inlineMailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *inlineMailbox) schedule() {
	if m.status.CompareAndSwap(mbIdle, mbRunning) {
		m.process(nil)
	}
}

// pending tells whether the mailbox has work: a system message, or a user
// message while it is not suspended.
func (m *inlineMailbox) pending() bool {
	return m.sysN.Load() != 0 || (m.userN.Load() != 0 && !m.suspended.Load())
}

// process drains the mailbox, which the caller holds (status running),
// starting with first (a user message that was never queued) when not
// nil, and leaves it idle; it goes on when a message came in meanwhile
// and no other poster took the mailbox.
func (m *inlineMailbox) process(first any) {
	for {
		if first != nil || m.pending() {
			m.run(first)
			first = nil
		}
		m.status.Store(mbIdle)
		if !m.pending() {
			return
		}
		if !m.status.CompareAndSwap(mbIdle, mbRunning) {
			return // another poster runs it now
		}
	}
}

// pop takes the head of q, whose length n counts; an empty queue costs
// no lock (n is raised after a push, and a poster that raises it after
// the runner looked schedules the mailbox again: see process).
func (m *inlineMailbox) pop(q *fifo, n *atomic.Int32) any {
	if n.Load() == 0 {
		return nil
	}
	m.mu.Lock()
	msg := q.pop()
	m.mu.Unlock()
	if msg != nil {
		n.Add(-1)
	}
	return msg
}

func (m *inlineMailbox) run(first any) {
	var msg any
	returned := false // recover only when panicking: recover costs on every run
	defer func() {
		if !returned {
			if r := recover(); r != nil {
				m.invoker.EscalateFailure(r, msg)
			}
		}
	}()
	if first != nil {
		msg = first
		m.invokeUser(msg)
	}
	for i := 0; ; i++ {
		if m.throughput > 0 && i > m.throughput {
			i = 0
			runtime.Gosched()
		}
		if m.sysN.Load() == 0 && m.userN.Load() == 0 {
			returned = true // the common end: nothing queued (no pop calls)
			return
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
			returned = true
			return
		}
		if msg = m.pop(&m.user, &m.userN); msg == nil {
			returned = true
			return
		}
		m.invokeUser(msg)
	}
}

// fifo is a queue on a slice that reuses its array once drained. Its
// first messages go into an array of its own: an actor's life (Started,
// Stop, Terminated, a watch) and most re-entries need no other.
type fifo struct {
	q     []any
	head  int
	first [2]any
}

func (f *fifo) push(x any) {
	if f.q == nil {
		f.q = f.first[:0]
	}
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

// A Poster posts user messages to one local actor straight to its process
// (its mailbox), without the lookups RootContext.Send and Context.Send make
// on every message (the PID's cached process, its liveness). A message
// posted after the actor stopped is dropped by it (protoactor's
// InvokeUserMessage), where Send would have dead-lettered it.
type Poster struct {
	pid  *actor.PID
	proc actor.Process
}

// NewPoster returns a Poster for pid, or nil when pid is not a live local
// actor (then callers send as usual).
func NewPoster(as *actor.ActorSystem, pid *actor.PID) *Poster {
	p, ok := posterOf(as, pid)
	if !ok {
		return nil
	}
	return &p
}

// posterOf is NewPoster as a value (for a Poster kept in a field: no
// allocation); ok is false when pid is not a live local actor.
func posterOf(as *actor.ActorSystem, pid *actor.PID) (Poster, bool) {
	if pid == nil {
		return Poster{}, false
	}
	p, ok := as.ProcessRegistry.Get(pid)
	if !ok {
		return Poster{}, false
	}
	if _, local := p.(*actor.ActorProcess); !local {
		return Poster{}, false
	}
	return Poster{pid: pid, proc: p}, true
}

// Post hands msg to the actor's mailbox.
func (p *Poster) Post(msg any) { p.proc.SendUserMessage(p.pid, msg) }

// rootSender is the Process of a Poster whose actor is not a live local
// one: it sends through the root context as usual.
type rootSender struct{ root *actor.RootContext }

func (r rootSender) SendUserMessage(pid *actor.PID, msg any) { r.root.Send(pid, msg) }
func (r rootSender) SendSystemMessage(*actor.PID, any)       {}
func (r rootSender) Stop(*actor.PID)                         {}
