package actors

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Micro-benchmarks of the per-hop costs on gotaps' data path (design
// PERFORMANCE.md): the Ask helper, one actor hop, and the Link's receive
// and send queues. Compare with performance-anchors.md §3 (RequestFuture
// 3.6 µs/RT, idle-mailbox hop ≈ 2 µs, channel ping-pong 233 ns).

type benchReq struct{}
type benchResp struct{}

func benchSystem(b *testing.B, recv actor.ReceiveFunc) (*System, *actor.PID) {
	b.Helper()
	s := NewSystem(Config{})
	pid := s.AS.Root.Spawn(actor.PropsFromFunc(recv))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = StopAndWait(ctx, s, pid)
		if err := s.Shutdown(ctx); err != nil {
			b.Errorf("Shutdown: %v", err)
		}
	})
	return s, pid
}

func responder(c actor.Context) {
	if _, ok := c.Message().(*benchReq); ok {
		c.Respond(&benchResp{})
	}
}

// BenchmarkAsk is one actors.Ask round trip to an idle actor.
func BenchmarkAsk(b *testing.B) {
	s, pid := benchSystem(b, responder)
	ctx := context.Background()
	req := &benchReq{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Ask(ctx, s, pid, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestFuture is protoactor's own RequestFuture round trip, the
// baseline for BenchmarkAsk.
func BenchmarkRequestFuture(b *testing.B) {
	s, pid := benchSystem(b, responder)
	req := &benchReq{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AS.Root.RequestFuture(pid, req, 5*time.Second).Result(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkActorHop is one message to an idle actor, which signals a
// channel: the wake-up cost every hop on the data path pays.
func BenchmarkActorHop(b *testing.B) {
	ch := make(chan struct{}, 1)
	s, pid := benchSystem(b, func(c actor.Context) {
		if _, ok := c.Message().(*benchReq); ok {
			ch <- struct{}{}
		}
	})
	req := &benchReq{}
	b.ReportAllocs()
	for b.Loop() {
		s.AS.Root.Send(pid, req)
		<-ch
	}
}

// BenchmarkActorHopPipelined is one hop when the mailbox is kept busy
// (messages drained in batches): the throughput bound of one actor.
func BenchmarkActorHopPipelined(b *testing.B) {
	done := make(chan struct{})
	want, got := 0, 0
	s, pid := benchSystem(b, func(c actor.Context) {
		if _, ok := c.Message().(*benchReq); ok {
			got++
			if got == want {
				done <- struct{}{}
			}
		}
	})
	req := &benchReq{}
	want = b.N
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.AS.Root.Send(pid, req)
	}
	<-done
}

func readyLink() *Link {
	l := NewLink(1, 0, 0, false)
	l.setState(Established)
	l.emitReady()
	return l
}

// BenchmarkLinkDeliverReceive is one 64 B message through the Link's
// receive queue, deliver and Receive on the same goroutine (no wake-up).
func BenchmarkLinkDeliverReceive(b *testing.B) {
	l := readyLink()
	ctx := context.Background()
	data := make([]byte, 64)
	b.ReportAllocs()
	var id uint64
	for b.Loop() {
		id++
		l.deliver([]RecvItem{{MessageID: id, Data: data, EndOfMessage: true}})
		if _, err := l.Receive(ctx, -1, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkReceiveWakeup is one 64 B message delivered by another
// goroutine to a Receive that is already waiting (the hand-off the echo
// path pays per message).
func BenchmarkLinkReceiveWakeup(b *testing.B) {
	l := readyLink()
	ctx := context.Background()
	data := make([]byte, 64)
	next := make(chan uint64)
	go func() {
		for id := range next {
			l.deliver([]RecvItem{{MessageID: id, Data: data, EndOfMessage: true}})
		}
	}()
	defer close(next)
	b.ReportAllocs()
	var id uint64
	for b.Loop() {
		id++
		next <- id
		if _, err := l.Receive(ctx, -1, -1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkSendAccounting is the Link's part of one Send: flow-control
// accounting, the Sent waiter, and its completion.
func BenchmarkLinkSendAccounting(b *testing.B) {
	l := readyLink()
	ctx := context.Background()
	b.ReportAllocs()
	var id uint64
	nop := func(error) {}
	for b.Loop() {
		id++
		if err := l.AcquireSend(ctx, 64); err != nil {
			b.Fatal(err)
		}
		l.ExpectSend(id, nop)
		l.sendDone([]uint64{id}, 64, nil)
	}
}

// BenchmarkConnDispatcherHop is one message to an idle actor on
// connDispatcher (what connection actors use): it runs on the sender's
// goroutine, so the hop costs no wake-up. Compare with BenchmarkActorHop.
func BenchmarkConnDispatcherHop(b *testing.B) {
	benchLocalHop(b, actor.WithDispatcher(connDispatcher))
}

// BenchmarkInlineMailboxHop is one message to an idle actor on the inline
// mailbox (mailbox.go) that connection and framer actors use: what each
// hop of the data path costs.
func BenchmarkInlineMailboxHop(b *testing.B) {
	benchLocalHop(b, actor.WithDispatcher(connDispatcher), actor.WithMailbox(inlineMailboxProducer))
}

// benchLocalHop sends one message per iteration from the root to an actor
// spawned with opts.
func benchLocalHop(b *testing.B, opts ...actor.PropsOption) {
	s := NewSystem(Config{})
	n := 0
	pid := s.AS.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*benchReq); ok {
			n++
		}
	}, opts...))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = StopAndWait(ctx, s, pid)
		_ = s.Shutdown(ctx)
	})
	req := &benchReq{}
	b.ReportAllocs()
	for b.Loop() {
		s.AS.Root.Send(pid, req)
	}
	if n == 0 {
		b.Fatal("no message handled")
	}
}

// tcpPair returns both ends of a loopback TCP connection, closed at the
// test's end.
func tcpPair(b testing.TB) (*net.TCPConn, *net.TCPConn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-ch
	if s == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// BenchmarkTryWritev is the connection actor's optimistic write of one
// framed 64 B message (header and payload coalesced), read back on the
// other end by the stream reader's read step (rawRead).
func BenchmarkTryWritev(b *testing.B) {
	c, s := tcpPair(b)
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	src, err := s.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 68)
	b.ReportAllocs()
	for b.Loop() {
		bufs := net.Buffers{msg}
		if blocked, err := tryWritev(rc, &bufs); err != nil || blocked {
			b.Fatal(blocked, err)
		}
		if _, err := rawRead(src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetWriteRead is BenchmarkTryWritev with net.Conn Write and Read
// (the raw peer's cost for the same bytes).
func BenchmarkNetWriteRead(b *testing.B) {
	c, s := tcpPair(b)
	msg := make([]byte, 68)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
