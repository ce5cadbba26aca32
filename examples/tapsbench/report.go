package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one measured figure (one JSON object of "results").
type Result struct {
	Workload   string   `json:"workload"`
	Impl       string   `json:"impl"`
	Metric     string   `json:"metric"`
	Value      float64  `json:"value"`
	Unit       string   `json:"unit"`
	RatioToRaw *float64 `json:"ratio_to_raw,omitempty"`
	Target     string   `json:"target,omitempty"`
	Meets      *bool    `json:"meets,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// Env is the run's environment (the JSON "env").
type Env struct {
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	Kernel     string `json:"kernel"`
	Commit     string `json:"commit"`
	Time       string `json:"time"`
	Quick      bool   `json:"quick"`
}

// Report is the whole -json output.
type Report struct {
	Env     Env      `json:"env"`
	Results []Result `json:"results"`
}

func currentEnv(quick bool) Env {
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return Env{
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Kernel:     kernel,
		Commit:     commit,
		Time:       time.Now().UTC().Format(time.RFC3339),
		Quick:      quick,
	}
}

// --- building results ---

func res(w, impl, metric string, v float64, unit string) Result {
	return Result{Workload: w, Impl: impl, Metric: metric, Value: v, Unit: unit}
}

func errRow(w, impl string, err error) Result {
	return Result{Workload: w, Impl: impl, Metric: "error", Unit: "", Error: "error: " + err.Error()}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// latencyRows gives <base>_p50/_p99/_p999 rows in µs.
func latencyRows(w, impl, base string, h *hist) []Result {
	return []Result{
		res(w, impl, base+"_p50", us(h.quantile(0.50)), "us"),
		res(w, impl, base+"_p99", us(h.quantile(0.99)), "us"),
		res(w, impl, base+"_p999", us(h.quantile(0.999)), "us"),
	}
}

func find(rs []Result, impl, metric string) (Result, bool) {
	for _, r := range rs {
		if r.Impl == impl && r.Metric == metric && r.Error == "" {
			return r, true
		}
	}
	return Result{}, false
}

// judgeRatio sets ratio_to_raw on impl's metric (value / raw value) and,
// when target is not empty ("<= 1.5", ">= 0.8"), whether the ratio meets it.
func judgeRatio(rs []Result, impl, raw, metric, target string) {
	ri, ok1 := indexOf(rs, impl, metric)
	r, ok2 := find(rs, raw, metric)
	if !ok1 || !ok2 || r.Value == 0 {
		return
	}
	ratio := rs[ri].Value / r.Value
	rs[ri].RatioToRaw = &ratio
	if target != "" {
		rs[ri].Target = target
		m := compare(ratio, target)
		rs[ri].Meets = &m
	}
}

// judgeAbs sets target and meets on impl's metric compared with an
// absolute bound (label is what the target column shows).
func judgeAbs(rs []Result, impl, metric, label, op string, bound float64) {
	ri, ok := indexOf(rs, impl, metric)
	if !ok {
		return
	}
	rs[ri].Target = label
	m := compare(rs[ri].Value, fmt.Sprintf("%s %g", op, bound))
	rs[ri].Meets = &m
}

func indexOf(rs []Result, impl, metric string) (int, bool) {
	for i, r := range rs {
		if r.Impl == impl && r.Metric == metric && r.Error == "" {
			return i, true
		}
	}
	return 0, false
}

func compare(v float64, target string) bool {
	var op string
	var bound float64
	if _, err := fmt.Sscanf(target, "%s %g", &op, &bound); err != nil {
		return false
	}
	switch op {
	case "<=":
		return v <= bound
	case ">=":
		return v >= bound
	case "==":
		return v == bound
	case "<":
		return v < bound
	}
	return false
}

// --- output ---

func writeJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// printTable prints one row per (workload, impl): the p50/p99/p99.9 of its
// latency metric in the first columns, its other figures after, then the
// ratio to the raw peer, target and verdict of every judged metric.
func printTable(w io.Writer, rep Report) {
	e := rep.Env
	fmt.Fprintf(w, "tapsbench  go=%s GOMAXPROCS=%d cpus=%d kernel=%s commit=%s quick=%v %s\n\n",
		e.GoVersion, e.GOMAXPROCS, e.NumCPU, e.Kernel, e.Commit, e.Quick, e.Time)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WL\tIMPL\tMEDIAN\tP99\tP99.9\tOTHER\tRATIO\tTARGET\tMEETS")
	type key struct{ w, impl string }
	var order []key
	groups := map[key][]Result{}
	for _, r := range rep.Results {
		k := key{r.Workload, r.Impl}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		var p50, p99, p999 string
		var other, ratio, target, meets []string
		spreads := roundSpreads(groups[k])
		for _, r := range groups[k] {
			if r.Error != "" {
				other = append(other, r.Error)
				continue
			}
			val := fmtVal(r.Value, r.Unit)
			switch {
			case strings.HasSuffix(r.Metric, roundMinSuffix):
				base := strings.TrimSuffix(r.Metric, roundMinSuffix)
				label := "round_ratios"
				if len(spreads) > 1 {
					label += "(" + base + ")"
				}
				other = append(other, fmt.Sprintf("%s=%.2f..%.2f", label, r.Value, spreads[base]))
			case strings.HasSuffix(r.Metric, roundMaxSuffix):
			case strings.HasSuffix(r.Metric, "_p50"):
				p50 = val
			case strings.HasSuffix(r.Metric, "_p99"):
				p99 = val
			case strings.HasSuffix(r.Metric, "_p999"):
				p999 = val
			default:
				other = append(other, r.Metric+"="+val)
			}
			if r.RatioToRaw != nil || r.Target != "" {
				short := shortMetric(r.Metric)
				if r.RatioToRaw != nil {
					ratio = append(ratio, fmt.Sprintf("%s %.2fx", short, *r.RatioToRaw))
				}
				if r.Target != "" {
					target = append(target, short+" "+r.Target)
					if r.Meets != nil {
						m := "NO"
						if *r.Meets {
							m = "yes"
						}
						meets = append(meets, m)
					}
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.w, k.impl, dash(p50), dash(p99), dash(p999),
			dash(strings.Join(other, " ")), dash(strings.Join(ratio, "; ")),
			dash(strings.Join(target, "; ")), dash(strings.Join(meets, "; ")))
	}
	tw.Flush()
}

// roundSpreads maps the base metric of every <metric>_round_max row of rs
// to its value: the table prints each with its _round_min row as
// "round_ratios=min..max".
func roundSpreads(rs []Result) map[string]float64 {
	m := map[string]float64{}
	for _, r := range rs {
		if r.Error == "" && strings.HasSuffix(r.Metric, roundMaxSuffix) {
			m[strings.TrimSuffix(r.Metric, roundMaxSuffix)] = r.Value
		}
	}
	return m
}

func shortMetric(m string) string {
	for _, s := range []string{"_p50", "_p99", "_p999"} {
		if strings.HasSuffix(m, s) {
			return s[1:]
		}
	}
	return m
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtVal(v float64, unit string) string {
	switch unit {
	case "B/s":
		return fmt.Sprintf("%.2fGB/s", v/1e9)
	case "msg/s", "rt/s", "conn/s", "cycles/s":
		if v >= 1e6 {
			return fmt.Sprintf("%.2fM%s", v/1e6, unit)
		}
		return fmt.Sprintf("%.1fk%s", v/1e3, unit)
	case "B":
		if v >= 10*1024 || v <= -10*1024 {
			return fmt.Sprintf("%.1fKiB", v/1024)
		}
		return fmt.Sprintf("%.0fB", v)
	case "us":
		if v >= 1000 {
			return fmt.Sprintf("%.2fms", v/1000)
		}
		return fmt.Sprintf("%.1fus", v)
	case "":
		return fmt.Sprintf("%g", v)
	}
	return fmt.Sprintf("%.4g%s", v, unit)
}

// judgeDelta sets ratio_to_raw on impl's metric and judges it against
// "raw + delta" (both in the metric's unit).
func judgeDelta(rs []Result, impl, raw, metric string, delta float64, label string) {
	ri, ok1 := indexOf(rs, impl, metric)
	r, ok2 := find(rs, raw, metric)
	if !ok1 || !ok2 {
		return
	}
	if r.Value != 0 {
		ratio := rs[ri].Value / r.Value
		rs[ri].RatioToRaw = &ratio
	}
	rs[ri].Target = label
	m := rs[ri].Value <= r.Value+delta
	rs[ri].Meets = &m
}
