package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gotaps/gotaps/taps"
)

func discard(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// rawDialLoop measures n serial net.Dial calls to addr.
func rawDialLoop(ctx context.Context, addr string, n int) (*hist, error) {
	h := &hist{}
	var d net.Dialer
	for i := 0; i < n; i++ {
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		h.record(time.Since(t0))
		c.Close()
	}
	return h, nil
}

// gotapsInitiateLoop measures n serial Initiate calls (Ready latency); each
// connection is closed (and its Closed awaited) outside the timed part.
// check, when set, inspects each connection before it is closed.
func gotapsInitiateLoop(ctx context.Context, pre *taps.Preconnection, n int, check func(*taps.Connection) error) (*hist, error) {
	h := &hist{}
	for i := 0; i < n; i++ {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		c, err := pre.Initiate(ictx)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("Initiate #%d: %w", i, err)
		}
		h.record(d)
		if check != nil {
			if err := check(c); err != nil {
				c.Abort()
				return nil, fmt.Errorf("Initiate #%d: %w", i, err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = closeWait(cctx, c)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	return h, nil
}

// w1Warm is how many untimed establishments each side makes before W1's
// rounds (the first ones of a process pay for its heap and caches).
const w1Warm = 20

func runW1(ctx context.Context, p params) (out []Result) {
	const w = "W1"
	srv, err := newRawServer(discard)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer srv.close()
	k := p.roundsOf()
	// Both sides run in alternating rounds (rounds.go) after a warm-up,
	// like the data workloads: W1 runs first in a process, and measuring
	// raw once and then gotaps once let the cold start decide the delta.
	var rawH, tapsH hist
	raw := &rounder{name: implRaw}
	raw.run = func(r int) (float64, error) {
		h, err := rawDialLoop(ctx, srv.addr(), share(p.w1N, k, r))
		if err != nil {
			return 0, err
		}
		rawH.add(h)
		return us(h.quantile(0.5)), nil
	}
	if _, err := rawDialLoop(ctx, srv.addr(), w1Warm); err != nil {
		raw.err = err
	}
	env, err := newGotapsEnv(ctx, nil)
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	pre := env.preconn(nil, srv.port)
	tps := &rounder{name: implTaps}
	tps.run = func(r int) (float64, error) {
		h, err := gotapsInitiateLoop(ctx, pre, share(p.w1N, k, r), nil)
		if err != nil {
			return 0, err
		}
		tapsH.add(h)
		return us(h.quantile(0.5)), nil
	}
	tps.err = withCtx(ctx, "gotaps warm-up", func() error {
		_, err := gotapsInitiateLoop(ctx, pre, w1Warm, nil)
		return err
	})
	alternate(ctx, k, raw, tps)
	for _, r := range []struct {
		rd *rounder
		h  *hist
	}{{raw, &rawH}, {tps, &tapsH}} {
		if r.rd.err != nil {
			out = append(out, errRow(w, r.rd.name, r.rd.err))
			continue
		}
		out = append(out, latencyRows(w, r.rd.name, "ready", r.h)...)
	}
	if err := env.close(); err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	out = append(out, spreadRows(w, "ready_p50", tps, raw)...)
	judgeDelta(out, implTaps, implRaw, "ready_p50", 100, "<= raw+100us")
	return out
}

func runW2(ctx context.Context, p params) (out []Result) {
	const w = "W2"
	var accepts atomic.Int64
	count := func(c net.Conn) { accepts.Add(1); discard(c) }
	a, err := newRawServer(count)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer a.close()
	b, err := newRawServer(count)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer b.close()
	rawSrv, err := newRawServer(discard) // the raw side's own: a and b count gotaps' accepts only
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer rawSrv.close()
	env, err := newGotapsEnv(ctx, nil)
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	defer func() {
		if err := env.close(); err != nil {
			out = append(out, errRow(w, implTaps, err))
		}
	}()
	pre := env.preconn(nil, a.port, b.port)
	// warm-ups, untimed (as W1), before the alternating rounds
	raw := &rounder{name: implRaw}
	if _, err := rawDialLoop(ctx, rawSrv.addr(), w1Warm); err != nil {
		raw.err = err
	}
	tps := &rounder{name: implTaps}
	tps.err = withCtx(ctx, "gotaps warm-up", func() error {
		_, err := gotapsInitiateLoop(ctx, pre, w1Warm, nil)
		return err
	})
	for deadline := time.Now().Add(2 * time.Second); accepts.Load() < w1Warm && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the warm-up's accepts land asynchronously
	}
	warmAccepts := accepts.Load()
	var readies atomic.Int64
	pre.OnReady(func(*taps.Connection) { readies.Add(1) })
	k := p.roundsOf()
	var rawH, tapsH hist
	raw.run = func(r int) (float64, error) {
		h, err := rawDialLoop(ctx, rawSrv.addr(), share(p.w2N, k, r))
		if err != nil {
			return 0, err
		}
		rawH.add(h)
		return us(h.quantile(0.5)), nil
	}
	var attempts, multi int
	tps.run = func(r int) (float64, error) {
		h, err := gotapsInitiateLoop(ctx, pre, share(p.w2N, k, r), func(c *taps.Connection) error {
			if r := c.EstablishmentReport(); r != nil {
				attempts += len(r.Attempts)
				if len(r.Attempts) > 1 {
					multi++
					logf("W2: race with %d attempts (Ready after %v): %+v", len(r.Attempts), r.Duration, r.Attempts)
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		tapsH.add(h)
		return us(h.quantile(0.5)), nil
	}
	alternate(ctx, k, raw, tps)
	if raw.err != nil {
		out = append(out, errRow(w, implRaw, raw.err))
	} else {
		out = append(out, latencyRows(w, implRaw, "ready", &rawH)...)
	}
	if tps.err != nil {
		return append(out, errRow(w, implTaps, tps.err))
	}
	// Ready handlers and accept counting are asynchronous: let them land.
	deadline := time.Now().Add(2 * time.Second)
	for (readies.Load() < int64(p.w2N) || accepts.Load()-warmAccepts < int64(p.w2N)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	n := float64(p.w2N)
	out = append(out, latencyRows(w, implTaps, "ready", &tapsH)...)
	out = append(out,
		res(w, implTaps, "ready_events_per_race", float64(readies.Load())/n, ""),
		res(w, implTaps, "attempts_per_race", float64(attempts)/n, ""),
		res(w, implTaps, "races_with_2_attempts", float64(multi), ""),
		res(w, implTaps, "server_accepts_per_race", float64(accepts.Load()-warmAccepts)/n, ""),
	)
	out = append(out, spreadRows(w, "ready_p50", tps, raw)...)
	judgeDelta(out, implTaps, implRaw, "ready_p50", 100, "<= raw+100us")
	judgeAbs(out, implTaps, "ready_events_per_race", "== 1", "==", 1)
	judgeAbs(out, implTaps, "races_with_2_attempts", "== 0", "==", 0)
	judgeAbs(out, implTaps, "server_accepts_per_race", "== 1", "==", 1)
	return out
}

// deadListener returns a TCP listener with backlog 0 that never accepts,
// its accept queue already full (further SYNs are dropped), and a cleanup.
func deadListener() (uint16, func(), error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return 0, nil, err
	}
	syscall.CloseOnExec(fd) // (SOCK_CLOEXEC is Linux only)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return 0, nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		return 0, nil, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, nil, err
	}
	port := uint16(sa.(*syscall.SockaddrInet4).Port)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var fill []net.Conn
	cleanup := func() {
		for _, c := range fill {
			c.Close()
		}
		syscall.Close(fd)
	}
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return port, cleanup, nil // the queue is full: this SYN was dropped
		}
		fill = append(fill, c)
		if i == 8 {
			cleanup()
			return 0, nil, fmt.Errorf("backlog-0 listener still accepts after %d dials", i+1)
		}
	}
}

// closedPort returns a port on 127.0.0.1 where nothing listens (RST).
func closedPort() (uint16, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port, nil
}

// rawHappyEyeballs is the raw peer of racing: attempts start delay apart
// (the next one at once when the previous failed); the first success wins
// and every other attempt is cancelled and closed.
func rawHappyEyeballs(ctx context.Context, addrs []string, delay time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, len(addrs))
	var d net.Dialer
	next, pending := 0, 0
	start := func() {
		a := addrs[next]
		next++
		pending++
		go func() {
			c, err := d.DialContext(ctx, "tcp", a)
			ch <- result{c, err}
		}()
	}
	start()
	t := time.NewTimer(delay)
	defer t.Stop()
	var lastErr error
	for {
		select {
		case r := <-ch:
			pending--
			if r.err == nil {
				go func(n int) { // close late winners
					for ; n > 0; n-- {
						if x := <-ch; x.c != nil {
							x.c.Close()
						}
					}
				}(pending)
				return r.c, nil
			}
			lastErr = r.err
			if next < len(addrs) {
				start()
				t.Reset(delay)
			} else if pending == 0 {
				return nil, lastErr
			}
		case <-t.C:
			if next < len(addrs) {
				start()
				t.Reset(delay)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func rawRaceLoop(ctx context.Context, addrs []string, delay time.Duration, n int) (*hist, error) {
	h := &hist{}
	for i := 0; i < n; i++ {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		c, err := rawHappyEyeballs(rctx, addrs, delay)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, err
		}
		h.record(d)
		c.Close()
	}
	return h, nil
}

const implRawHE = "raw-he"

// runRacing is W3 and W4: the first candidate fails (silently or with an
// RST), the second is healthy.
func runRacing(ctx context.Context, w string, p params, n int, firstPort uint16) (out []Result) {
	live, err := newRawServer(discard)
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer live.close()
	first := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(firstPort)))
	if h, err := rawRaceLoop(ctx, []string{first, live.addr()}, p.attemptDelay, n); err != nil {
		out = append(out, errRow(w, implRawHE, err))
	} else {
		out = append(out, latencyRows(w, implRawHE, "ready", h)...)
	}
	env, err := newGotapsEnv(ctx, nil)
	if err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	// gotaps: isolateSession, so the race cache cannot promote the live
	// candidate; gotaps-cached: the default, where it does after one race.
	tp := taps.NewTransportProperties()
	if err := tp.Set(taps.IsolateSession, true); err != nil {
		return append(out, errRow(w, implTaps, err))
	}
	for _, v := range []struct {
		impl string
		opts []taps.PreconnectionOption
	}{
		{implTaps, []taps.PreconnectionOption{taps.WithAttemptDelay(p.attemptDelay), taps.WithTransportProperties(tp)}},
		{implTapsCached, []taps.PreconnectionOption{taps.WithAttemptDelay(p.attemptDelay)}},
	} {
		pre := env.preconn(v.opts, firstPort, live.port)
		var h *hist
		err = withCtx(ctx, "gotaps racing Initiate loop", func() (err error) {
			// warm up once, then take the baseline
			if _, err = gotapsInitiateLoop(ctx, pre, 1, nil); err != nil {
				return err
			}
			g0, f0 := settle(0, 200*time.Millisecond), countFDs()
			h, err = gotapsInitiateLoop(ctx, pre, n, nil)
			if err != nil {
				return err
			}
			g1 := settle(g0, 3*time.Second)
			f1 := countFDs()
			out = append(out, latencyRows(w, v.impl, "ready", h)...)
			out = append(out,
				res(w, v.impl, "leaked_goroutines", float64(g1-g0), ""),
				res(w, v.impl, "leaked_fds", float64(f1-f0), ""))
			return nil
		})
		if err != nil {
			out = append(out, errRow(w, v.impl, err))
		}
	}
	if err := env.close(); err != nil {
		out = append(out, errRow(w, implTaps, err))
	}
	return out
}

const implTapsCached = "gotaps-cached"

func runW3(ctx context.Context, p params) []Result {
	const w = "W3"
	port, cleanup, err := deadListener()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	defer cleanup()
	out := runRacing(ctx, w, p, p.w3N, port)
	d := p.attemptDelay
	for _, impl := range []string{implTaps, implRawHE} {
		judgeAbs(out, impl, "ready_p50", fmt.Sprintf("<= %v+10ms", d), "<=", us(d+10*time.Millisecond))
		judgeAbs(out, impl, "ready_p99", fmt.Sprintf("<= %v+95ms", d), "<=", us(d+95*time.Millisecond))
	}
	if ri, ok := indexOf(out, implTaps, "ready_p50"); ok {
		if r, ok := find(out, implRawHE, "ready_p50"); ok && r.Value > 0 {
			ratio := out[ri].Value / r.Value
			out[ri].RatioToRaw = &ratio
		}
	}
	judgeAbs(out, implTaps, "leaked_goroutines", "== 0", "<=", 0)
	judgeAbs(out, implTaps, "leaked_fds", "== 0", "<=", 0)
	return out
}

func runW4(ctx context.Context, p params) []Result {
	const w = "W4"
	port, err := closedPort()
	if err != nil {
		return []Result{errRow(w, "all", err)}
	}
	out := runRacing(ctx, w, p, p.w4N, port)
	judgeDelta(out, implTaps, implRawHE, "ready_p50", 1000, "<= raw+1ms")
	judgeAbs(out, implTaps, "ready_p99", fmt.Sprintf("<= %v/2", p.attemptDelay), "<=", us(p.attemptDelay/2))
	judgeAbs(out, implTaps, "leaked_goroutines", "== 0", "<=", 0)
	judgeAbs(out, implTaps, "leaked_fds", "== 0", "<=", 0)
	return out
}
