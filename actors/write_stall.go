package actors

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/stacks"
)

// connTimeout on the writes gotaps queues itself (RFC 9622 §8.1.3: the
// time before a Connection that cannot deliver reliably is declared
// failed). The transport applies connTimeout to what it holds (TCP and
// TLS: TCP_USER_TIMEOUT; QUIC: the idle timeout), but not to what waits
// in the connection's own queue while the transport takes nothing: a peer
// that stops reading fills its receive window and the socket's send
// buffer, and the writer goroutine blocks. A QUIC peer that still
// acknowledges keep-alives, or a kernel that does not count zero-window
// probes against the user timeout, keeps such a connection up for ever,
// Established or Closing (a Close waits for its queue to be written).
//
// The rule: while the writer goroutine is blocked, the connection fails
// once the write has made no progress for connTimeout. Progress is any
// byte the transport takes from the queue, or, on TCP and TLS (Linux),
// any byte the peer acknowledges (tcpi_bytes_acked: a slow reader drains
// the socket's send buffer long before the kernel lets the writer put
// more into it). Progress restarts the period: a slow reader is never
// failed, only one that takes nothing at all. The write is checked every
// connTimeout/4, so the failure comes between connTimeout and
// 1.5×connTimeout after the last progress. Without connTimeout
// (Disabled) nothing is bounded here.
//
// The failure is a transport failure (connActor.fail): a ConnectionError
// whose error unwraps to syscall.ETIMEDOUT (what TCP_USER_TIMEOUT gives
// for the same property), the messages still queued get SendErrors with
// it, or a re-establishment where the connection allows one.

// writeStallChunk bounds one write of a watched writer goroutine on a
// transport whose peer's acknowledgements cannot be read (QUIC streams,
// Unix sockets): its progress is then seen piece by piece.
const writeStallChunk = 16 << 10

// errWriteStalled is the cause of a connection failed by connTimeout
// while its queued data could not be written; it unwraps to
// syscall.ETIMEDOUT.
var errWriteStalled = fmt.Errorf("no queued byte written within connTimeout: %w", syscall.ETIMEDOUT)

// writeWatch is the connTimeout watch of a connection's blocked writes.
type writeWatch struct {
	timer *time.Timer
	gen   uint64
	d     time.Duration
	// chunked: the writer writes in pieces and counts them (no kernel
	// acknowledgement count for this transport)
	chunked bool
	base    time.Time    // when the watch was made: wroteAt counts from it
	wrote   atomic.Int64 // bytes the writer goroutine wrote (chunked)
	wroteAt atomic.Int64 // and when it last did (nanoseconds since base)
	// what the last check saw
	seenWrote int64
	seenAcked uint64
	last      time.Time // the last progress seen
}

// writeStallCheck is the watch's timer firing for the write of gen.
type writeStallCheck struct {
	fromTransport
	gen uint64
}

// watchWrite starts the connTimeout watch of the write handed to a writer
// goroutine now; it returns the watch the goroutine reports to (nil
// without connTimeout).
func (c *connActor) watchWrite(ctx actor.Context) *writeWatch {
	d := c.spec.cfg.StackOptions.ConnTimeout
	if d <= 0 || c.datagram || c.connectionless {
		return nil
	}
	w := c.ww
	if w == nil {
		w = &writeWatch{base: time.Now()}
		c.ww = w
	}
	w.gen++
	w.d = d
	w.last = time.Now()
	w.seenWrote = w.wrote.Load()
	acked, ok := stacks.BytesAcked(c.t)
	w.seenAcked, w.chunked = acked, !ok
	c.armWriteWatch(ctx, w)
	return w
}

func (c *connActor) armWriteWatch(ctx actor.Context, w *writeWatch) {
	msg := &writeStallCheck{fromTransport: fromTransport{c.tgen}, gen: w.gen}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(max(w.d/4, time.Millisecond), func() { root.Send(self, msg) })
}

// unwatchWrite ends the watch: the write completed (or the connection
// ends).
func (c *connActor) unwatchWrite() {
	if w := c.ww; w != nil {
		w.gen++
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
	}
}

// writeStallChecked fails the connection when its blocked write made no
// progress for connTimeout, and checks again later otherwise.
func (c *connActor) writeStallChecked(ctx actor.Context, m *writeStallCheck) {
	w := c.ww
	if w == nil || m.gen != w.gen || !c.writing {
		return // the write completed meanwhile
	}
	now := time.Now()
	if n := w.wrote.Load(); n != w.seenWrote {
		w.seenWrote = n
		w.last = w.base.Add(time.Duration(w.wroteAt.Load()))
	}
	if acked, ok := stacks.BytesAcked(c.t); ok && acked != w.seenAcked {
		w.seenAcked = acked
		w.last = now // it moved since the last check: count it from now
	}
	if now.Sub(w.last) < w.d {
		c.armWriteWatch(ctx, w)
		return
	}
	w.timer = nil
	c.fail(ctx, fmt.Errorf("write: %w (%v)", errWriteStalled, w.d))
}

// write writes bufs to t in pieces of at most writeStallChunk bytes,
// counting each piece written as progress (a writer goroutine's write on a
// chunked watch).
func (w *writeWatch) write(t stacks.Transport, bufs *net.Buffers) error {
	var piece net.Buffers
	for len(*bufs) > 0 {
		piece = piece[:0]
		n := 0
		for _, b := range *bufs {
			if n+len(b) > writeStallChunk {
				b = b[:writeStallChunk-n]
			}
			piece = append(piece, b)
			n += len(b)
			if n == writeStallChunk {
				break
			}
		}
		var wrote int64
		var err error
		if bw, ok := t.(buffersWriter); ok {
			wrote, err = bw.WriteBuffers(&piece)
		} else {
			wrote, err = piece.WriteTo(t)
		}
		stacks.ConsumeBuffers(bufs, int(wrote))
		for len(*bufs) > 0 && len((*bufs)[0]) == 0 {
			*bufs = (*bufs)[1:]
		}
		if wrote > 0 {
			w.wroteAt.Store(int64(time.Since(w.base)))
			w.wrote.Add(wrote)
		}
		if err != nil {
			return err
		}
	}
	clear(piece)
	return nil
}
