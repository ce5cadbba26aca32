package actors

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
)

// The data path of a connection (design PERFORMANCE.md): the hops between
// the application, the connection actor, its framers and the socket are
// kept, but none of them wakes an idle goroutine.
//
//   - connDispatcher runs a connection actor on the goroutine of whoever
//     posts to it when its mailbox is idle (the application calling Send,
//     the reader goroutine, a timer); while it runs, other posts only
//     queue and the running goroutine drains them in order. A connection
//     actor never blocks: writes are attempted without blocking
//     (tryWritev) and only the remainder goes to a writer goroutine.
//   - the reader and writer goroutines count themselves in the
//     connection's ioCount only while they are blocked in I/O, never while
//     they post to the actor, so an actor that runs on one of them can wait
//     for the others without waiting for itself.

// connDispatcher runs connection actors on the posting goroutine (see
// above). Throughput bounds how many messages one goroutine drains before
// it yields the processor.
var connDispatcher = actor.NewSynchronizedDispatcher(300)

// connProps are the Props of every connection actor: one value for all,
// as a connection actor is given its System and connSpec by its first
// message (groupActor.spawn), not by its producer.
var connProps = actor.PropsFromProducer(func() actor.Actor { return new(connActor) },
	actor.WithSupervisor(supervision.Strategy(supervision.Framer)),
	actor.WithDispatcher(connDispatcher), actor.WithMailbox(inlineMailboxProducer))

// ioCount counts the goroutines of one connection that are blocked in I/O
// on its transport. Unlike a sync.WaitGroup, Add may be called at any time:
// Wait returns once the count is zero, which, after the transport is
// closed, means every goroutine has left its blocking call (a goroutine
// may still be posting its last message to the actor). It is safe for
// concurrent use.
type ioCount struct {
	n       atomic.Int64
	waiting atomic.Int32 // goroutines in Wait
	mu      sync.Mutex
	zero    *sync.Cond
}

// Add adds d (1 or -1) to the count. It takes no lock unless the count
// drops to zero while a Wait waits.
func (c *ioCount) Add(d int) {
	if d > 0 {
		// one atomic add: a count raised never goes below zero
		c.n.Add(int64(d))
		return
	}
	for {
		old := c.n.Load()
		n := old + int64(d)
		if n < 0 {
			n = 0
		}
		if !c.n.CompareAndSwap(old, n) {
			continue
		}
		if n == 0 && c.waiting.Load() > 0 {
			// Wait counted itself before it looked at n: it either saw
			// zero or waits on zero under mu
			c.mu.Lock()
			c.zero.Broadcast()
			c.mu.Unlock()
		}
		return
	}
}

// Done is Add(-1).
func (c *ioCount) Done() { c.Add(-1) }

// Wait blocks until no goroutine is in I/O. The transport must be closed
// first, or Wait may wait for data.
func (c *ioCount) Wait() {
	if c.n.Load() == 0 {
		return
	}
	c.mu.Lock()
	if c.zero == nil {
		c.zero = sync.NewCond(&c.mu)
	}
	c.waiting.Add(1)
	for c.n.Load() > 0 {
		c.zero.Wait()
	}
	c.waiting.Add(-1)
	c.mu.Unlock()
}

// rawWriter is a transport whose socket can be written without blocking
// (TCP): it has a file descriptor and takes vectors of buffers.
type rawWriter interface {
	buffersWriter
	SyscallConn() (syscall.RawConn, error)
}

// readChunk is the size of one read from a stream socket.
const readChunk = 256 << 10

// rawStream is the read step of a stream transport.
type rawStream struct {
	direct   bool // reads the socket directly (rawRead): no buffer held while waiting
	lent     bool // the last read went into a target: a large message ended there
	earlyCap bool // t tells early data (stacks.EarlyReader: QUIC)
	early    bool // the last read's bytes were early data (0-RTT)
	// endCheck tells how an end of stream read directly is taken
	// (endOfStream): endUnchecked, endCheckTCP, or endSendShut (set by
	// the connection before it shuts down the sending side)
	endCheck atomic.Int32
	t        io.Reader
	rc       syscall.RawConn // direct reads
	op       rawReadOp
	ioc      *ioCount
	tl       *targetLender
	buf      []byte // buffered reads (not direct)
	size     int
	// fault is the first socket error (an errno other than EPIPE) a read
	// returned, stored before the reader leaves ioc: a write's EPIPE
	// names it (connActor.socketCause)
	fault atomic.Pointer[error]
}

// The values of rawStream.endCheck.
const (
	endUnchecked int32 = iota // an end of stream is the peer's (not TCP)
	endCheckTCP               // TCP, sending side open: see endOfStream
	endSendShut               // TCP whose sending side this side shut down
)

// endOfStream is the error of a direct read that returned the end of the
// stream: on a plain TCP socket whose sending side is open, the socket's
// state tells the peer's FIN (io.EOF) from an end the socket's reset or
// timeout left (stacks.TCPEndOfStream: the pending error, or
// stacks.ErrEndedWithoutFIN when a write took it). Runs only at an end of
// stream, never per message.
//
// The connection may shut the sending side down while the state is read
// (its Close or a Final message as the peer's FIN comes in): once the
// peer's FIN answers, the socket is TCP_CLOSE after a graceful exchange.
// endCheck is read again after the state: still endCheckTCP, the
// shutdown came after the state was read (the connection marks the
// reader first), and TCP_CLOSE was not its doing; else the end is taken
// for the peer's FIN, as it is when the mark comes first.
func (s *rawStream) endOfStream() error {
	if s.endCheck.Load() != endCheckTCP {
		return io.EOF
	}
	if h := testHookEndOfStream.Load(); h != nil {
		(*h)()
	}
	err := stacks.TCPEndOfStream(s.rc)
	if err != io.EOF && s.endCheck.Load() != endCheckTCP {
		return io.EOF
	}
	return err
}

// testHookEndOfStream, when set, runs in rawStream.endOfStream between
// its reading of endCheck and of the socket's state.
var testHookEndOfStream atomic.Pointer[func()]

// noteFault keeps err as s.fault when it is the first socket error read.
// The kernel hands a socket's error (ETIMEDOUT of TCP_USER_TIMEOUT,
// ECONNRESET) to one call only: the write that comes after it gets EPIPE.
func (s *rawStream) noteFault(err error) {
	if err == io.EOF || s.fault.Load() != nil {
		return // the usual end of a stream: nothing to note, nothing allocated
	}
	var en syscall.Errno
	if errors.As(err, &en) && en != syscall.EPIPE {
		kept := err // a copy: taking err's own address put it on the heap at every call
		s.fault.CompareAndSwap(nil, &kept)
	}
}

// readFault is the socket error a read returned, or nil. It is final once
// the transport is closed and ioc waited for.
func (s *rawStream) readFault() error {
	if p := s.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// readT is one read of the (not direct) transport, noting early data.
func (s *rawStream) readT(b []byte) (int, error) {
	if !s.earlyCap {
		return s.t.Read(b)
	}
	n, early, err := s.t.(stacks.EarlyReader).ReadEarly(b)
	s.early = early
	return n, err
}

// targetLender lends a reader the buffer the first framer wants the next
// bytes in (framers.Instance.ReadTarget), so that a large message is read
// straight into the buffer it is delivered in. A nil lender (no framer)
// lends nothing.
type targetLender struct {
	link *Link
	gen  uint64 // the transport generation the reader reads
}

// borrow takes the current target, for one read of up to its length. Its
// capacity is never readChunk+1, so that no slice of it is mistaken for a
// pool buffer (releaseReadBuf).
func (tl *targetLender) borrow() []byte {
	if tl == nil {
		return nil
	}
	b := tl.link.takeReadTarget(tl.gen)
	if cap(b) == readChunk+1 {
		b = b[:min(len(b), readChunk):readChunk]
	}
	return b
}

// returnUnused puts b back when nothing was read into it.
func (tl *targetLender) returnUnused(b []byte, n int) {
	if b != nil && n == 0 && tl != nil {
		tl.link.putBackReadTarget(tl.gen, b)
	}
}

// init makes s the read step of a stream reader of t: read blocks until
// data (or the end of the stream) arrives and returns a slice the caller
// owns. The reader is counted in ioc only while it waits. On a socket it
// can read directly (TCP, Unix) the reader holds no buffer while it waits:
// a pooled buffer is taken only once the socket is readable, which keeps
// idle connections small. When tl lends a target, the read goes into it.
func (s *rawStream) init(t io.Reader, ioc *ioCount, tl *targetLender) {
	s.t, s.ioc, s.tl = t, ioc, tl
	if rw, ok := t.(rawWriter); ok {
		if rc, err := rw.SyscallConn(); err == nil && rawReadable {
			s.rc, s.direct = rc, true
			return
		}
	}
	s.size = 4 << 10
	_, s.earlyCap = t.(stacks.EarlyReader)
}

func (s *rawStream) read() ([]byte, error) {
	if s.direct {
		tgt := s.tl.borrow()
		if tgt == nil && s.lent {
			// the next message is likely large too: read little more
			// than its header, so that the rest goes straight into
			// its target rather than through a pooled buffer and a copy
			s.op.limit = afterTargetRead
		}
		s.ioc.Add(1)
		data, err := s.op.read(s.rc, tgt)
		if err != nil {
			if err == io.EOF {
				err = s.endOfStream()
			}
			s.noteFault(err)
		}
		s.ioc.Done()
		s.op.limit = 0
		s.lent = tgt != nil && len(data) > 0
		s.tl.returnUnused(tgt, len(data))
		return data, err
	}
	if tgt := s.tl.borrow(); tgt != nil {
		s.ioc.Add(1)
		n, err := s.readT(tgt)
		if err != nil {
			s.noteFault(err)
		}
		s.ioc.Done()
		s.tl.returnUnused(tgt, n)
		s.lent = n > 0
		if n == 0 {
			return nil, err
		}
		return tgt[:n:n], err
	}
	if s.buf == nil {
		s.buf = make([]byte, s.size)
	}
	rb := s.buf
	if s.lent && len(rb) > afterTargetRead {
		// the next message is likely large too: read little more than
		// its header, so that the rest goes straight into its target
		// rather than through buf and a copy (QUIC buffers much)
		rb = rb[:afterTargetRead]
	}
	s.lent = false
	s.ioc.Add(1)
	n, err := s.readT(rb)
	if err != nil {
		s.noteFault(err)
	}
	s.ioc.Done()
	var data []byte
	if n > 0 {
		data = copyOut(s.buf[:n])
	}
	if n == len(s.buf) && s.size < readChunk {
		s.size *= 2 // grow for bulk transfers; idle connections keep 4 KiB
		s.buf = make([]byte, s.size)
	}
	return data, err
}

// afterTargetRead bounds the buffered read that follows a read into a
// framer's target (rawStream.read).
const afterTargetRead = 4 << 10

// readBufs holds the buffers of rawRead: readChunk bytes with a capacity
// of readChunk+1, which tells them apart from any other slice.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readChunk, readChunk+1); return &b }}

// releaseReadBuf returns a read buffer the first framer copied and let go
// (framers.Hooks.Release) to the pool.
func releaseReadBuf(b []byte) {
	if cap(b) == readChunk+1 {
		b = b[:readChunk]
		readBufs.Put(&b)
	}
}

// smallWrite is the largest write whose pieces are copied into one buffer.
const smallWrite = 2 << 10

// Short reads are copied out of the pooled read buffer into pieces cut
// from a slab (one allocation for many small reads, rather than one each).
// The slabs are per processor (a pool), not per connection: an idle
// connection holds none. A piece has its own capacity (it never grows into
// its neighbour), and pieces are never handed out twice: whoever gets one
// owns it, as it would own a slice of its own; a piece kept by the
// application keeps its slab (at most slabSize bytes) alive.
const (
	slabSize  = 4 << 10
	slabPiece = 512 // larger reads get an allocation of their own
)

type readSlab struct{ free []byte }

var readSlabs = sync.Pool{New: func() any { return new(readSlab) }}

// copyOut returns a copy of b that the caller owns.
func copyOut(b []byte) []byte {
	n := len(b)
	if n > slabPiece {
		out := make([]byte, n)
		copy(out, b)
		return out
	}
	s := readSlabs.Get().(*readSlab)
	if len(s.free) < n {
		s.free = make([]byte, slabSize)
	}
	out := s.free[:n:n]
	s.free = s.free[n:]
	readSlabs.Put(s)
	copy(out, b)
	return out
}
