package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/taps"
)

// --- W5: echo 64 B, 1 connection, closed loop ---

const warmup = 500

func rawEchoClient(ctx context.Context, addr string) (net.Conn, func() (time.Duration, error), error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	req := frame(make([]byte, msg64))
	r := bufio.NewReaderSize(c, 4096)
	hdr, buf := make([]byte, 4), make([]byte, msg64)
	rt := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return 0, err
		}
		if _, err := readFrame(r, hdr, buf); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	return c, rt, nil
}

func gotapsRT(ctx context.Context, c *taps.Connection) func() (time.Duration, error) {
	data := make([]byte, msg64)
	return func() (time.Duration, error) {
		t0 := time.Now()
		if err := c.Send(ctx, data, nil); err != nil {
			return 0, err
		}
		m, err := c.Receive(ctx)
		if err != nil {
			return 0, err
		}
		if len(m.Data) != msg64 {
			return 0, fmt.Errorf("echo returned %d bytes, want %d", len(m.Data), msg64)
		}
		return time.Since(t0), nil
	}
}

// closedLoop runs n round trips (after a warm-up) and returns their
// histogram and the round trips per second.
func closedLoop(ctx context.Context, n int, rt func() (time.Duration, error)) (*hist, float64, error) {
	for i := 0; i < warmup; i++ {
		if _, err := rt(); err != nil {
			return nil, 0, err
		}
	}
	h := &hist{}
	start := time.Now()
	for i := 0; i < n; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		d, err := rt()
		if err != nil {
			return nil, 0, fmt.Errorf("round trip #%d: %w", i, err)
		}
		h.record(d)
	}
	return h, float64(n) / time.Since(start).Seconds(), nil
}

func runW5(ctx context.Context, p params) (out []Result) {
	const w = "W5"
	rows := func(impl string, h *hist, rate float64) {
		out = append(out, latencyRows(w, impl, "rtt", h)...)
		out = append(out, res(w, impl, "rate", rate, "rt/s"))
	}
	// raw
	if srv, err := newRawServer(rawEcho); err != nil {
		out = append(out, errRow(w, implRaw, err))
	} else {
		c, rt, err := rawEchoClient(ctx, srv.addr())
		if err == nil {
			var h *hist
			var rate float64
			if h, rate, err = closedLoop(ctx, p.w5N, rt); err == nil {
				rows(implRaw, h, rate)
			}
			c.Close()
		}
		if err != nil {
			out = append(out, errRow(w, implRaw, err))
		}
		srv.close()
	}
	// gotaps
	out = append(out, gotapsW5(ctx, p)...)
	// protoactor ping-pong: the actor-hop floor without any TAPS or socket
	if h, rate, err := actorPingPong(ctx, p.w5N); err != nil {
		out = append(out, errRow(w, implActor, err))
	} else {
		rows(implActor, h, rate)
	}
	judgeRatio(out, implTaps, implRaw, "rtt_p50", "<= 1.5")
	judgeRatio(out, implTaps, implRaw, "rtt_p99", "<= 2")
	judgeRatio(out, implTaps, implRaw, "rtt_p999", "")
	judgeRatio(out, implTaps, implRaw, "rate", "")
	judgeRatio(out, implActor, implRaw, "rtt_p50", "")
	return out
}

func gotapsW5(ctx context.Context, p params) (out []Result) {
	const w = "W5"
	env, err := newGotapsEnv(ctx, gotapsEcho)
	if err != nil {
		return []Result{errRow(w, implTaps, err)}
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}()
	err = withCtx(ctx, "gotaps echo loop", func() error {
		c, err := env.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Abort()
		h, rate, err := closedLoop(ctx, p.w5N, gotapsRT(ctx, c))
		if err != nil {
			return err
		}
		out = append(out, latencyRows(w, implTaps, "rtt", h)...)
		out = append(out, res(w, implTaps, "rate", rate, "rt/s"))
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	return out
}

type ping struct{}
type pong struct{}

// pinger sends ping to its peer, waits for pong, records the round trip and
// goes on n times.
type pinger struct {
	peer  *actor.PID
	n, i  int
	t0    time.Time
	h     *hist
	start time.Time
	done  chan time.Duration
}

func (a *pinger) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
	case *pong:
		if a.i >= warmup {
			a.h.record(time.Since(a.t0))
		}
		a.i++
		if a.i == warmup {
			a.start = time.Now()
		}
		if a.i >= a.n+warmup {
			a.done <- time.Since(a.start)
			return
		}
		a.t0 = time.Now()
		ctx.Request(a.peer, &ping{})
	case *ping: // kick-off
		a.t0 = time.Now()
		ctx.Request(a.peer, &ping{})
	}
}

func actorPingPong(ctx context.Context, n int) (*hist, float64, error) {
	as := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer as.Shutdown()
	ponger := as.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*ping); ok {
			c.Respond(&pong{})
		}
	}))
	pa := &pinger{peer: ponger, n: n, h: &hist{}, done: make(chan time.Duration, 1)}
	pid := as.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa }))
	as.Root.Send(pid, &ping{})
	defer func() {
		as.Root.Stop(pid)
		as.Root.Stop(ponger)
	}()
	select {
	case d := <-pa.done:
		return pa.h, float64(n) / d.Seconds(), nil
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// --- W6: echo 64 B, many connections, closed loop for a duration ---

// parallelLoop runs one closed loop per rt function for d; it returns the
// merged histogram and the total round trips per second.
func parallelLoop(ctx context.Context, d time.Duration, rts []func() (time.Duration, error)) (*hist, float64, error) {
	var wg sync.WaitGroup
	hs := make([]*hist, len(rts))
	errs := make([]error, len(rts))
	var stop atomic.Bool
	start := make(chan struct{})
	for i, rt := range rts {
		hs[i] = &hist{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := rt(); err != nil {
					errs[i] = err
					return
				}
			}
			<-start
			for !stop.Load() {
				dd, err := rt()
				if err != nil {
					errs[i] = err
					return
				}
				hs[i].record(dd)
			}
		}()
	}
	t0 := time.Now()
	close(start)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	if err := withCtx(ctx, "closed loops", func() error { wg.Wait(); return nil }); err != nil {
		return nil, 0, err
	}
	el := time.Since(t0)
	total := &hist{}
	for _, h := range hs {
		total.add(h)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	return total, float64(total.n) / el.Seconds(), nil
}

func runW6(ctx context.Context, p params) (out []Result) {
	const w = "W6"
	rows := func(impl string, h *hist, rate float64) {
		out = append(out, latencyRows(w, impl, "rtt", h)...)
		out = append(out, res(w, impl, "throughput", rate, "rt/s"))
	}
	if srv, err := newRawServer(rawEcho); err != nil {
		out = append(out, errRow(w, implRaw, err))
	} else {
		var rts []func() (time.Duration, error)
		for i := 0; i < p.w6Conns && err == nil; i++ {
			var c net.Conn
			var rt func() (time.Duration, error)
			if c, rt, err = rawEchoClient(ctx, srv.addr()); err == nil {
				defer c.Close()
				rts = append(rts, rt)
			}
		}
		if err == nil {
			var h *hist
			var rate float64
			if h, rate, err = parallelLoop(ctx, p.w6Dur, rts); err == nil {
				rows(implRaw, h, rate)
			}
		}
		if err != nil {
			out = append(out, errRow(w, implRaw, err))
		}
		defer srv.close()
	}
	env, err := newGotapsEnv(ctx, gotapsEcho)
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	err = withCtx(ctx, "gotaps 50-connection echo", func() error {
		var rts []func() (time.Duration, error)
		for i := 0; i < p.w6Conns; i++ {
			c, err := env.dial(ctx)
			if err != nil {
				return err
			}
			rts = append(rts, gotapsRT(ctx, c))
		}
		h, rate, err := parallelLoop(ctx, p.w6Dur, rts)
		if err != nil {
			return err
		}
		rows(implTaps, h, rate)
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	if err := env.close(); err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	judgeRatio(out, implTaps, implRaw, "throughput", ">= 0.8")
	judgeRatio(out, implTaps, implRaw, "rtt_p50", "")
	judgeRatio(out, implTaps, implRaw, "rtt_p99", "")
	return out
}

// --- W7 / W8: one-way streams into a counting sink ---

// sink counts what a receiver got and closes done (recording the time) once
// it has got want, which the sender sets when it knows it.
type sink struct {
	keep bool // gotaps receivers keep every message (no Release)
	got  atomic.Int64
	want atomic.Int64
	once sync.Once
	done chan struct{}
	end  time.Time
}

func newSink(want int64) *sink {
	s := &sink{done: make(chan struct{})}
	s.want.Store(want)
	return s
}

func (s *sink) finishIf() {
	if w := s.want.Load(); w >= 0 && s.got.Load() >= w {
		s.once.Do(func() { s.end = time.Now(); close(s.done) })
	}
}

func (s *sink) add(n int) {
	s.got.Add(int64(n))
	s.finishIf()
}

func (s *sink) finish(total int64) {
	s.want.Store(total)
	s.finishIf()
}

func (s *sink) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("receiver got %d of %d: %w", s.got.Load(), s.want.Load(), ctx.Err())
	}
}

// rawSinkServer counts received payload bytes (count=false) or messages.
// With fresh, every message is read into a buffer of its own (as a receiver
// that hands each message on must do, and gotaps does); otherwise one
// buffer is reused.
func rawSinkServer(s *atomic.Pointer[sink], countMsgs, fresh bool) (*rawServer, error) {
	return newRawServer(func(c net.Conn) {
		r := bufio.NewReaderSize(c, 64<<10)
		hdr := make([]byte, 4)
		var buf []byte
		for {
			m, err := readFrame(r, hdr, buf)
			if err != nil {
				return
			}
			if !fresh {
				buf = m
			}
			if countMsgs {
				s.Load().add(1)
			} else {
				s.Load().add(len(m))
			}
		}
	})
}

func gotapsSink(s *atomic.Pointer[sink], countMsgs bool) func(*taps.Connection) {
	return func(c *taps.Connection) {
		ctx := context.Background()
		defer c.Close()
		for {
			m, err := c.Receive(ctx)
			if err != nil {
				return
			}
			if countMsgs {
				s.Load().add(1)
			} else {
				s.Load().add(len(m.Data))
			}
			if !s.Load().keep {
				m.Release() // done with it: its buffer may take a later message
			}
		}
	}
}

func runW7(ctx context.Context, p params) (out []Result) {
	const w = "W7"
	var cur atomic.Pointer[sink] // the receiving sink of the current run (read by the receivers)
	srv, err := rawSinkServer(&cur, false, false)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer srv.close()
	fresh, err := rawSinkServer(&cur, false, true)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer fresh.close()
	env, err := newGotapsEnv(ctx, gotapsSink(&cur, false))
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}()
	for _, size := range []struct {
		name   string
		n      int
		target string
	}{{"bulk_1MiB", 1 << 20, ">= 0.8"}, {"bulk_64KiB", 64 << 10, ">= 0.7"}} {
		payload := make([]byte, size.n)
		// raw: one Write of header+payload per message, into a receiver
		// that reuses one buffer, then into one that reads every message
		// into a fresh buffer: the bound a receiver that hands every
		// message on (gotaps) meets, shown for comparison
		for _, rs := range []struct {
			impl string
			srv  *rawServer
		}{{implRaw, srv}, {implRawFresh, fresh}} {
			sk := newSink(-1)
			cur.Store(sk)
			rate, err := oneWay(ctx, p.w7Dur, sk, size.n, func(c net.Conn) func() error {
				fr := frame(payload)
				return func() error { _, err := c.Write(fr); return err }
			}, rs.srv.addr())
			if err != nil {
				out = append(out, errRow(w, rs.impl, fmt.Errorf("%s: %w", size.name, err)))
				continue
			}
			out = append(out, res(w, rs.impl, size.name, rate, "B/s"))
		}
		judgeRatio(out, implRawFresh, implRaw, size.name, "")
		// gotaps: blocking Send per message, into a receiver that hands
		// every message's buffer back (Message.Release), as the raw
		// receiver reuses its buffer; then into one that keeps them all,
		// shown beside raw-tcp-fresh
		for _, keep := range []bool{false, true} {
			impl := implTaps
			if keep {
				impl = implTapsKeep
			}
			sk := newSink(-1)
			sk.keep = keep
			cur.Store(sk)
			err := withCtx(ctx, "gotaps bulk", func() error {
				c, err := env.dial(ctx)
				if err != nil {
					return err
				}
				defer c.Abort()
				rate, err := oneWayTaps(ctx, p.w7Dur, sk, size.n, func() error { return c.Send(ctx, payload, nil) })
				if err != nil {
					return err
				}
				out = append(out, res(w, impl, size.name, rate, "B/s"))
				return nil
			})
			if err != nil {
				out = append(out, errRow(w, impl, fmt.Errorf("%s: %w", size.name, err)))
			}
		}
		judgeRatio(out, implTaps, implRaw, size.name, size.target)
		judgeRatio(out, implTapsKeep, implRawFresh, size.name, "")
	}
	return out
}

// oneWay dials addr, calls the send function made by mk until d has passed,
// and returns the payload bytes per second the sink received.
func oneWay(ctx context.Context, d time.Duration, s *sink, size int, mk func(net.Conn) func() error, addr string) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return oneWayTaps(ctx, d, s, size, mk(c))
}

func oneWayTaps(ctx context.Context, d time.Duration, s *sink, size int, send func() error) (float64, error) {
	start := time.Now()
	var total int64
	for time.Since(start) < d && ctx.Err() == nil {
		if err := send(); err != nil {
			return 0, err
		}
		total += int64(size)
	}
	s.finish(total)
	if err := s.wait(ctx); err != nil {
		return 0, err
	}
	return float64(total) / s.end.Sub(start).Seconds(), nil
}

const implTapsSend = "gotaps-send"

// implRawFresh is the raw TCP peer reading every message into a new buffer.
const implRawFresh = "raw-tcp-fresh"

// implTapsKeep is the gotaps receiver that keeps every message (compared
// with implRawFresh).
const implTapsKeep = "gotaps-keep"

func runW8(ctx context.Context, p params) (out []Result) {
	const w = "W8"
	n := p.w8N
	var cur atomic.Pointer[sink] // the receiving sink of the current run (read by the receivers)
	srv, err := rawSinkServer(&cur, true, false)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer srv.close()
	payload := make([]byte, msg64)
	// raw: one Write per message
	sk := newSink(int64(n))
	cur.Store(sk)
	if rate, err := func() (float64, error) {
		c, err := net.Dial("tcp", srv.addr())
		if err != nil {
			return 0, err
		}
		defer c.Close()
		fr := frame(payload)
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.Write(fr); err != nil {
				return 0, err
			}
		}
		if err := sk.wait(ctx); err != nil {
			return 0, err
		}
		return float64(n) / sk.end.Sub(start).Seconds(), nil
	}(); err != nil {
		out = append(out, errRow(w, implRaw, err))
	} else {
		out = append(out, res(w, implRaw, "msg_rate", rate, "msg/s"))
	}
	env, err := newGotapsEnv(ctx, gotapsSink(&cur, true))
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}()
	// gotaps: SendAsync in Batches of 256, at most 16 batches in flight
	sk = newSink(int64(n))
	cur.Store(sk)
	err = withCtx(ctx, "gotaps Batch/SendAsync", func() error {
		c, err := env.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Abort()
		const batch, window = 256, 16
		tokens := make(chan struct{}, window)
		var sendErr atomic.Value
		release := func(_ *taps.Connection, err error) {
			if err != nil {
				sendErr.CompareAndSwap(nil, err)
			}
			<-tokens
		}
		start := time.Now()
		for sent := 0; sent < n; {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("send window never reopened (sent %d of %d): %w", sent, n, ctx.Err())
			}
			if e, _ := sendErr.Load().(error); e != nil {
				return e
			}
			k := min(batch, n-sent)
			c.Batch(func() {
				for j := 0; j < k; j++ {
					var h func(*taps.Connection, error)
					if j == k-1 {
						h = release
					}
					c.SendAsync(payload, nil, h)
				}
			})
			sent += k
		}
		if err := sk.wait(ctx); err != nil {
			return err
		}
		out = append(out, res(w, implTaps, "msg_rate", float64(n)/sk.end.Sub(start).Seconds(), "msg/s"))
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	// gotaps: blocking Send per message (no coalescing by the application)
	sk = newSink(int64(n))
	cur.Store(sk)
	err = withCtx(ctx, "gotaps Send loop", func() error {
		c, err := env.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Abort()
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := c.Send(ctx, payload, nil); err != nil {
				return fmt.Errorf("Send #%d: %w", i, err)
			}
		}
		if err := sk.wait(ctx); err != nil {
			return err
		}
		out = append(out, res(w, implTapsSend, "msg_rate", float64(n)/sk.end.Sub(start).Seconds(), "msg/s"))
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTapsSend, err))
	}
	judgeRatio(out, implTaps, implRaw, "msg_rate", ">= 1.0")
	judgeRatio(out, implTapsSend, implRaw, "msg_rate", "")
	return out
}
