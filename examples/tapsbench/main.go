// Command tapsbench measures gotaps against raw Go peers in one run: the
// workloads W1-W15 of design/PERFORMANCE.md. Every gotaps figure comes with
// the same figure of its raw peer (raw net TCP with the same 4-byte length
// prefix, goroutine per connection; raw quic-go with the same certificate and
// framing for W11/W12; plain protoactor ping-pong) measured in the same
// process, and the ratio between them.
//
// Usage:
//
//	tapsbench [-quick] [-w W1,W5] [-json FILE|-] [-timeout D]
//	tapsbench -serve ADDR [-framer length|none]   gotaps echo server until SIGINT
//	tapsbench -serve-raw ADDR                     raw Go echo server until SIGINT
//	tapsbench -client ADDR -conns N -duration D   raw Go closed-loop 64 B echo driver
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"syscall"
	"time"
)

// params are the sizes of every workload.
type params struct {
	w1N          int           // serial establishments
	w2N          int           // races, both healthy
	w3N          int           // races, dead first candidate
	w4N          int           // races, refused first candidate
	attemptDelay time.Duration // racing stagger for W3/W4
	w5N          int           // closed-loop round trips, 1 connection
	w6Conns      int
	w6Dur        time.Duration
	w7Dur        time.Duration // per message size and implementation
	w8N          int           // pipelined 64 B messages
	w9Pairs      int
	w10N         int           // accepted connections
	w11N         int           // QUIC handshakes per implementation
	w11Dur       time.Duration // QUIC bulk per implementation
	w12N         int           // clones per implementation and stack
	w13N         int           // churn cycles
	w14Dur       time.Duration
	timeout      time.Duration // per workload
	no0RTT       bool          // skip W11's 0-RTT rows (tests under -race: quic-go#4303)
	rounds       int           // alternating raw/gotaps rounds of W5-W7, W10, W14, W15 (rounds.go)
}

func fullParams() params {
	return params{
		w1N: 2000, w2N: 500, w3N: 1000, w4N: 500, attemptDelay: 50 * time.Millisecond,
		w5N: 200_000, w6Conns: 50, w6Dur: 5 * time.Second, w7Dur: 3 * time.Second,
		w8N: 1_000_000, w9Pairs: 9500, w10N: 20_000,
		w11N: 1000, w11Dur: 3 * time.Second, w12N: 2000, w13N: 100_000, w14Dur: 5 * time.Second,
		timeout: 180 * time.Second, rounds: 8,
	}
}

func quickParams() params {
	return params{
		w1N: 300, w2N: 100, w3N: 40, w4N: 100, attemptDelay: 50 * time.Millisecond,
		w5N: 20_000, w6Conns: 50, w6Dur: 1 * time.Second, w7Dur: 700 * time.Millisecond,
		w8N: 100_000, w9Pairs: 1000, w10N: 8000,
		w11N: 100, w11Dur: 700 * time.Millisecond, w12N: 300, w13N: 1000, w14Dur: 1500 * time.Millisecond,
		timeout: 20 * time.Second, rounds: 4,
	}
}

type workload struct {
	id   string
	name string
	run  func(ctx context.Context, p params) []Result
}

func workloads() []workload {
	return []workload{
		{"W1", "establishment, 1 TCP candidate, serial", runW1},
		{"W2", "racing, both candidates healthy", runW2},
		{"W3", "racing, dead (silent) first candidate", runW3},
		{"W4", "racing, refused first candidate", runW4},
		{"W5", "echo 64 B, 1 conn, closed loop", runW5},
		{"W6", "echo 64 B, 50 conns, closed loop", runW6},
		{"W7", "bulk one way, 1 MiB and 64 KiB messages", runW7},
		{"W8", "64 B pipelined one way", runW8},
		{"W9", "idle connections", runW9},
		{"W10", "listener accept rate", runW10},
		{"W11", "QUIC handshake and bulk, gotaps vs raw quic-go", runW11},
		{"W12", "Clone on QUIC (stream) and TCP (new connection)", runW12},
		{"W13", "churn open/send/close", runW13},
		{"W14", "echo server in its own process, 50 conns", runW14},
		{"W15", "as W14, 1 conn, pinned to CPU 1", runW15},
	}
}

// progress is where per-workload progress lines go (stderr; nil in tests).
var progress io.Writer = os.Stderr

func logf(format string, a ...any) {
	if progress != nil {
		fmt.Fprintf(progress, format+"\n", a...)
	}
}

// runBench runs the selected workloads (all when sel is empty) one after
// the other; a workload that errors, panics or outlives p.timeout (+10 s of
// grace) gives an error row and the run goes on.
func runBench(p params, sel []string, quick bool) Report {
	rep := Report{Env: currentEnv(quick)}
	for _, w := range workloads() {
		if len(sel) > 0 && !slices.Contains(sel, w.id) {
			continue
		}
		logf("%s: %s ...", w.id, w.name)
		start := time.Now()
		rs := runOne(w, p)
		logf("%s: done in %v", w.id, time.Since(start).Round(time.Millisecond))
		rep.Results = append(rep.Results, rs...)
	}
	return rep
}

func runOne(w workload, p params) (rs []Result) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	ch := make(chan []Result, 1)
	go func() {
		defer func() {
			if e := recover(); e != nil {
				ch <- []Result{errRow(w.id, "all", fmt.Errorf("panic: %v", e))}
			}
		}()
		ch <- w.run(ctx, p)
	}()
	grace := time.NewTimer(p.timeout + 10*time.Second)
	defer grace.Stop()
	select {
	case rs = <-ch:
		return rs
	case <-grace.C:
		return []Result{errRow(w.id, "all", fmt.Errorf("hung: no result %v after its %v timeout", 10*time.Second, p.timeout))}
	}
}

func main() {
	var (
		quick    = flag.Bool("quick", false, "CI-sized run (under 60 s)")
		wsel     = flag.String("w", "", "comma-separated workloads to run (default all), e.g. W5,W7")
		jsonOut  = flag.String("json", "", "also write the JSON report to this file (- for stdout, then no table)")
		timeout  = flag.Duration("timeout", 0, "per-workload timeout (default 20 s quick, 180 s full)")
		serve    = flag.String("serve", "", "run only a gotaps echo server on ADDR until interrupted")
		framer   = flag.String("framer", "length", "framer of -serve: length or none")
		serveRaw = flag.String("serve-raw", "", "run only a raw Go echo server on ADDR until interrupted")
		client   = flag.String("client", "", "run only a raw Go closed-loop 64 B echo client against ADDR")
		conns    = flag.Int("conns", 50, "connections of -client")
		duration = flag.Duration("duration", 5*time.Second, "duration of -client")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the run (the benchmark, -serve, -serve-raw or -client) to this file")
		memprof  = flag.String("memprofile", "", "write an allocation profile of the benchmark run to this file")
		traceOut = flag.String("trace", "", "write an execution trace of the run (the benchmark, -serve, -serve-raw or -client) to this file")
	)
	flag.Parse()
	raiseNofile()
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err == nil {
			err = trace.Start(f)
		}
		if err != nil {
			fatal(err)
		}
		defer trace.Stop()
	}
	switch {
	case *serve != "" || *serveRaw != "":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var err error
		if *serve != "" {
			err = serveGotaps(ctx, *serve, *framer, os.Stdout)
		} else {
			err = serveRawEcho(ctx, *serveRaw, os.Stdout)
		}
		if err != nil {
			fatal(err)
		}
		return
	case *client != "":
		if err := runClient(*client, *conns, *duration, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	p := fullParams()
	if *quick {
		p = quickParams()
	}
	if *timeout > 0 {
		p.timeout = *timeout
	}
	var sel []string
	if *wsel != "" {
		for _, s := range strings.Split(*wsel, ",") {
			sel = append(sel, strings.ToUpper(strings.TrimSpace(s)))
		}
	}
	if *memprof != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if f, err := os.Create(*memprof); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	rep := runBench(p, sel, *quick)
	if *jsonOut != "-" {
		printTable(os.Stdout, rep)
	}
	if *jsonOut != "" {
		w := io.Writer(os.Stdout)
		if *jsonOut != "-" {
			f, err := os.Create(*jsonOut)
			if err != nil {
				fatal(err)
			}
			defer f.Close()
			w = f
		}
		if err := writeJSON(w, rep); err != nil {
			fatal(err)
		}
	}
}

// fatal reports err and ends the program with status 1.
func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tapsbench:", err)
	os.Exit(1)
}
