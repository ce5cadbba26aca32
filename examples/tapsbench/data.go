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
		m.Release() // done with it, as the raw peer reuses its buffer
		return time.Since(t0), nil
	}
}

// warm runs n untimed round trips.
func warm(n int, rt func() (time.Duration, error)) error {
	for i := 0; i < n; i++ {
		if _, err := rt(); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// closedLoop runs n timed round trips, recording each into h, and returns
// the time they took.
func closedLoop(ctx context.Context, n int, h *hist, rt func() (time.Duration, error)) (time.Duration, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		d, err := rt()
		if err != nil {
			return 0, fmt.Errorf("round trip #%d: %w", i, err)
		}
		h.record(d)
	}
	return time.Since(start), nil
}

// latencyRounder measures w5-style closed loops in rounds: every round
// runs its share of n (see share) into a round histogram merged into h,
// and reports that round's p50.
type latencyRounder struct {
	rounder
	h  hist
	n  int
	el time.Duration
}

func newLatencyRounder(name string, k, n int, loop func(n int, h *hist) (time.Duration, error)) *latencyRounder {
	lr := &latencyRounder{rounder: rounder{name: name}}
	lr.run = func(r int) (float64, error) {
		m := share(n, k, r)
		var h hist
		el, err := loop(m, &h)
		if err != nil {
			return 0, err
		}
		lr.h.add(&h)
		lr.n += m
		lr.el += el
		return us(h.quantile(0.5)), nil
	}
	return lr
}

func runW5(ctx context.Context, p params) (out []Result) {
	const w = "W5"
	k := p.roundsOf()
	// raw: one client connection to a goroutine-per-connection echo server
	raw := &latencyRounder{rounder: rounder{name: implRaw, err: errors.New("not set up")}}
	if srv, err := newRawServer(rawEcho); err != nil {
		raw.err = err
	} else {
		defer srv.close()
		c, rt, err := rawEchoClient(ctx, srv.addr())
		if err == nil {
			defer c.Close()
			err = warm(warmup, rt)
		}
		if err != nil {
			raw.err = err
		} else {
			raw = newLatencyRounder(implRaw, k, p.w5N, func(n int, h *hist) (time.Duration, error) {
				return closedLoop(ctx, n, h, rt)
			})
		}
	}
	// gotaps: one connection to a Listener whose connections echo
	tps := &latencyRounder{rounder: rounder{name: implTaps, err: errors.New("not set up")}}
	env, err := newGotapsEnv(ctx, gotapsEcho)
	if err != nil {
		tps.err = err
	} else {
		defer func() {
			if err := env.close(); err != nil {
				out = append(out, errRow(w, implTaps, err))
			}
		}()
		var c *taps.Connection
		err = withCtx(ctx, "gotaps dial and warm-up", func() error {
			var err error
			if c, err = env.dial(ctx); err != nil {
				return err
			}
			return warm(warmup, gotapsRT(ctx, c))
		})
		if err != nil { // (env.close ends c)
			tps.err = err
		} else {
			defer c.Abort()
			rt := gotapsRT(ctx, c)
			tps = newLatencyRounder(implTaps, k, p.w5N, func(n int, h *hist) (time.Duration, error) {
				return closedLoop(ctx, n, h, rt)
			})
		}
	}
	// protoactor ping-pong: the actor-hop floor without any TAPS or socket
	act := newLatencyRounder(implActor, k, p.w5N, func(n int, h *hist) (time.Duration, error) {
		return actorPingPong(ctx, n, h)
	})
	alternate(ctx, k, &raw.rounder, &tps.rounder, &act.rounder)
	for _, lr := range []*latencyRounder{raw, tps, act} {
		if lr.err != nil {
			out = append(out, errRow(w, lr.name, lr.err))
			continue
		}
		out = append(out, latencyRows(w, lr.name, "rtt", &lr.h)...)
		out = append(out, res(w, lr.name, "rate", float64(lr.n)/lr.el.Seconds(), "rt/s"))
	}
	out = append(out, spreadRows(w, "rtt_p50", &tps.rounder, &raw.rounder)...)
	judgeRatio(out, implTaps, implRaw, "rtt_p50", "<= 1.5")
	judgeRatio(out, implTaps, implRaw, "rtt_p99", "<= 2")
	judgeRatio(out, implTaps, implRaw, "rtt_p999", "")
	judgeRatio(out, implTaps, implRaw, "rate", "")
	judgeRatio(out, implActor, implRaw, "rtt_p50", "")
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

// actorPingPong runs n timed ping-pongs (after warmup untimed ones) between
// two actors of a fresh actor system, recording each into h, and returns
// the time they took.
func actorPingPong(ctx context.Context, n int, h *hist) (time.Duration, error) {
	as := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer as.Shutdown()
	ponger := as.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*ping); ok {
			c.Respond(&pong{})
		}
	}))
	pa := &pinger{peer: ponger, n: n, h: h, done: make(chan time.Duration, 1)}
	pid := as.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pa }))
	as.Root.Send(pid, &ping{})
	defer func() {
		as.Root.Stop(pid)
		as.Root.Stop(ponger)
	}()
	select {
	case d := <-pa.done:
		return d, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// --- W6: echo 64 B, many connections, closed loop for a duration ---

// parallelLoop runs one closed loop per rt function for d (after 50 untimed
// round trips each); it returns the merged histogram and the time measured.
func parallelLoop(ctx context.Context, d time.Duration, rts []func() (time.Duration, error)) (*hist, time.Duration, error) {
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
	return total, el, nil
}

// rateRounder measures parallel closed loops in rounds of d each: the
// round histograms merge into h, and each round reports its round trips
// per second.
type rateRounder struct {
	rounder
	h  hist
	el time.Duration
}

func newRateRounder(name string, loop func(r int) (*hist, time.Duration, error)) *rateRounder {
	rr := &rateRounder{rounder: rounder{name: name}}
	rr.run = func(r int) (float64, error) {
		h, el, err := loop(r)
		if err != nil {
			return 0, err
		}
		rr.h.add(h)
		rr.el += el
		return float64(h.n) / el.Seconds(), nil
	}
	return rr
}

// rate is the round trips per second over all rounds.
func (rr *rateRounder) rate() float64 { return float64(rr.h.n) / rr.el.Seconds() }

func runW6(ctx context.Context, p params) (out []Result) {
	const w = "W6"
	k := p.roundsOf()
	d := p.w6Dur / time.Duration(k)
	raw := &rateRounder{rounder: rounder{name: implRaw, err: errors.New("not set up")}}
	if srv, err := newRawServer(rawEcho); err != nil {
		raw.err = err
	} else {
		defer srv.close()
		var rts []func() (time.Duration, error)
		for i := 0; i < p.w6Conns && err == nil; i++ {
			var c net.Conn
			var rt func() (time.Duration, error)
			if c, rt, err = rawEchoClient(ctx, srv.addr()); err == nil {
				defer c.Close()
				rts = append(rts, rt)
			}
		}
		if err != nil {
			raw.err = err
		} else {
			raw = newRateRounder(implRaw, func(int) (*hist, time.Duration, error) { return parallelLoop(ctx, d, rts) })
		}
	}
	tps := &rateRounder{rounder: rounder{name: implTaps, err: errors.New("not set up")}}
	env, err := newGotapsEnv(ctx, gotapsEcho)
	if err != nil {
		tps.err = err
	} else {
		defer func() {
			if err := env.close(); err != nil {
				out = append(out, errRow(w, implTaps, err))
			}
		}()
		var rts []func() (time.Duration, error)
		err = withCtx(ctx, "gotaps dials", func() error {
			for i := 0; i < p.w6Conns; i++ {
				c, err := env.dial(ctx)
				if err != nil {
					return err
				}
				rts = append(rts, gotapsRT(ctx, c))
			}
			return nil
		})
		if err != nil {
			tps.err = err
		} else {
			tps = newRateRounder(implTaps, func(int) (*hist, time.Duration, error) { return parallelLoop(ctx, d, rts) })
		}
	}
	alternate(ctx, k, &raw.rounder, &tps.rounder)
	for _, rr := range []*rateRounder{raw, tps} {
		if rr.err != nil {
			out = append(out, errRow(w, rr.name, rr.err))
			continue
		}
		out = append(out, latencyRows(w, rr.name, "rtt", &rr.h)...)
		out = append(out, res(w, rr.name, "throughput", rr.rate(), "rt/s"))
	}
	out = append(out, spreadRows(w, "throughput", &tps.rounder, &raw.rounder)...)
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

// bulkRounder measures one-way bulk in rounds: every round sends for d
// into a fresh sink, and reports its payload bytes per second.
type bulkRounder struct {
	rounder
	keep  bool
	send  func() error
	bytes int64
	el    time.Duration
}

func newBulkRounder(ctx context.Context, name string, cur *atomic.Pointer[sink], keep bool, d time.Duration, size int, send func() error, setupErr error) *bulkRounder {
	br := &bulkRounder{rounder: rounder{name: name, err: setupErr}, keep: keep, send: send}
	br.run = func(int) (float64, error) {
		sk := newSink(-1)
		sk.keep = keep
		cur.Store(sk)
		n, el, err := oneWayTaps(ctx, d, sk, size, send)
		if err != nil {
			return 0, err
		}
		br.bytes += n
		br.el += el
		return float64(n) / el.Seconds(), nil
	}
	return br
}

// warmOneWay sends 4 MiB (at least 4 messages) untimed into a sink that
// waits for all of it.
func warmOneWay(ctx context.Context, cur *atomic.Pointer[sink], keep bool, size int, send func() error) error {
	n := max(4, (4<<20)/size)
	sk := newSink(int64(n * size))
	sk.keep = keep
	cur.Store(sk)
	for i := 0; i < n; i++ {
		if err := send(); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return sk.wait(ctx)
}

func runW7(ctx context.Context, p params) (out []Result) {
	const w = "W7"
	k := p.roundsOf()
	d := p.w7Dur / time.Duration(k)
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
	// one connection per implementation, used for every size and round:
	// raw into a receiver that reuses one buffer, raw into one that reads
	// every message into a fresh buffer (the bound a receiver that hands
	// every message on meets, shown for comparison), gotaps into a
	// receiver that hands every message's buffer back (Message.Release),
	// as the raw receiver reuses its buffer, and gotaps into one that
	// keeps them all (shown beside raw-tcp-fresh)
	rc, rcErr := net.Dial("tcp", srv.addr())
	if rcErr == nil {
		defer rc.Close()
	}
	fc, fcErr := net.Dial("tcp", fresh.addr())
	if fcErr == nil {
		defer fc.Close()
	}
	var tc, kc *taps.Connection
	tcErr := withCtx(ctx, "gotaps Initiate", func() error {
		var err error
		if tc, err = env.dial(ctx); err != nil {
			return err
		}
		kc, err = env.dial(ctx)
		return err
	})
	if tcErr == nil { // (after a failure, or a hang, env.close ends them)
		defer tc.Abort()
		defer kc.Abort()
	}
	for _, size := range []struct {
		name   string
		n      int
		target string
	}{{"bulk_1MiB", 1 << 20, ">= 0.8"}, {"bulk_64KiB", 64 << 10, ">= 0.7"}} {
		payload := make([]byte, size.n)
		fr := frame(payload) // raw: one Write of header+payload per message
		// gotaps: one blocking Send per message
		sendOn := func(c *taps.Connection) func() error {
			return func() error { return c.Send(ctx, payload, nil) }
		}
		writeOn := func(c net.Conn) func() error {
			return func() error { _, err := c.Write(fr); return err }
		}
		// measured in this order (reversed in odd rounds), so that each
		// compared pair runs back to back; rows in the order of the table
		raw := newBulkRounder(ctx, implRaw, &cur, false, d, size.n, writeOn(rc), rcErr)
		tps := newBulkRounder(ctx, implTaps, &cur, false, d, size.n, sendOn(tc), tcErr)
		rawFresh := newBulkRounder(ctx, implRawFresh, &cur, false, d, size.n, writeOn(fc), fcErr)
		keep := newBulkRounder(ctx, implTapsKeep, &cur, true, d, size.n, sendOn(kc), tcErr)
		var rs []*rounder
		for _, im := range []*bulkRounder{raw, tps, rawFresh, keep} {
			if im.err == nil {
				im.err = withCtx(ctx, im.name+" warm-up", func() error {
					return warmOneWay(ctx, &cur, im.keep, size.n, im.send)
				})
			}
			rs = append(rs, &im.rounder)
		}
		alternate(ctx, k, rs...)
		for _, im := range []*bulkRounder{raw, rawFresh, tps, keep} {
			if im.err != nil {
				out = append(out, errRow(w, im.name, fmt.Errorf("%s: %w", size.name, im.err)))
				continue
			}
			out = append(out, res(w, im.name, size.name, float64(im.bytes)/im.el.Seconds(), "B/s"))
		}
		out = append(out, spreadRows(w, size.name, &tps.rounder, &raw.rounder)...)
		judgeRatio(out, implRawFresh, implRaw, size.name, "")
		judgeRatio(out, implTaps, implRaw, size.name, size.target)
		judgeRatio(out, implTapsKeep, implRawFresh, size.name, "")
	}
	return out
}

// oneWayTaps calls send until d has passed and returns the payload bytes
// sent and the time until the sink received them all.
func oneWayTaps(ctx context.Context, d time.Duration, s *sink, size int, send func() error) (int64, time.Duration, error) {
	start := time.Now()
	var total int64
	for time.Since(start) < d && ctx.Err() == nil {
		if err := send(); err != nil {
			return 0, 0, err
		}
		total += int64(size)
	}
	s.finish(total)
	if err := s.wait(ctx); err != nil {
		return 0, 0, err
	}
	return total, s.end.Sub(start), nil
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
