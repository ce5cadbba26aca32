package main

import (
	"context"
	"fmt"
	"math"
)

// Alternating rounds: on a shared machine, measuring raw and gotaps once
// each, one after the other, lets machine state (CPU frequency, other
// tenants, heap and GC state left by the previous measurement) decide the
// ratio. The workloads that compare short measurements (W1, W2, W5, W6, W7, W10,
// W11 (handshakes, and its bulk part in 2 rounds), W12, W14, W15) instead run K rounds; every round measures
// every implementation for 1/K of the budget, in the listed order in even
// rounds and the reverse order in odd ones. Figures are aggregated over the
// rounds (total work / total measured time, merged histograms), and the
// spread of the per-round ratios of the judged metric is reported beside
// them (<metric>_round_min / <metric>_round_max, unit "x").

// rounder is one implementation measured in alternating rounds: run
// measures round r and returns that round's figure of the judged metric;
// vals holds those figures, err the first error (no later rounds then).
type rounder struct {
	name string
	run  func(r int) (float64, error)
	vals []float64
	err  error
}

// alternate runs k rounds of every implementation in imps, the order
// reversed in odd rounds. Each measurement runs under withCtx, so a hung
// one becomes that implementation's error; an implementation that failed
// sits out the remaining rounds.
func alternate(ctx context.Context, k int, imps ...*rounder) {
	for r := 0; r < k; r++ {
		for j := range imps {
			im := imps[j]
			if r%2 == 1 {
				im = imps[len(imps)-1-j]
			}
			if im.err != nil {
				continue
			}
			var v float64
			err := withCtx(ctx, im.name+fmt.Sprintf(" round %d", r), func() error {
				var err error
				v, err = im.run(r)
				return err
			})
			if err != nil {
				im.err = fmt.Errorf("round %d of %d: %w", r+1, k, err)
				continue
			}
			im.vals = append(im.vals, v)
		}
	}
}

// roundsOf is the number of alternating rounds (at least 1).
func (p params) roundsOf() int { return max(p.rounds, 1) }

// spreadRows gives impl's <metric>_round_min and _round_max rows: the
// smallest and largest per-round ratio of impl's figure to raw's (unit
// "x"), when both measured every round.
func spreadRows(w, metric string, impl, raw *rounder) []Result {
	if impl.err != nil || raw.err != nil || len(impl.vals) == 0 || len(impl.vals) != len(raw.vals) {
		return nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, v := range impl.vals {
		if raw.vals[i] == 0 {
			return nil
		}
		x := v / raw.vals[i]
		lo, hi = min(lo, x), max(hi, x)
	}
	return []Result{
		res(w, impl.name, metric+roundMinSuffix, lo, "x"),
		res(w, impl.name, metric+roundMaxSuffix, hi, "x"),
	}
}

const (
	roundMinSuffix = "_round_min"
	roundMaxSuffix = "_round_max"
)

// share is round r's share of total split over k rounds (the first rounds
// take the remainder), at least 1.
func share(total, k, r int) int {
	n := total / k
	if r < total%k {
		n++
	}
	return max(n, 1)
}
