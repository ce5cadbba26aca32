package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines after the tests, as every test
// package does, with a longer grace than goleak's own (about half a
// second): a QUIC session whose last stream was closed gracefully lingers up
// to stacks' quicMaxLinger (2 s) before its socket goroutines end, and the
// QUIC workloads close sessions at their very end.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); err = goleak.Find() {
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func tinyParams() params {
	p := quickParams()
	p.w1N, p.w5N, p.w7Dur, p.timeout = 20, 200, 50*time.Millisecond, 10*time.Second
	p.w11N, p.w11Dur, p.w12N = 5, 100*time.Millisecond, 5
	p.w10N, p.rounds = 300, 3
	// 0-RTT opens a stream while the handshake completes: a data race
	// inside quic-go (quic-go#4303), tested without -race only
	p.no0RTT = raceDetector
	return p
}

// TestBenchJSONShape runs W1, W5 and W7 with tiny counts in-process and
// checks the -json report: every result has workload, impl, metric, value
// and unit, and each workload has gotaps and raw rows without errors.
func TestBenchJSONShape(t *testing.T) {
	progress = nil
	rep := runBench(tinyParams(), []string{"W1", "W5", "W7"}, true)
	var buf bytes.Buffer
	require.NoError(t, writeJSON(&buf, rep))

	var doc struct {
		Env     map[string]any   `json:"env"`
		Results []map[string]any `json:"results"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	for _, k := range []string{"go_version", "gomaxprocs", "kernel", "commit"} {
		require.Contains(t, doc.Env, k)
	}
	require.NotEmpty(t, doc.Results)
	seen := map[string]bool{}
	for _, r := range doc.Results {
		for _, k := range []string{"workload", "impl", "metric", "value", "unit"} {
			require.Contains(t, r, k, "result %v", r)
		}
		require.NotContains(t, r, "error", "result %v", r)
		_, isNum := r["value"].(float64)
		require.True(t, isNum, "value of %v", r)
		seen[r["workload"].(string)+"/"+r["impl"].(string)] = true
	}
	for _, k := range []string{"W1/gotaps", "W1/raw-tcp", "W5/gotaps", "W5/raw-tcp", "W5/protoactor", "W7/gotaps", "W7/raw-tcp", "W7/gotaps-keep", "W7/raw-tcp-fresh"} {
		require.True(t, seen[k], "no rows for %s", k)
	}
	// judged rows carry a ratio, a target and a verdict
	g, ok := find(rep.Results, implTaps, "rtt_p50")
	require.True(t, ok)
	require.NotNil(t, g.RatioToRaw)
	require.Equal(t, "<= 1.5", g.Target)
	require.NotNil(t, g.Meets)

	var table bytes.Buffer
	printTable(&table, rep)
	require.Contains(t, table.String(), "W5")
}

// TestQUICWorkloads runs W11 and W12 with tiny counts in-process: every
// implementation gives its rows without errors, and the judged figures
// carry their targets.
func TestQUICWorkloads(t *testing.T) {
	progress = nil
	rep := runBench(tinyParams(), []string{"W11", "W12"}, true)
	seen := map[string]bool{}
	for _, r := range rep.Results {
		require.Empty(t, r.Error, "result %+v", r)
		seen[r.Workload+"/"+r.Impl+"/"+r.Metric] = true
	}
	for _, k := range []string{
		"W11/raw-quic/handshake_p50", "W11/gotaps/handshake_p50", "W11/raw-quic/bulk_64KiB", "W11/gotaps/bulk_64KiB",
		"W11/raw-quic-resumed/handshake_p50", "W11/gotaps-resumed/handshake_p50",
		"W12/raw-quic/clone_rt_p50", "W12/gotaps/clone_rt_p50", "W12/gotaps/clone_ready_median",
		"W12/raw-tcp/clone_rt_p50", "W12/gotaps-tcp/clone_rt_p50",
	} {
		require.True(t, seen[k], "no row %s", k)
	}
	r, ok := find(rep.Results, implRawQUICResumed, "resumed")
	require.True(t, ok)
	require.Positive(t, r.Value, "raw resumed handshakes resume")
	for _, j := range []struct{ w, impl, metric, target string }{
		{"W11", implTaps, "handshake_p50", "<= 1.1"},
		{"W11", implTaps, "bulk_64KiB", ">= 0.9"},
		{"W12", implTaps, "clone_rt_p50", "<= 2"},
	} {
		var got *Result
		for i := range rep.Results {
			if x := &rep.Results[i]; x.Workload == j.w && x.Impl == j.impl && x.Metric == j.metric {
				got = x
			}
		}
		require.NotNil(t, got, "%+v", j)
		require.Equal(t, j.target, got.Target)
		require.NotNil(t, got.RatioToRaw)
		require.NotNil(t, got.Meets)
	}
}

// TestRoundRatioSpread runs W5 and W10 with tiny counts in alternating
// rounds: the gotaps row carries the spread of the per-round ratios of the
// judged metric (unit "x", min <= max) besides the aggregate's judged
// ratio, and the table prints it as round_ratios=min..max.
func TestRoundRatioSpread(t *testing.T) {
	progress = nil
	rep := runBench(tinyParams(), []string{"W5", "W10"}, true)
	for _, r := range rep.Results {
		require.Empty(t, r.Error, "result %+v", r)
	}
	for _, m := range []struct{ w, metric, target string }{{"W5", "rtt_p50", "<= 1.5"}, {"W10", "accept_rate", ">= 0.8"}} {
		var judged, lo, hi *Result
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Workload != m.w || r.Impl != implTaps {
				continue
			}
			switch r.Metric {
			case m.metric:
				judged = r
			case m.metric + roundMinSuffix:
				lo = r
			case m.metric + roundMaxSuffix:
				hi = r
			}
		}
		require.NotNil(t, judged, m.w)
		require.NotNil(t, judged.RatioToRaw, m.w)
		require.Equal(t, m.target, judged.Target)
		require.NotNil(t, lo, "%s: no %s%s row", m.w, m.metric, roundMinSuffix)
		require.NotNil(t, hi, "%s: no %s%s row", m.w, m.metric, roundMaxSuffix)
		require.Equal(t, "x", lo.Unit)
		require.Positive(t, lo.Value)
		require.LessOrEqual(t, lo.Value, hi.Value)
	}
	var table bytes.Buffer
	printTable(&table, rep)
	require.Regexp(t, `(?m)^W5 +gotaps .*round_ratios=[0-9.]+\.\.[0-9.]+`, table.String())
	require.Regexp(t, `(?m)^W10 +gotaps .*round_ratios=[0-9.]+\.\.[0-9.]+`, table.String())
}

// alternate measures every implementation once per round, raw (the first)
// first in even rounds and last in odd ones, and an implementation that
// failed sits out the later rounds.
func TestAlternateOrder(t *testing.T) {
	var order []string
	mk := func(name string, failAt int) *rounder {
		return &rounder{name: name, run: func(r int) (float64, error) {
			order = append(order, fmt.Sprint(name, r))
			if r == failAt {
				return 0, fmt.Errorf("boom")
			}
			return float64(r + 1), nil
		}}
	}
	a, b, c := mk("a", -1), mk("b", -1), mk("c", 2)
	alternate(context.Background(), 4, a, b, c)
	require.Equal(t, []string{"a0", "b0", "c0", "c1", "b1", "a1", "a2", "b2", "c2", "b3", "a3"}, order)
	require.Equal(t, []float64{1, 2, 3, 4}, a.vals)
	require.Error(t, c.err)
	require.Nil(t, spreadRows("W", "m", c, a), "no spread for a failed implementation")
	rs := spreadRows("W", "m", b, a)
	require.Len(t, rs, 2)
	require.Equal(t, "m_round_min", rs[0].Metric)
	require.Equal(t, 1.0, rs[0].Value)
	require.Equal(t, 1.0, rs[1].Value)
	require.Equal(t, []int{4, 3, 3}, []int{share(10, 3, 0), share(10, 3, 1), share(10, 3, 2)})
}

// W14/W15's client process hands its histogram over as JSON.
func TestHistDump(t *testing.T) {
	h := &hist{}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i*i) * time.Nanosecond)
	}
	b, err := json.Marshal(h.dump())
	require.NoError(t, err)
	var d histDump
	require.NoError(t, json.Unmarshal(b, &d))
	g, err := histFrom(d)
	require.NoError(t, err)
	require.Equal(t, *h, *g)
	d.N++
	_, err = histFrom(d)
	require.Error(t, err)
}

func TestHistQuantiles(t *testing.T) {
	h := &hist{}
	for i := 1; i <= 100000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := q * 100000 * float64(time.Microsecond)
		got := float64(h.quantile(q))
		require.Less(t, math.Abs(got-want)/want, 0.02, "q=%v got %v want %v", q, got, want)
	}
	require.InDelta(t, float64(time.Microsecond), float64(h.quantile(0)), 0.02*float64(time.Microsecond))
	require.Equal(t, 100*time.Millisecond, h.quantile(1))
	for v := uint64(0); v < 1<<20; v += 7 {
		i := histIndex(v)
		require.Less(t, i, histBuckets)
		mid := histValue(i)
		require.LessOrEqual(t, math.Abs(float64(mid)-float64(v)), float64(v)/64+1, "v=%d", v)
	}
}
