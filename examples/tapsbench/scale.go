package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gotaps/gotaps/taps"
)

// --- W9: idle connections ---

func runW9(ctx context.Context, p params) (out []Result) {
	const w = "W9"
	n := p.w9Pairs
	perConn := func(impl string, m0, m1 uint64, g0, g1 int, setup time.Duration) {
		out = append(out,
			res(w, impl, "mem_per_conn", (float64(m1)-float64(m0))/float64(2*n), "B"),
			res(w, impl, "goroutines_per_conn", float64(g1-g0)/float64(2*n), ""),
			res(w, impl, "setup_rate", float64(n)/setup.Seconds(), "conn/s"))
	}
	waitFor := func(cnt *atomic.Int64) error {
		for cnt.Load() < int64(n) {
			if ctx.Err() != nil {
				return fmt.Errorf("server got %d of %d connections: %w", cnt.Load(), n, ctx.Err())
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}
	// raw: a goroutine per server connection blocked reading a 4-byte header
	if err := func() error {
		var accepted atomic.Int64
		srv, err := newRawServer(func(c net.Conn) {
			accepted.Add(1)
			var hdr [4]byte
			_, _ = io.ReadFull(c, hdr[:])
		})
		if err != nil {
			return err
		}
		defer srv.close()
		m0, g0 := userMem(), runtime.NumGoroutine()
		clients := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		t0 := time.Now()
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", srv.addr())
			if err != nil {
				return fmt.Errorf("dial #%d: %w", i, err)
			}
			clients = append(clients, c)
		}
		if err := waitFor(&accepted); err != nil {
			return err
		}
		setup := time.Since(t0)
		m1, g1 := userMem(), runtime.NumGoroutine()
		perConn(implRaw, m0, m1, g0, g1, setup)
		return nil
	}(); err != nil {
		out = append(out, errRow(w, implRaw, err))
	}
	// gotaps: every received connection keeps one ReceiveAsync pending
	var accepted atomic.Int64
	env, err := newGotapsEnv(ctx, func(c *taps.Connection) {
		accepted.Add(1)
		c.ReceiveAsync(func(*taps.Connection, *taps.Message, error) {})
	})
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	err = withCtx(ctx, "gotaps idle connections", func() error {
		m0, g0 := userMem(), settle(0, 100*time.Millisecond)
		t0 := time.Now()
		clients := make([]*taps.Connection, 0, n)
		for i := 0; i < n; i++ {
			c, err := env.dial(ctx)
			if err != nil {
				return fmt.Errorf("connection #%d: %w", i, err)
			}
			clients = append(clients, c)
		}
		if err := waitFor(&accepted); err != nil {
			return err
		}
		setup := time.Since(t0)
		time.Sleep(100 * time.Millisecond) // let the handler goroutines end
		m1, g1 := userMem(), runtime.NumGoroutine()
		perConn(implTaps, m0, m1, g0, g1, setup)
		runtime.KeepAlive(clients)
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	if err := env.close(); err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	if g, ok := find(out, implTaps, "mem_per_conn"); ok {
		if r, ok := find(out, implRaw, "mem_per_conn"); ok {
			out = append(out, res(w, implTaps, "mem_above_raw_per_conn", g.Value-r.Value, "B"))
			judgeAbs(out, implTaps, "mem_above_raw_per_conn", "<= 8KiB", "<=", 8192)
		}
	}
	judgeRatio(out, implTaps, implRaw, "mem_per_conn", "")
	judgeAbs(out, implTaps, "goroutines_per_conn", "<= 1", "<=", 1)
	judgeRatio(out, implTaps, implRaw, "setup_rate", "")
	return out
}

// --- W10: accept rate ---

const (
	acceptDialers = 4
	acceptHold    = 128 // connections each dialer keeps open before closing its oldest
)

// dialStorm dials addr n times from acceptDialers goroutines; each keeps its
// last acceptHold connections open (gotaps does not deliver a received
// connection the peer already closed) and closes the oldest beyond that.
func dialStorm(ctx context.Context, addr string, n int) error {
	var next atomic.Int64
	errs := make(chan error, acceptDialers)
	for i := 0; i < acceptDialers; i++ {
		go func() {
			var d net.Dialer
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for next.Add(1) <= int64(n) {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				held = append(held, c)
				if len(held) > acceptHold {
					held[0].Close()
					held = held[1:]
				}
			}
			errs <- nil
		}()
	}
	var first error
	for i := 0; i < acceptDialers; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// acceptRounder measures the accept rate in rounds: every round dials its
// share of n connections and waits until the server got them all.
type acceptRounder struct {
	rounder
	n    int
	el   time.Duration
	lost int64 // connections the server never got (the failing round)
}

func runW10(ctx context.Context, p params) (out []Result) {
	const w = "W10"
	k := p.roundsOf()
	newAccept := func(impl, addr string, cur *atomic.Pointer[sink], setupErr error) *acceptRounder {
		ar := &acceptRounder{rounder: rounder{name: impl, err: setupErr}}
		ar.run = func(r int) (float64, error) {
			m := share(p.w10N, k, r)
			s := newSink(int64(m))
			cur.Store(s)
			t0 := time.Now()
			if err := dialStorm(ctx, addr, m); err != nil {
				return 0, err
			}
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if err := s.wait(wctx); err != nil {
				ar.lost = int64(m) - s.got.Load()
				return 0, fmt.Errorf("connections lost: %w", err)
			}
			el := s.end.Sub(t0)
			ar.n += m
			ar.el += el
			return float64(m) / el.Seconds(), nil
		}
		return ar
	}
	// every round's connections count into that round's sink
	var rawCur, tapsCur atomic.Pointer[sink]
	rawCur.Store(newSink(-1))
	tapsCur.Store(newSink(-1))
	var raw, tps *acceptRounder
	if srv, err := newRawServer(func(net.Conn) { rawCur.Load().add(1) }); err != nil {
		raw = newAccept(implRaw, "", &rawCur, err)
	} else {
		defer srv.close()
		raw = newAccept(implRaw, srv.addr(), &rawCur, nil)
	}
	env, err := newGotapsEnv(ctx, func(c *taps.Connection) { tapsCur.Load().add(1); _ = c.Close() })
	if err != nil {
		tps = newAccept(implTaps, "", &tapsCur, err)
	} else {
		defer func() {
			if err := env.close(); err != nil {
				out = append(out, errRow(w, implTaps, err))
			}
		}()
		tps = newAccept(implTaps, fmt.Sprintf("127.0.0.1:%d", env.port), &tapsCur, nil)
	}
	alternate(ctx, k, &raw.rounder, &tps.rounder)
	for _, ar := range []*acceptRounder{raw, tps} {
		if ar.err != nil {
			out = append(out, errRow(w, ar.name, ar.err))
			if ar.lost > 0 {
				out = append(out, res(w, ar.name, "lost_connections", float64(ar.lost), ""))
			}
			continue
		}
		out = append(out, res(w, ar.name, "accept_rate", float64(ar.n)/ar.el.Seconds(), "conn/s"))
	}
	out = append(out, spreadRows(w, "accept_rate", &tps.rounder, &raw.rounder)...)
	judgeRatio(out, implTaps, implRaw, "accept_rate", ">= 0.8")
	return out
}

// --- W13: churn ---

func runW13(ctx context.Context, p params) (out []Result) {
	const w = "W13"
	n := p.w13N
	rows := func(impl string, rate float64, g0, g1, f0, f1 int, m0, m1 uint64) {
		out = append(out,
			res(w, impl, "cycle_rate", rate, "cycles/s"),
			res(w, impl, "goroutines_delta", float64(g1-g0), ""),
			res(w, impl, "fds_delta", float64(f1-f0), ""),
			res(w, impl, "heap_delta", float64(m1)-float64(m0), "B"))
	}
	// raw: dial, one 64 B echo, close
	if err := func() error {
		srv, err := newRawServer(rawEcho)
		if err != nil {
			return err
		}
		defer srv.close()
		cycle := func() error {
			c, rt, err := rawEchoClient(ctx, srv.addr())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = rt()
			return err
		}
		for i := 0; i < 10; i++ {
			if err := cycle(); err != nil {
				return err
			}
		}
		g0, f0, m0 := settle(0, 100*time.Millisecond), countFDs(), userMem()
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := cycle(); err != nil {
				return fmt.Errorf("cycle #%d: %w", i, err)
			}
		}
		rate := float64(n) / time.Since(t0).Seconds()
		g1 := settle(g0, 3*time.Second)
		rows(implRaw, rate, g0, g1, f0, countFDs(), m0, userMem())
		return nil
	}(); err != nil {
		out = append(out, errRow(w, implRaw, err))
	}
	env, err := newGotapsEnv(ctx, gotapsEcho)
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	err = withCtx(ctx, "gotaps churn", func() error {
		data := make([]byte, msg64)
		cycle := func() error {
			c, err := env.dial(ctx)
			if err != nil {
				return err
			}
			if err := c.Send(ctx, data, nil); err != nil {
				c.Abort()
				return fmt.Errorf("Send: %w", err)
			}
			if _, err := c.Receive(ctx); err != nil {
				c.Abort()
				return fmt.Errorf("Receive: %w", err)
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return closeWait(cctx, c)
		}
		for i := 0; i < 10; i++ {
			if err := cycle(); err != nil {
				return err
			}
		}
		g0, f0, m0 := settle(0, 100*time.Millisecond), countFDs(), userMem()
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := cycle(); err != nil {
				return fmt.Errorf("cycle #%d: %w", i, err)
			}
		}
		rate := float64(n) / time.Since(t0).Seconds()
		g1 := settle(g0, 3*time.Second)
		rows(implTaps, rate, g0, g1, f0, countFDs(), m0, userMem())
		return nil
	})
	if err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	if err := env.close(); err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	judgeRatio(out, implTaps, implRaw, "cycle_rate", "")
	judgeAbs(out, implTaps, "goroutines_delta", "== 0", "<=", 0)
	judgeAbs(out, implTaps, "fds_delta", "== 0", "<=", 0)
	judgeAbs(out, implTaps, "heap_delta", "<= 1MiB", "<=", 1<<20)
	return out
}
