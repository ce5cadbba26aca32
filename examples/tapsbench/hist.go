package main

import (
	"fmt"
	"math/bits"
	"time"
)

// hist is an HDR-style log-linear histogram of durations in nanoseconds:
// 128 linear buckets below 128 ns, then 64 sub-buckets per power of two, so
// every recorded value is known to within 1/64 (1.6 %). It is not safe for
// concurrent use; merge per-goroutine histograms with add.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	min    uint64
	max    uint64
	sum    uint64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // linear range and sub-bucket base
	histHalf    = histSub / 2
	histBuckets = histSub + (64-histSubBits)*histHalf
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits // >= 1
	m := v >> uint(shift)                // in [histHalf, histSub)
	return histSub + (shift-1)*histHalf + int(m-histHalf)
}

// histValue returns the midpoint of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	j := i - histSub
	shift := j/histHalf + 1
	m := uint64(j%histHalf + histHalf)
	return m<<uint(shift) + (uint64(1)<<uint(shift))/2
}

func (h *hist) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

func (h *hist) add(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q (0..1), clamped to [min, max].
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = max(min(rank, h.n), 1)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := min(max(histValue(i), h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// histDump is a hist in a form JSON carries (W14/W15's client process
// hands its histogram to the benchmark, which merges the rounds').
type histDump struct {
	Buckets [][2]uint64 `json:"buckets"` // (bucket index, count), counts > 0
	N       uint64      `json:"n"`
	Min     uint64      `json:"min"`
	Max     uint64      `json:"max"`
	Sum     uint64      `json:"sum"`
}

func (h *hist) dump() histDump {
	d := histDump{N: h.n, Min: h.min, Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c > 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return d
}

// histFrom rebuilds a hist from its dump.
func histFrom(d histDump) (*hist, error) {
	h := &hist{n: d.N, min: d.Min, max: d.Max, sum: d.Sum}
	var n uint64
	for _, b := range d.Buckets {
		if b[0] >= histBuckets {
			return nil, fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		h.counts[b[0]] += b[1]
		n += b[1]
	}
	if n != d.N {
		return nil, fmt.Errorf("histogram counts sum to %d, want %d", n, d.N)
	}
	return h, nil
}
